"""One measurement stage: a fresh devcluster, the simulated operators with one delay profile,
the contender identities with their own FlowSchemas (so the apiserver's metrics attribute
requests to them), and the status watch. Every contender run gets its own stage, so no run
inherits another's objects, caches or watch backlog.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.observe import StatusWatch, flow_counts
from bench.profiles import Profile
from devcluster.cluster import Cluster, start_cluster
from runner.config import DEADLINE_SCALE_ENV

BENCH_NS = "bench"
CONTENDER_SA = "contender"
LAUNCHER_SA = "launcher"
# FlowSchema names: the report reads their dispatched-request counters.
FS_DISCOVERY = "bench-contender-discovery"
FS_CONTENDER = "bench-contender"
FS_LAUNCHER = "bench-launcher"
DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*"]


def _subjects(namespaces: list[str]) -> list[dict[str, Any]]:
    subjects: list[dict[str, Any]] = [
        {"kind": "ServiceAccount", "serviceAccount": {"namespace": BENCH_NS, "name": CONTENDER_SA}}
    ]
    # Runner pods run as service accounts of the jobs namespace the launcher uses.
    subjects += [
        {"kind": "Group", "group": {"name": f"system:serviceaccounts:{ns}"}} for ns in namespaces
    ]
    return subjects


def flow_schemas(runner_namespaces: list[str]) -> list[dict[str, Any]]:
    """FlowSchemas on the same priority level a real cluster gives service accounts
    (workload-low), ahead of the built-in `service-accounts` schema (precedence 9000).
    Discovery requests (GET /api, /apis, /apis/<group>/<version>) are non-resource requests,
    so a schema matching only those URLs counts them apart."""
    every_resource = {
        "verbs": ["*"],
        "apiGroups": ["*"],
        "resources": ["*"],
        "namespaces": ["*"],
        "clusterScope": True,
    }

    def schema(name: str, precedence: int, subjects: list[Any], rule: dict[str, Any]) -> Any:
        return {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": "workload-low"},
                "matchingPrecedence": precedence,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{"subjects": subjects, **rule}],
            },
        }

    contender = _subjects(runner_namespaces)
    launcher = [
        {"kind": "ServiceAccount", "serviceAccount": {"namespace": BENCH_NS, "name": LAUNCHER_SA}}
    ]
    non_resource = {"nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": DISCOVERY_URLS}]}
    everything = {
        "resourceRules": [every_resource],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    }
    return [
        schema(FS_DISCOVERY, 500, contender, non_resource),
        schema(FS_CONTENDER, 510, contender, everything),
        schema(FS_LAUNCHER, 520, launcher, everything),
    ]


def identities() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BENCH_NS}}
    ]
    for sa in (CONTENDER_SA, LAUNCHER_SA):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": BENCH_NS},
            }
        )
        objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": f"bench-{sa}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": BENCH_NS}],
            }
        )
    return objs


def create_all(api_client: Any, objs: list[dict[str, Any]]) -> None:
    from kubernetes import utils

    for obj in objs:
        utils.create_from_dict(api_client, obj)


@dataclass
class Stage:
    name: str
    dir: Path
    cluster: Cluster
    profile: Profile
    contender_kubeconfig: Path
    launcher_kubeconfig: Path
    sim: subprocess.Popen[bytes] | None = None
    watch: StatusWatch | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def flows(self) -> dict[str, int]:
        return flow_counts(self.cluster.metrics_text())

    def sim_stats(self) -> dict[str, Any]:
        """The simulators' stats.json (transitions per kind, work queues), once the figures
        of the run that just ended are in it: the simulators publish every 5 s."""
        time.sleep(6.0)
        from kubernetes import client

        core = client.CoreV1Api(self.cluster.api_client())
        cm = core.read_namespaced_config_map("devcluster-sim-status", "devcluster-system")
        data: dict[str, Any] = json.loads((cm.data or {}).get("stats.json") or "{}")
        return data


def sim_command(
    kubeconfig: Path, knobs: Path, kubelet: bool, work: Path, deadline_scale: float = 1.0
) -> list[str]:
    argv = [sys.executable, "-m", "devcluster.sim", "--kubeconfig", str(kubeconfig)]
    argv += ["--knobs", str(knobs), "--ready-file", str(work / "sim.ready")]
    argv += ["--state-dir", str(work / "sim-state")]
    if kubelet:
        argv += ["--kubelet", "--kubelet-root", str(work / "kubelet")]
        if deadline_scale != 1.0:
            # The runner image's environment, as an image built for a scaled test cluster
            # would set it (ENV), given to the process kubelet's image map.
            runner = str(Path(sys.executable).parent / "workshop-runner")
            image_map = work / "image-map.yaml"
            entry = {"command": [runner], "env": {DEADLINE_SCALE_ENV: f"{deadline_scale:g}"}}
            image_map.write_text(yaml.safe_dump({"*workshop-runner*": entry}))
            argv += ["--image-map", str(image_map)]
    return argv


def _wait_sim_ready(stage: Stage, ready_file: Path, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stage.sim is not None and stage.sim.poll() is not None:
            raise RuntimeError(f"simulators exited ({stage.sim.returncode}); see {log}")
        if ready_file.exists():
            return
        time.sleep(0.1)
    raise RuntimeError(f"simulators not ready within {timeout:.0f}s; see {log}")


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def stage(
    name: str,
    root: Path,
    profile: Profile,
    *,
    runner_namespaces: list[str] | None = None,
    kubelet: bool = False,
) -> Iterator[Stage]:
    work = root / name
    work.mkdir(parents=True, exist_ok=True)
    cluster = start_cluster(work / "cluster", openshift=False)
    sim: subprocess.Popen[bytes] | None = None
    watch: StatusWatch | None = None
    try:
        api = cluster.api_client()
        create_all(api, identities() + flow_schemas(runner_namespaces or []))
        knobs = work / "knobs.yaml"
        knobs.write_text(yaml.safe_dump(profile.knobs))
        log = work / "sim.log"
        with log.open("wb") as out:
            sim = subprocess.Popen(
                sim_command(cluster.kubeconfig, knobs, kubelet, work, profile.deadline_scale),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        st = Stage(
            name=name,
            dir=work,
            cluster=cluster,
            profile=profile,
            contender_kubeconfig=cluster.sa_kubeconfig(
                BENCH_NS, CONTENDER_SA, work / "contender.kubeconfig"
            ),
            launcher_kubeconfig=cluster.sa_kubeconfig(
                BENCH_NS, LAUNCHER_SA, work / "launcher.kubeconfig"
            ),
            sim=sim,
        )
        _wait_sim_ready(st, work / "sim.ready", log)
        watch = st.watch = StatusWatch(api)
        watch.start()
        yield st
    finally:
        if watch is not None:
            watch.stop()
        _stop_process(sim)
        cluster.stop()
