"""Figures: simulator reaction latency and process-kubelet pod start overhead, measured on the
real control plane. Printed (run with -s); the tests assert that every sample was seen, never a
duration."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import pytest

from devcluster.sim.engine import percentiles
from devcluster.sim.fixtures import KnobSetter, SimProcess
from devcluster.sim.kube import (
    CONFIGMAPS,
    CSVS,
    INSTALLPLANS,
    JOBS,
    OPERATORGROUPS,
    PODS,
    SUBSCRIPTIONS,
    Kube,
)
from devcluster.sim.service import SYSTEM_NS
from devcluster.sim.testkit import (
    RHSSO_CSV,
    namespaces,
    operator_group,
    phase,
    subscription,
    wait_service_account,
)
from devcluster.sim.waiting import wait_for, wait_list

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
USERS = 20
JOBS_AT_ONCE = 50
CSV_PHASES = ("Pending", "InstallReady", "Installing", "Succeeded")


class Watcher:
    """Client-side clock: when each (object, phase) was first seen on a watch."""

    def __init__(self, kube: Kube, res: Any, namespace: str | None, key: Any) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self._changed = threading.Condition()
        self._t = threading.Thread(target=self._run, args=(kube, res, namespace, key), daemon=True)
        self._t.start()

    def finish(self, keys: set[tuple[str, str]], timeout: float) -> None:
        """Stop once every key was seen (or at the timeout): this watch may lag behind the
        request that saw the last phase first, and stopping at once lost its last events."""
        with self._changed:
            self._changed.wait_for(lambda: keys <= self.seen.keys(), timeout=timeout)
        self.stop.set()

    def _run(self, kube: Kube, res: Any, namespace: str | None, key: Any) -> None:
        rv = kube.list(res, namespace)[1]
        while not self.stop.is_set():
            query = {"watch": "true", "timeoutSeconds": 5, "resourceVersion": rv}
            try:
                for event in kube.stream(res.path(namespace), query, timeout=10):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":  # e.g. 410: resume from a new list
                        rv = kube.list(res, namespace)[1]
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        k = key(obj)
                        if k is not None:
                            with self._changed:
                                self.seen.setdefault(k, time.monotonic())
                                self._changed.notify_all()
                    if self.stop.is_set():
                        return
            except Exception:  # a read timeout on a loaded machine: resume from rv
                self.stop.wait(0.1)


def test_simulator_reaction_latency(simulators: SimProcess, unique_user: str) -> None:
    kube = simulators.kube
    users = [f"{unique_user}-{i}" for i in range(USERS)]
    knobs = KnobSetter(simulators, unique_user)
    knobs.set({"user": f"{unique_user}-*", "kind": "*", "delay": 0, "jitter": 0})
    try:
        with namespaces(kube, *users):
            plans = Watcher(
                kube, INSTALLPLANS, None, lambda o: (o["metadata"]["namespace"], phase(o))
            )
            csvs = Watcher(
                kube,
                CSVS,
                None,
                lambda o: (
                    (o["metadata"]["namespace"], phase(o))
                    if o["metadata"]["name"] == RHSSO_CSV
                    else None
                ),
            )
            for u in users:
                kube.create(OPERATORGROUPS, u, operator_group(u))
                kube.create(SUBSCRIPTIONS, u, subscription(u))
            approved: dict[str, float] = {}
            for u in users:
                (plan,) = wait_list(
                    kube,
                    INSTALLPLANS,
                    u,
                    lambda items: (
                        items if items and phase(items[0]) == "RequiresApproval" else None
                    ),
                    timeout=60,
                )
                approved[u] = time.monotonic()
                kube.patch(INSTALLPLANS, u, plan["metadata"]["name"], {"spec": {"approved": True}})
            for u in users:
                wait_for(kube, CSVS, u, RHSSO_CSV, lambda o: phase(o) == "Succeeded", timeout=60)
            plans.finish({(u, "Installing") for u in users}, timeout=60)
            csvs.finish({(u, p) for u in users for p in CSV_PHASES}, timeout=60)
            # Approval written -> the simulator's Installing phase seen by a client watch.
            approval = [plans.seen[(u, "Installing")] - approved[u] for u in users]
            # One CSV phase seen -> the next one seen (each a simulator reaction, delay 0).
            steps = []
            for u in users:
                chain = [csvs.seen.get((u, p)) for p in CSV_PHASES]
                steps += [b - a for a, b in itertools.pairwise(chain) if a and b]
        knobs.set(
            {"user": f"{unique_user}-*", "kind": "*", "delay": 0, "jitter": 0},
            key=f"{unique_user}-x",
        )
        internal = simulators.stats()
    finally:
        knobs.clear()
    figures: dict[str, Any] = {
        "approval_to_installing_seen": percentiles(approval),
        "csv_phase_to_next_phase_seen": percentiles(steps),
        "simulator_internal_reaction": internal.get("all"),
    }
    print("\nSIMULATOR LATENCY", json.dumps(figures))
    # Figures only (timings belong in bench/): every user's approval and CSV phases were seen.
    assert len(approval) == len(users)
    assert len(steps) == 3 * len(users)


def _fresh_stats(cm: dict[str, Any], instance: str, pods: int) -> bool:
    stats = json.loads((cm.get("data") or {}).get("stats.json") or "{}")
    return bool(stats.get("instance") == instance and stats.get("start", {}).get("n", 0) >= pods)


def test_kubelet_pod_start_overhead(kubelet: SimProcess, unique_user: str) -> None:
    kube = kubelet.kube
    ns = f"{unique_user}-burst"
    with namespaces(kube, ns):
        wait_service_account(kube, ns)
        pods = Watcher(
            kube,
            PODS,
            ns,
            lambda o: (o["metadata"]["name"], (o.get("status") or {}).get("phase") or "Pending"),
        )
        start = time.monotonic()
        for i in range(JOBS_AT_ONCE):
            body = {
                "metadata": {"name": f"burst-{i}"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {"name": "main", "image": "busybox", "command": ["true"]}
                            ],
                        }
                    },
                },
            }
            kube.create(JOBS, ns, body)
        created = time.monotonic() - start

        def all_done(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            done = [
                j
                for j in items
                if any(
                    c["type"] == "Complete" and c["status"] == "True"
                    for c in (j.get("status") or {}).get("conditions") or []
                )
            ]
            return done if len(done) == JOBS_AT_ONCE else None

        wait_list(kube, JOBS, ns, all_done, timeout=240, what="every burst Job to complete")
        total = time.monotonic() - start
        pods.stop.set()
    names = {n for n, _ in pods.seen}
    to_running = [
        pods.seen[(n, "Running")] - pods.seen[(n, "Pending")]
        for n in names
        if (n, "Running") in pods.seen and (n, "Pending") in pods.seen
    ]
    to_done = [
        pods.seen[(n, "Succeeded")] - pods.seen[(n, "Pending")]
        for n in names
        if (n, "Succeeded") in pods.seen and (n, "Pending") in pods.seen
    ]
    stats = wait_for(
        kube,
        CONFIGMAPS,
        SYSTEM_NS,
        kubelet.status_cm,
        lambda cm: _fresh_stats(cm, kubelet.instance, JOBS_AT_ONCE),
        timeout=30,
    )
    figures = {
        "jobs": JOBS_AT_ONCE,
        "create_all_s": round(created, 2),
        "all_complete_s": round(total, 2),
        "pod_seen_to_running_seen": percentiles(to_running),
        "pod_seen_to_succeeded_seen": percentiles(to_done),
        "kubelet_internal": json.loads(stats["data"]["stats.json"]),
    }
    print("\nKUBELET POD START", json.dumps(figures))
    assert len(to_done) == JOBS_AT_ONCE
