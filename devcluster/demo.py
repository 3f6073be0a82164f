"""`make demo`: a local control plane, the simulated operators, the process kubelet, and 10
users provisioned through the real Job path with the launcher's live table and summary.

    python -m devcluster.demo [--users 10] [--mode indexed|jobs] [--profile realistic] [--keep]

A devcluster already running (`make up`) is reused with its services; otherwise one is started
(binaries built or reused from the cache) and stopped at the end unless --keep. The launcher
runs as the admin would run it: `python -m runner launch ...` with the admin kubeconfig and the
image `workshop-runner:dev`, which the kubelet maps to this venv's `workshop-runner` script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from devcluster import build, services
from devcluster.cluster import Cluster, ClusterError, default_state_dir, start_cluster

IMAGE = "workshop-runner:dev"
JOBS_NAMESPACE = "workshop-runner"


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def control_plane(state: Path, profile: str) -> tuple[Cluster, bool]:
    """(cluster, started_here): reuse a running devcluster, else start one."""
    running = Cluster.load(state)
    if running is not None and not running.crashed() and running.is_ready():
        say(f"reusing the devcluster at {running.server}")
        started = False
        cluster = running
    else:
        if running is not None:
            running.stop()
        say("starting etcd, kube-apiserver, kube-controller-manager (binaries built or reused)")
        cluster = start_cluster(state, openshift=True, log=say)
        started = True
    # The simulators read their profile from the environment they are started with.
    os.environ.setdefault("DEVCLUSTER_SIM_PROFILE", profile)
    services.start_simulators(cluster)
    services.start_kubelet(cluster, namespace=JOBS_NAMESPACE)
    return cluster, started


def launch(cluster: Cluster, users: int, mode: str, summary: Path) -> int:
    argv = [
        sys.executable,
        "-m",
        "runner",
        "launch",
        "--count",
        str(users),
        "--image",
        IMAGE,
        "--mode",
        mode,
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--summary-json",
        str(summary),
        "--timeout",
        "900",
    ]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    say(f"$ workshop-runner launch --count {users} --image {IMAGE} --mode {mode} ...")
    return subprocess.call(argv, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.demo", description=__doc__)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--mode", choices=("indexed", "jobs"), default="indexed")
    parser.add_argument(
        "--profile",
        choices=("fast", "realistic", "instant"),
        default="realistic",
        help="simulated operator speed (realistic: seconds per transition, as on a cluster)",
    )
    parser.add_argument("--keep", action="store_true", help="leave a started devcluster up")
    args = parser.parse_args(argv)
    began = time.monotonic()
    state = default_state_dir()
    try:
        cluster, started = control_plane(state, args.profile)
    except (ClusterError, build.BuildError) as e:
        say(f"could not start the control plane: {e}")
        return 1
    say(
        f"control plane, simulators ({args.profile}) and kubelet ready in "
        f"{time.monotonic() - began:.0f}s"
    )
    summary = state.parent / "demo-summary.json"
    code = 1
    try:
        code = launch(cluster, args.users, args.mode, summary)
    except KeyboardInterrupt:
        code = 130
    finally:
        if started and not args.keep:
            cluster.stop()
            say("devcluster stopped (use --keep to explore it with kubectl afterwards)")
        else:
            say(f"devcluster left running: kubeconfig {cluster.kubeconfig}; `make down` stops it")
    say(
        f"finished in {time.monotonic() - began:.0f}s with exit code {code}; "
        f"summary JSON: {summary}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
