"""Background services beside the control plane: simulated operators and the process kubelet.

They run as separate processes recorded in the cluster's state, so `down` stops them with the
control plane.
"""

from __future__ import annotations

import sys
import time

from devcluster import cluster as _cluster


def _spawn_service(c: _cluster.Cluster, name: str, extra: list[str]) -> None:
    if name in c.pids and _cluster.pid_alive(c.pids[name]):
        print(f"{name} already running (pid {c.pids[name]})", file=sys.stderr)
        return
    argv = [sys.executable, "-m", "devcluster.sim", "--kubeconfig", str(c.kubeconfig), *extra]
    _cluster._spawn(c, name, argv)
    ready = c.state_dir / f"{name}.ready"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not _cluster.pid_alive(c.pids[name]):
            raise _cluster.ClusterError(
                f"{name} exited at start; last log lines:\n{_cluster.log_tail(c.log_path(name))}"
            )
        if ready.exists():
            return
        time.sleep(0.1)
    raise _cluster.ClusterError(f"{name} not ready after 60s")


def start_simulators(c: _cluster.Cluster) -> None:
    _spawn_service(c, "simulators", ["--ready-file", str(c.state_dir / "simulators.ready")])


def start_kubelet(c: _cluster.Cluster, namespace: str) -> None:
    _spawn_service(
        c,
        "kubelet",
        [
            "--kubelet-only",
            "--namespace",
            namespace,
            "--ready-file",
            str(c.state_dir / "kubelet.ready"),
        ],
    )
