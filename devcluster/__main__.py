"""python -m devcluster build | up | down | status | kubeconfig"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devcluster import build, cluster, services


def _state(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else cluster.default_state_dir()


def cmd_build(args: argparse.Namespace) -> int:
    return build.main(["--regen"] if args.regen else [])


def cmd_up(args: argparse.Namespace) -> int:
    state = _state(args)
    current = cluster.Cluster.load(state)
    if current and not current.crashed() and current.is_ready():
        print(f"devcluster already running: {current.server}", file=sys.stderr)
    else:
        if current:
            current.stop()
        try:
            current = cluster.start_cluster(
                state, openshift=args.openshift, log=lambda m: print(m, file=sys.stderr)
            )
        except (cluster.ClusterError, build.BuildError) as exc:
            print(f"devcluster up: {exc}", file=sys.stderr)
            return 1
        print(f"devcluster ready: {current.server}", file=sys.stderr)
    try:
        if args.simulate:
            services.start_simulators(current)
        if args.kubelet:
            services.start_kubelet(current, namespace=args.jobs_namespace)
    except cluster.ClusterError as exc:
        print(f"devcluster up: {exc}", file=sys.stderr)
        return 1
    print(current.kubeconfig)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    current = cluster.Cluster.load(_state(args))
    if current is None:
        print("devcluster: nothing running", file=sys.stderr)
        return 0
    current.stop()
    print(f"devcluster stopped: {', '.join(current.pids)}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    current = cluster.Cluster.load(_state(args))
    if current is None:
        print("devcluster: not running")
        return 3
    healthy = True
    for name, alive in current.processes().items():
        print(f"{name:28} pid {current.pids[name]:>7}  {'running' if alive else 'EXITED'}")
        if not alive:
            healthy = False
            print(cluster.log_tail(current.log_path(name), 15))
    ready = current.is_ready()
    print(f"{'kube-apiserver /readyz':28} {'ok' if ready else 'NOT READY'}  {current.server}")
    print(f"{'kubeconfig':28} {current.kubeconfig}")
    return 0 if healthy and ready else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    current = cluster.Cluster.load(_state(args))
    if current is None:
        print("devcluster: not running (run `python -m devcluster up`)", file=sys.stderr)
        return 3
    print(current.kubeconfig)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    parser.add_argument("--state-dir", help="state directory (default: $DEVCLUSTER_STATE)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="build or reuse etcd, kube-apiserver, kube-controller-manager")
    p.add_argument("--regen", action="store_true", help="regenerate go.mod from upstream")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("up", help="start the control plane (idempotent); prints the kubeconfig")
    p.add_argument("--openshift", action="store_true", help="register project.openshift.io")
    p.add_argument("--simulate", action="store_true", help="also run the simulated operators")
    p.add_argument("--kubelet", action="store_true", help="also run the process kubelet")
    p.add_argument("--jobs-namespace", default="workshop-runner")
    p.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop every process started by up").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show processes and readiness").set_defaults(func=cmd_status)
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path").set_defaults(
        func=cmd_kubeconfig
    )
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
