"""Background services beside the control plane: simulated operators and the process kubelet.

They run as separate processes recorded in the cluster's state, so `down` stops them with the
control plane.
"""

from __future__ import annotations

import json
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
    wait_operators_installed(c)


def wait_operators_installed(c: _cluster.Cluster, seconds: float = 60.0) -> None:
    """Until the cluster-wide operators the simulators install (the mesh and Kiali CSVs in
    openshift-operators) are Succeeded: a cluster ready for a workshop, as preflight's
    `operators` check expects (the simulators create them moments after they start)."""
    from devcluster.sim.catalog import CLUSTER_WIDE_OPERATORS, OPERATORS_NS

    path = f"/apis/operators.coreos.com/v1alpha1/namespaces/{OPERATORS_NS}/clusterserviceversions"
    deadline = time.monotonic() + seconds
    while True:
        code, body = c.raw(path)
        items = json.loads(body).get("items", []) if code == 200 else []
        phases = {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}
        if all(phases.get(name) == "Succeeded" for name in CLUSTER_WIDE_OPERATORS):
            return
        if time.monotonic() > deadline:
            raise _cluster.ClusterError(
                f"the simulated operators in {OPERATORS_NS} not Succeeded after {seconds:.0f}s: "
                f"{phases}"
            )
        time.sleep(0.1)


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
