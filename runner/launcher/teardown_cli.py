"""`workshop-runner teardown --user U | --all`: every step's undo, in reverse order, per user.

Users are torn down concurrently (--parallel); within a user the order is strict. `--all`
finds the users from the namespaces the runner made (label app.kubernetes.io/managed-by=
workshop-runner, user from workshop-runner.io/user). Run it with an administrator's identity:
the runner's own ServiceAccount may not delete namespaces, by design.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runner import config, hints
from runner.config import User
from runner.errors import InvalidInput
from runner.kube import Cluster, Kube, load_configuration
from runner.launcher.render import USER_LABEL, load_deploy
from runner.launcher.users import validate_users
from runner.logs import get_logger
from runner.result import RunResult, Step
from runner.teardown import render_for, teardown_user
from runner.waits import CancelToken, Deadline

MANAGED = "app.kubernetes.io/managed-by=workshop-runner"


def add_teardown_parser(sub: Any) -> None:
    p = sub.add_parser("teardown", help="remove what the steps created, in reverse step order")
    p.add_argument("--user", action="append", help="user(s) to tear down (comma-separated)")
    p.add_argument("--all", action="store_true", help="every user the runner provisioned")
    p.add_argument("--templates", type=Path, help="the launch's template overrides")
    p.add_argument("--params", type=Path, help="the launch's parameters file")
    p.add_argument("--project-request", action="store_true", help="as `run --project-request`")
    p.add_argument("--parallel", type=hints.integer, default=8, help="users torn down at once (8)")
    p.add_argument("--namespace", "-n", help="the Jobs namespace (never a user's)")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--log-level", choices=("debug", "info", "warning"), default="warning")


def run_teardown(args: argparse.Namespace, env: Mapping[str, str], steps: Sequence[Step]) -> int:
    if bool(args.user) == bool(args.all):
        raise InvalidInput("give exactly one of --user and --all")
    if args.parallel < 1:
        raise InvalidInput(f"--parallel must be at least 1, not {args.parallel}")
    namespace = args.namespace or load_deploy().namespace
    cfg, _ = load_configuration(args.kubeconfig, args.context, dict(env))
    cluster = Cluster(cfg)
    users = (
        [u.strip() for v in args.user for u in v.split(",") if u.strip()]
        if args.user
        else provisioned_users(cluster)
    )
    validate_users(users, namespace)
    if not users:
        print("teardown: no provisioned users found; nothing to do", file=sys.stderr)
        return 0
    rendered = {
        u: render_for(User(u), args.templates, args.params, project_request=args.project_request)
        for u in users
    }
    log = get_logger(user=None, step=None)

    def one(user: str) -> RunResult:
        params, objects = rendered[user]
        result = teardown_user(cluster, steps, User(user), params, objects, log=log)
        print(f"teardown {user}: {_line(result)}", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=min(args.parallel, len(users))) as pool:
        results = list(pool.map(one, users))
    cluster.close()
    Console(file=sys.stdout).print(table(results))
    return next((r.exit_code for r in results if r.exit_code), 0)


def provisioned_users(cluster: Cluster) -> list[str]:
    kube = Kube(
        cluster,
        log=get_logger(user=None, step=None),
        deadline=Deadline.after(60),
        cancel=CancelToken(),
    )
    items, _ = kube.list_items("v1", "Namespace", None, label_selector=MANAGED)
    found = {(i["metadata"].get("labels") or {}).get(USER_LABEL) for i in items}
    return sorted(u for u in found if u and config.DNS1123_LABEL.match(u))


def _line(result: RunResult) -> str:
    if result.exit_code:
        return f"FAILED at {result.failed_step}: {result.reason}"
    removed = [s.name for s in result.steps if s.status == "changed"]
    return f"removed ({', '.join(removed)})" if removed else "nothing left to remove"


def table(results: Sequence[RunResult]) -> Table:
    out = Table(title="teardown", title_justify="left")
    for column in ("user", "outcome", "undone steps", "failed step", "reason"):
        out.add_column(column, overflow="fold")
    for r in results:
        undone = [s.name for s in r.steps if s.status == "changed"]
        out.add_row(
            r.user or "",
            "[green]done[/]" if r.exit_code == 0 else "[bold red]failed[/]",
            ", ".join(undone) or "(nothing left)",
            r.failed_step or "",
            r.reason or "",
        )
    return out
