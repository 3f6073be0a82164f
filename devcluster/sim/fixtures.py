"""pytest fixtures for the simulated operators and the process kubelet.

- `simulators` (session): `python -m devcluster.sim` against the `cluster` fixture, ready once
  devcluster-system/devcluster-sim-status says so. If simulators already serve that cluster
  (DEVCLUSTER_REUSE with `devcluster up --simulate`: their Lease is fresh), they are reused.
- `kubelet` (session): the process kubelet, `--kubelet-only`, all namespaces (or
  $DEVCLUSTER_KUBELET_NAMESPACES, comma-separated); reused the same way (fresh node Lease).
- `sim_knobs` (function): set knobs for this test's `unique_user` at runtime -
  `sim_knobs.set({"kind": "CSV", "fail": True}, {"kind": "SMCP", "delay": 2})` writes the
  rules (user filled in) under the key <unique_user> of ConfigMap devcluster-sim-knobs and
  returns once the simulators have applied them; cleared after the test.
Each handle has `.kube` (a devcluster.sim.kube.Kube for the admin) and `.stats()`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.sim.kube import CONFIGMAPS, LEASES, Kube, KubeError
from devcluster.sim.service import (
    DEFAULT_NODE,
    KNOBS_CM,
    KUBELET_STATUS_CM,
    SIM_LEASE,
    SIM_STATUS_CM,
    STARTUP,
    SYSTEM_NS,
    digest,
    ensure_namespace,
    kubelet_status_name,
)
from devcluster.sim.waiting import WaitTimeout, wait_for

READY_TIMEOUT = 90.0


def _serving(kube: Kube, status_cm: str, namespace: str, lease_name: str, seconds: float) -> bool:
    """Someone else's process serves this cluster: it says ready and renews its Lease."""
    cm = kube.get_or_none(CONFIGMAPS, SYSTEM_NS, status_cm) or {}
    if not (cm.get("data") or {}).get("ready"):
        return False
    lease = kube.get_or_none(LEASES, namespace, lease_name)
    if lease is None:
        return False
    renew = (lease.get("spec") or {}).get("renewTime")
    if not renew:
        return False
    at = _dt.datetime.strptime(renew[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    return (_dt.datetime.now(_dt.UTC) - at).total_seconds() < seconds


class SimProcess:
    """One `python -m devcluster.sim` child, or a reused one started by someone else."""

    def __init__(self, kubeconfig: Path, status_cm: str, args: list[str], log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.kube = Kube(kubeconfig)
        self.status_cm = status_cm
        self.args = args
        self.log_path = log_path
        self.instance = uuid.uuid4().hex[:12]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ensure_namespace(self.kube, SYSTEM_NS)
        argv = [
            sys.executable,
            "-m",
            "devcluster.sim",
            "--kubeconfig",
            str(self.kubeconfig),
            "--instance-id",
            self.instance,
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_for(
                self.kube,
                CONFIGMAPS,
                SYSTEM_NS,
                self.status_cm,
                self._ready_or_dead,
                timeout=READY_TIMEOUT,
                what="the simulator process to report ready",
            )
        except WaitTimeout:
            self.stop()
            raise
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"devcluster.sim exited with {self.proc.returncode}:\n{tail}")

    def _ready_or_dead(self, cm: dict[str, Any]) -> bool:
        assert self.proc is not None
        return (cm.get("data") or {}).get("ready") == self.instance or self.proc.poll() is not None

    def adopt(self) -> None:
        """Use a process someone else started (nothing to stop at the end)."""
        cm = self.kube.get_or_none(CONFIGMAPS, SYSTEM_NS, self.status_cm) or {}
        self.instance = (cm.get("data") or {}).get("ready", "")

    def status(self) -> dict[str, str]:
        cm = self.kube.get_or_none(CONFIGMAPS, SYSTEM_NS, self.status_cm) or {}
        data: dict[str, str] = cm.get("data") or {}
        return data

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.status().get("stats.json") or "{}")
        return data

    def wait_webhook_open(self, key: str = STARTUP, timeout: float = 60) -> None:
        """Until a webhook refusal window is over: `startup` (after the simulators started,
        see knobs webhook.refuse_seconds) or the one a knobs key opened."""
        wait_for(
            self.kube,
            CONFIGMAPS,
            SYSTEM_NS,
            self.status_cm,
            lambda cm: (cm.get("data") or {}).get(f"webhook.{key}") == "open",
            timeout=timeout,
            what=f"the webhook refusal window {key} to close",
        )

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class KnobSetter:
    """Runtime knobs for one user, through the ConfigMap the simulators watch."""

    def __init__(self, sims: SimProcess, user: str) -> None:
        self.sims = sims
        self.kube = sims.kube
        self.user = user
        self.keys: set[str] = set()

    def set(self, *rules: dict[str, Any], key: str | None = None, **doc: Any) -> None:
        """Replace this key's knobs: rules (user defaults to the test's user) + top-level fields."""
        key = key or self.user
        body = dict(doc)
        if rules:
            body["rules"] = [{"user": self.user, **r} for r in rules]
        text = yaml.safe_dump(body, sort_keys=True)
        self._patch({key: text})
        self.keys.add(key)
        want = digest(text)
        wait_for(
            self.kube,
            CONFIGMAPS,
            SYSTEM_NS,
            SIM_STATUS_CM,
            lambda cm: (
                (cm.get("data") or {}).get(f"knobs.{key}") in (want,)
                or str((cm.get("data") or {}).get(f"knobs.{key}", "")).startswith("error")
            ),
            timeout=30,
            what=f"the simulators to apply knobs key {key}",
        )
        ack = self.sims.status().get(f"knobs.{key}", "")
        if ack != want:
            raise ValueError(f"the simulators rejected knobs {key}: {ack}")

    def wait_webhook_open(self, key: str | None = None, timeout: float = 60) -> None:
        """Until the refusal window this key opened has closed (a real API event)."""
        self.sims.wait_webhook_open(key or self.user, timeout)

    def clear(self) -> None:
        if not self.keys:
            return
        patch = {"data": dict.fromkeys(self.keys)}
        try:
            self.kube.patch(CONFIGMAPS, SYSTEM_NS, KNOBS_CM, patch)
        except KubeError as exc:
            if not exc.not_found:
                raise
        self.keys.clear()

    def _patch(self, data: dict[str, str]) -> None:
        try:
            self.kube.patch(CONFIGMAPS, SYSTEM_NS, KNOBS_CM, {"data": data})
        except KubeError as exc:
            if not exc.not_found:
                raise
            body = {"metadata": {"name": KNOBS_CM}, "data": data}
            try:
                self.kube.create(CONFIGMAPS, SYSTEM_NS, body)
            except KubeError as again:
                if not again.conflict:
                    raise
                self.kube.patch(CONFIGMAPS, SYSTEM_NS, KNOBS_CM, {"data": data})


def _log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devcluster-sim")


@pytest.fixture(scope="session")
def simulators(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    log = _log_dir(tmp_path_factory) / "simulators.log"
    sims = SimProcess(Path(cluster.kubeconfig), SIM_STATUS_CM, [], log)
    if _serving(sims.kube, SIM_STATUS_CM, SYSTEM_NS, SIM_LEASE, 15):
        sims.adopt()
        yield sims
        return
    sims.start()
    try:
        yield sims
    finally:
        sims.stop()


@pytest.fixture(scope="session")
def kubelet(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    log = _log_dir(tmp_path_factory) / "kubelet.log"
    scoped = [ns for ns in os.environ.get("DEVCLUSTER_KUBELET_NAMESPACES", "").split(",") if ns]
    kube = Kube(Path(cluster.kubeconfig))
    node = DEFAULT_NODE
    if _serving(kube, KUBELET_STATUS_CM, "kube-node-lease", node, 40):
        status = kube.get(CONFIGMAPS, SYSTEM_NS, KUBELET_STATUS_CM).get("data") or {}
        if status.get("namespaces") == "*" or scoped:
            proc = SimProcess(Path(cluster.kubeconfig), KUBELET_STATUS_CM, [], log)
            proc.adopt()
            yield proc
            return
        # A kubelet for the jobs namespace only (devcluster up --kubelet): add one for all.
        node = "devcluster-kubelet-pytest"
    args = ["--kubelet-only", "--node-name", node]
    for ns in scoped:
        args += ["--namespace", ns]
    proc = SimProcess(Path(cluster.kubeconfig), kubelet_status_name(node), args, log)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def sim_knobs(simulators: SimProcess, unique_user: str) -> Iterator[KnobSetter]:
    setter = KnobSetter(simulators, unique_user)
    try:
        yield setter
    finally:
        setter.clear()
