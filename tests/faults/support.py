"""Support for the fault suite (no tests here): run the real `workshop-runner` console script as
a subprocess, watch its JSON log lines to kill it at a chosen point, read what a user ended up
with, and keep the suite's figures for the end-of-run summary."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from steps import STEPS
from tests.manifests import apply_manifests

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(sys.executable).parent / "workshop-runner"
RUNNER_NAMESPACE = "workshop-runner"
RUNNER_SA = "workshop-runner"
KNOBS_NAMESPACE, KNOBS_CONFIGMAP = "devcluster-system", "devcluster-sim-knobs"
SIM_STATUS = "devcluster-sim-status"
OLM = "operators.coreos.com"
PINNED_CSV = "rhsso-operator.7.5.2-opr-001"


@dataclass
class Figures:
    """What the suite did, printed by the terminal summary (tests/faults/conftest.py)."""

    runs: int = 0
    kills: int = 0
    apiserver_restarts: int = 0
    bad_inputs: int = 0
    proxy_requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    users_checked: int = 0
    users_converged: int = 0
    job_retries: int = 0
    notes: list[str] = field(default_factory=list)

    def record_proxy(self, stats: Mapping[str, Any]) -> None:
        self.proxy_requests += int(stats["requests"])
        self.faults.update(stats["faults"])

    def lines(self) -> list[str]:
        injected = sum(self.faults.values())
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        pct = 100.0 * self.users_converged / self.users_checked if self.users_checked else 0.0
        out = [
            f"runner runs: {self.runs}   SIGKILLs: {self.kills}   "
            f"apiserver restarts: {self.apiserver_restarts}   Job pod kills: {self.job_retries}",
            f"bad-input cases: {self.bad_inputs}",
            f"faults injected by the proxy: {injected} ({by_kind}) "
            f"over {self.proxy_requests} proxied requests",
            f"users checked after faults: {self.users_checked}, fully provisioned with no "
            f"duplicates: {self.users_converged} ({pct:.0f} %)",
        ]
        return out + self.notes


FIGURES = Figures()


# -- running the runner ------------------------------------------------------------------------
@dataclass
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    result: dict[str, Any]
    seconds: float

    @property
    def events(self) -> list[dict[str, Any]]:
        return parse_log(self.stdout)

    @property
    def statuses(self) -> dict[str, str]:
        return {s["name"]: s["status"] for s in self.result.get("steps", [])}

    def explain(self) -> str:
        tail = "\n".join(self.stdout.splitlines()[-15:])
        return f"exit {self.code}\nstderr: {self.stderr}\nresult: {self.result}\nlog tail:\n{tail}"


def parse_log(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no KUBECONFIG, no WORKSHOP_* or pod variables from the caller."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "faults-home")
    env.update(extra or {})
    return env


def run_runner(
    argv: list[str], tmp: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> Run:
    """`workshop-runner run --log-format json --termination-log <tmp> ...` to completion."""
    term = _termination_path(tmp)
    full = [str(RUNNER), "run", "--log-format", "json", "--termination-log", str(term), *argv]
    started = time.monotonic()
    proc = subprocess.run(
        full,
        env=base_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
        check=False,
    )
    FIGURES.runs += 1
    return Run(
        full,
        proc.returncode,
        proc.stdout,
        proc.stderr,
        _read_result(term),
        time.monotonic() - started,
    )


def _termination_path(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    n = len(list(tmp.glob("termination-*")))
    return tmp / f"termination-{n}"


def _read_result(term: Path) -> dict[str, Any]:
    try:
        data = json.loads(term.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Running:
    """A runner process whose JSON log lines are read as they come, so a test can kill it
    (SIGKILL) at a chosen point: when a log event matches."""

    def __init__(self, argv: list[str], tmp: Path, env: Mapping[str, str] | None = None) -> None:
        self.term = _termination_path(tmp)
        self.argv = [
            str(RUNNER),
            "run",
            "--log-format",
            "json",
            "--termination-log",
            str(self.term),
            *argv,
        ]
        self.proc = subprocess.Popen(
            self.argv,
            env=base_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
        )
        FIGURES.runs += 1
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()
        self.killed = False
        self.started = time.monotonic()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self.events.extend(parse_log(line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_event(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """True once a log event matches; False if the process ended or `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(match(e) for e in self.events):
                    return True
                if self.proc.poll() is not None and not self._reader.is_alive():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))

    def kill(self) -> None:
        """SIGKILL (counted) if it still runs; always reaps it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.killed = True
            FIGURES.kills += 1
        self.proc.wait(30)
        self._reader.join(10)
        self._err_reader.join(10)

    def wait(self, timeout: float) -> Run:
        """Let it finish (SIGKILL after `timeout`, then TimeoutExpired)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(10)
        self._err_reader.join(10)
        return Run(
            self.argv,
            self.proc.returncode,
            "".join(self.lines),
            "".join(self.stderr),
            _read_result(self.term),
            time.monotonic() - self.started,
        )


def step_event(step: str, event: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("step") == step and e.get("event") == event


# -- the runner's identity -------------------------------------------------------------------
def deploy_runner_identity(kubeconfig: Path) -> None:
    """`kubectl apply --server-side -k manifests` as the admin (namespace, SA, RBAC, guard)."""
    apply_manifests(kubeconfig, "workshop-runner-faults")


# -- simulator knobs -------------------------------------------------------------------------
def set_knobs(api_client: Any, user: str, doc: Mapping[str, Any], timeout: float = 20.0) -> None:
    """One key of the simulators' knob ConfigMap per user (devcluster/sim/knobs.py); waits
    until the simulators acknowledge it (their status ConfigMap carries its digest)."""
    core = client.CoreV1Api(api_client)
    text = yaml.safe_dump(dict(doc))
    body = {"data": {user: text}}
    try:
        core.patch_namespaced_config_map(KNOBS_CONFIGMAP, KNOBS_NAMESPACE, body)
    except ApiException as e:
        if e.status != 404:
            raise
        core.create_namespaced_config_map(
            KNOBS_NAMESPACE, {"metadata": {"name": KNOBS_CONFIGMAP}, **body}
        )
    want = hashlib.sha256(text.encode()).hexdigest()[:16]
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = core.read_namespaced_config_map(SIM_STATUS, KNOBS_NAMESPACE).data or {}
        except ApiException:
            status = {}
        ack = status.get(f"knobs.{user}")
        if ack == want:
            return
        if ack and ack.startswith("error"):
            raise RuntimeError(f"the simulators refused the knobs for {user}: {ack}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the simulators did not apply the knobs for {user} in {timeout}s")
        time.sleep(0.1)


def delays_for(user: str, seconds: float, kinds: tuple[str, ...] = ("*",)) -> dict[str, Any]:
    return {"rules": [{"user": user, "kind": k, "delay": seconds} for k in kinds]}


# -- what a user ended up with -----------------------------------------------------------------
class Provisioned:
    """The admin's view of one user's objects, and the 'fully provisioned, nothing twice' check."""

    def __init__(self, api_client: Any) -> None:
        self.dyn = DynamicClient(api_client)
        self.core = client.CoreV1Api(api_client)

    def _items(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        try:
            res = self.dyn.resources.get(api_version=api_version, kind=kind)
        except Exception:  # the API is missing: no such objects
            return []
        items: list[dict[str, Any]] = res.get(namespace=namespace).to_dict()["items"]
        return items

    def problems(self, user: str) -> list[str]:
        """Every way `user` is not fully provisioned or has something twice (empty = good).
        Only the objects of the steps the runner has are checked."""
        steps = {s.NAME for s in STEPS}
        istio = f"{user}-istio"
        found: list[str] = []
        for ns in (user, istio):
            try:
                self.core.read_namespace(ns)
            except ApiException:
                found.append(f"namespace {ns} missing")
        if found:
            return found
        if "catalog-source" in steps:
            catalogs = self._items(f"{OLM}/v1alpha1", "CatalogSource", user)
            states = [
                c.get("status", {}).get("connectionState", {}).get("lastObservedState")
                for c in catalogs
            ]
            if states != ["READY"]:
                found.append(f"CatalogSources in {user}: {states} (want one READY)")
        if "rbac" in steps or "istio-namespace" in steps:
            for ns in (user, istio):
                # (an OpenShift project also makes its requester, the runner, admin)
                bindings = self._items("rbac.authorization.k8s.io/v1", "RoleBinding", ns)
                admins = [b for b in bindings if _grants_admin_to(b, user)]
                if len(admins) != 1:
                    found.append(f"{len(admins)} RoleBindings of {user} to admin in {ns}")
        if "sso-operator" in steps:
            for kind in ("OperatorGroup", "Subscription"):
                version = "v1" if kind == "OperatorGroup" else "v1alpha1"
                n = len(self._items(f"{OLM}/{version}", kind, user))
                if n != 1:
                    found.append(f"{n} {kind}s in {user}")
        if "install-plan" in steps:
            plans = self._items(f"{OLM}/v1alpha1", "InstallPlan", user)
            approved = [ip for ip in plans if ip.get("spec", {}).get("approved")]
            if len(approved) != 1:
                found.append(f"{len(approved)} approved InstallPlans in {user} (of {len(plans)})")
        if "csv" in steps:
            phases = [
                c.get("status", {}).get("phase")
                for c in self._items(f"{OLM}/v1alpha1", "ClusterServiceVersion", user)
                if c["metadata"]["name"] == PINNED_CSV
            ]
            if phases != ["Succeeded"]:
                found.append(f"CSV {PINNED_CSV} in {user}: {phases} (want Succeeded)")
        if "limit-ranges" in steps:
            limits = self.core.list_namespaced_limit_range(istio).items
            if limits:
                found.append(f"{len(limits)} LimitRanges left in {istio}")
        if "smcp" in steps:
            smcps = self._items("maistra.io/v2", "ServiceMeshControlPlane", istio)
            if len(smcps) != 1:
                found.append(f"{len(smcps)} ServiceMeshControlPlanes in {istio}")
            elif not _ready(smcps[0]):
                found.append(f"ServiceMeshControlPlane in {istio} not Ready")
        if "member-roll" in steps:
            rolls = self._items("maistra.io/v1", "ServiceMeshMemberRoll", istio)
            if len(rolls) != 1:
                found.append(f"{len(rolls)} ServiceMeshMemberRolls in {istio}")
            elif user not in (rolls[0].get("status", {}).get("configuredMembers") or []):
                found.append(f"{user} not a configured member of the roll in {istio}")
        return found


def _grants_admin_to(binding: dict[str, Any], user: str) -> bool:
    subjects = binding.get("subjects") or []
    return binding["roleRef"]["name"] == "admin" and any(
        s.get("kind") == "User" and s.get("name") == user for s in subjects
    )


def _ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def check_converged(provisioned: Provisioned, user: str) -> list[str]:
    """Count the user in the figures; returns the problems (empty when converged)."""
    found = provisioned.problems(user)
    FIGURES.users_checked += 1
    if found:
        FIGURES.notes.append(f"NOT converged: {user}: {'; '.join(found)}")
    else:
        FIGURES.users_converged += 1
    return found


# -- steps and the simulator kinds their waits depend on ------------------------------------------
STEP_NAMES = [s.NAME for s in STEPS]
WAIT_KINDS = {
    "catalog-source": "CatalogSource",
    "install-plan": "InstallPlan",
    "csv": "ClusterServiceVersion",
    "smcp": "ServiceMeshControlPlane",
    "member-roll": "ServiceMeshMemberRoll",
    "kiali": "Kiali",
}


def wait_steps() -> list[str]:
    """The runner's steps that wait on an operator, in order."""
    return [n for n in STEP_NAMES if n in WAIT_KINDS]


def longest_wait_step() -> str:
    """The step to disturb in the middle of its wait: the mesh control plane when it exists."""
    return "smcp" if "smcp" in STEP_NAMES else wait_steps()[-1]
