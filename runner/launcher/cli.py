"""`workshop-runner launch | status | teardown`: argument parsing and the three commands.

Registered into runner/cli.py (the composition root), which hands over the step list, so
nothing here imports `steps`. Errors known to the runner end as one line and their exit code;
the launch's own codes are in runner.launcher.summary.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import string
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from runner import config, hints
from runner.errors import InvalidInput, RunnerError
from runner.events import Note, Recorder, Regarding
from runner.kube import Cluster, Kube, load_configuration
from runner.launcher import preflight, retry
from runner.launcher import summary as summaries
from runner.launcher.apply import Applier, apply_deploy, apply_launch
from runner.launcher.display import Display, JsonLines, LiveTable
from runner.launcher.follow import follow, snapshot, utcnow
from runner.launcher.progress import Fleet, UserView
from runner.launcher.render import (
    LAUNCH_LABEL,
    LaunchObjects,
    LaunchPlan,
    Mode,
    launch_objects,
    load_deploy,
    pod_files,
    with_guard_params,
    write_rendered,
)
from runner.launcher.teardown_cli import add_teardown_parser, run_teardown
from runner.launcher.users import select_users, validate_users
from runner.logs import configure, get_logger, one_line
from runner.result import Step
from runner.waits import CancelToken, Deadline

COMMANDS = ("launch", "status", "teardown", "preflight")
LAUNCHER_INSTANCE = "workshop-runner-launcher"
DEFAULT_TIMEOUT = 3600.0
DEFAULT_PARALLELISM = 20
SETUP_SECONDS = 120.0
LAUNCH_ID = config.DNS1123_LABEL
MAX_LAUNCH_ID = 24
GUARD_SETTLE_SECONDS = 30.0
CANARY_SUFFIX = "-c"  # the canary's own launch id: <id>-c (its Jobs wr-<id>-c…)


def register(sub: Any) -> None:
    """Add the launcher's subcommands to runner/cli.py's subparsers."""
    launch = sub.add_parser("launch", help="provision many users in parallel through Jobs")
    who = launch.add_argument_group("users (exactly one of)")
    who.add_argument("--users", action="append", help="comma-separated user names")
    who.add_argument("--users-file", type=Path, help="file with user names (lines or commas)")
    who.add_argument("--count", type=hints.integer, help="N users named <prefix><start>…")
    launch.add_argument("--prefix", default="user", help="name prefix for --count (user)")
    launch.add_argument(
        "--start", type=hints.integer, default=1, help="first number for --count (1)"
    )
    launch.add_argument("--image", help="runner image (default: the deploy base's)")
    launch.add_argument("--mode", choices=("indexed", "jobs"), help="(default indexed)")
    launch.add_argument(
        "--parallelism",
        type=hints.integer,
        help=f"pods at once, --mode indexed (default {DEFAULT_PARALLELISM})",
    )
    launch.add_argument("--templates", type=Path, help="directory overriding/adding templates")
    launch.add_argument("--params", type=Path, help="YAML file overriding template parameters")
    launch.add_argument("--launch-id", help="reuse/choose the launch id (default: new)")
    launch.add_argument(
        "--retry-failed",
        action="store_true",
        help="a new launch of the users that failed or did not finish in --launch, with its "
        "image, mode, templates and params",
    )
    launch.add_argument(
        "--launch", metavar="ID", help="with --retry-failed: that launch (default: the newest)"
    )
    launch.add_argument(
        "--render",
        action="store_true",
        help="write what launch would apply as YAML (stdout, or -o DIR) and apply nothing",
    )
    launch.add_argument(
        "-o", "--output", type=Path, metavar="DIR", help="with --render: write files into DIR"
    )
    launch.add_argument(
        "--canary",
        type=int,
        metavar="K",
        help="provision the first K users first; the rest only if all K succeed",
    )
    launch.add_argument(
        "--skip-preflight",
        action="store_true",
        help="skip the preflight checks, except the guard check (which always runs)",
    )
    _operators_namespace(launch)
    launch.add_argument(
        "--skip-deploy",
        action="store_true",
        help="do not apply the deploy base (namespace, ServiceAccount, RBAC, guard)",
    )
    _common(launch)
    status = sub.add_parser("status", help="re-attach to a launch and summarize it")
    status.add_argument("--launch", help="launch id (default: the newest in the namespace)")
    _common(status)
    add_teardown_parser(sub)
    check = sub.add_parser("preflight", help="read-only checks: is the cluster ready?")
    check.add_argument("--namespace", "-n", help="the Jobs namespace (default: workshop-runner)")
    check.add_argument("--templates", type=Path, help="directory overriding/adding templates")
    check.add_argument("--params", type=Path, help="YAML file overriding template parameters")
    _operators_namespace(check)
    check.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: $KUBECONFIG)")
    check.add_argument("--context", help="kubeconfig context")
    check.add_argument("--log-level", choices=("debug", "info", "warning"), default="warning")


def _operators_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operators-namespace",
        default=preflight.OPERATORS_NAMESPACE,
        help=f"where the mesh and Kiali operators are installed ({preflight.OPERATORS_NAMESPACE})",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", help="the Jobs namespace (default: workshop-runner)")
    parser.add_argument(
        "--timeout", type=hints.number, default=DEFAULT_TIMEOUT, help="seconds to wait"
    )
    parser.add_argument("--no-wait", action="store_true", help="do not follow the Jobs")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    parser.add_argument("--progress", choices=("auto", "table", "json"), default="auto")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--log-level", choices=("debug", "info", "warning"), default="warning")


def main(args: argparse.Namespace, env: Mapping[str, str], steps: Sequence[Step]) -> int:
    configure("auto", args.log_level, stream=sys.stderr)
    try:
        if args.command == "launch" and args.retry_failed:
            return retry_failed(args, env, steps)
        if args.command == "launch":
            if args.launch:
                raise InvalidInput("--launch ID is for --retry-failed (to follow one: status)")
            return launch(args, env, steps)
        if args.command == "status":
            return status(args, env)
        if args.command == "preflight":
            return run_checks(args, env, steps)
        return run_teardown(args, env, steps)
    except RunnerError as e:
        print(f"workshop-runner {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"workshop-runner {args.command}: interrupted", file=sys.stderr)
        return summaries.EXIT_INTERRUPTED


def connect(args: argparse.Namespace, env: Mapping[str, str], seconds: float) -> Kube:
    cfg, _ = load_configuration(args.kubeconfig, args.context, dict(env))
    return Kube(
        Cluster(cfg),
        log=get_logger(user=None, step=None),
        deadline=Deadline.after(seconds),
        cancel=CancelToken(),
    )


def new_launch_id() -> str:
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(3))
    return f"{datetime.now(UTC):%m%d-%H%M%S}-{suffix}"


def run_checks(args: argparse.Namespace, env: Mapping[str, str], steps: Sequence[Step]) -> int:
    """`workshop-runner preflight`: every check, a line each; exit 0 or 13."""
    base = load_deploy()
    namespace = args.namespace or base.namespace
    setting = preflight.setting(
        base,
        namespace,
        steps,
        user=preflight.SAMPLE_USER,
        templates_dir=args.templates,
        params_file=args.params,
        operators_namespace=args.operators_namespace,
    )
    cfg, _ = load_configuration(args.kubeconfig, args.context, dict(env))
    results = preflight.run_preflight(cfg, setting, preflight.CHECKS)
    preflight.print_checks(results, sys.stdout)
    return preflight.exit_code(results)


def launch(args: argparse.Namespace, env: Mapping[str, str], steps: Sequence[Step]) -> int:
    started = utcnow()
    base = load_deploy()
    namespace = args.namespace or base.namespace
    if namespace != base.namespace and not args.skip_deploy:
        raise InvalidInput(
            f"the deploy base is written for namespace {base.namespace} (its bindings and the "
            f"guard's parameters live there); for Jobs in {namespace}, apply it with a kustomize "
            "`namespace:` overlay and pass --skip-deploy"
        )
    users = select_users(args.users, args.users_file, args.count, args.prefix, args.start)
    validate_users(users, namespace)
    mode: Mode = args.mode or "indexed"
    if mode == "jobs" and args.parallelism is not None:
        raise InvalidInput("--parallelism is for --mode indexed; --mode jobs starts every Job")
    parallelism = DEFAULT_PARALLELISM if args.parallelism is None else args.parallelism
    if parallelism < 1:
        raise InvalidInput(f"--parallelism must be at least 1, not {parallelism}")
    launch_id = args.launch_id or new_launch_id()
    if not LAUNCH_ID.match(launch_id) or len(launch_id) > MAX_LAUNCH_ID:
        raise InvalidInput(f"--launch-id {launch_id!r}: a DNS-1123 label of at most 24 characters")
    if args.output is not None and not args.render:
        raise InvalidInput("-o/--output is for --render")
    canary = _canary_size(args, users, launch_id)
    files = pod_files(users, args.templates, args.params)
    # the OLM guard's parameters rendered from the same params as the templates
    base = with_guard_params(
        base, config.load_params(args.params, config.User(users[0]), project_request=False)
    )
    image = args.image or base.per_user_job["spec"]["template"]["spec"]["containers"][0]["image"]
    plan = LaunchPlan(
        launch_id, namespace, tuple(users), image, mode, parallelism, args.params is not None
    )
    objects = launch_objects(base, plan, files, deploy=not args.skip_deploy)
    if args.render:
        sys.stdout.write(write_rendered(objects, plan, args.output))
        return summaries.EXIT_OK
    kube = connect(args, env, args.timeout + SETUP_SECONDS)
    applier = Applier(kube)
    apply_deploy(applier, objects, base, plan)
    names = preflight.ALWAYS if args.skip_preflight else preflight.CHECKS
    checked = preflight.run_preflight(
        kube.cluster.configuration,
        preflight.setting(
            base,
            namespace,
            steps,
            user=users[0],
            templates_dir=args.templates,
            params_file=args.params,
            operators_namespace=args.operators_namespace,
        ),
        names,
        # the base just applied is enforced once the API server's caches catch up
        settle=GUARD_SETTLE_SECONDS if applier.changed else 0.0,
    )
    preflight.print_checks(checked, sys.stderr)
    if preflight.exit_code(checked):
        print(f"launch {launch_id}: preflight failed; no Job created", file=sys.stderr)
        return preflight.EXIT_PREFLIGHT
    canary_result: dict[str, Any] | None = None
    if canary:
        first = replace(plan, launch_id=f"{launch_id}{CANARY_SUFFIX}", users=plan.users[:canary])
        rest = plan.users[canary:]
        _start(applier, launch_objects(base, first, files, deploy=False), first)
        canary_result = watch_and_summarize(args, kube, _info(first), started, final=False)
        if canary_result["exit_code"] != summaries.EXIT_OK:
            return _canary_failed(args, canary_result, rest)
        print(
            f"canary {first.launch_id}: {canary} user(s) succeeded; launching the other "
            f"{len(rest)}",
            file=sys.stderr,
        )
        plan = replace(plan, users=rest)
        objects = launch_objects(base, plan, files, deploy=False)
    _start(applier, objects, plan)
    if args.no_wait:
        print(
            f"follow it: workshop-runner status --launch {launch_id} -n {namespace}",
            file=sys.stderr,
        )
        print(launch_id)
        return summaries.EXIT_OK
    result = watch_and_summarize(args, kube, _info(plan), started, canary=canary_result)
    code: int = result["exit_code"]
    return code


RETRY_TAKES = {
    "users": "--users",
    "users_file": "--users-file",
    "count": "--count",
    "image": "--image",
    "mode": "--mode",
    "templates": "--templates",
    "params": "--params",
    "canary": "--canary",
    "render": "--render",
}


def retry_failed(args: argparse.Namespace, env: Mapping[str, str], steps: Sequence[Step]) -> int:
    """A new launch of the users of `--launch` (default: the newest) that failed or did not
    finish, with its image, mode, parallelism, templates and parameters (runner.launcher.retry)."""
    given = [flag for key, flag in RETRY_TAKES.items() if getattr(args, key)]
    if given:
        raise InvalidInput(
            f"--retry-failed takes the users, image, mode, templates and params from the "
            f"launch it retries; drop {', '.join(given)}"
        )
    namespace = args.namespace or load_deploy().namespace
    found = retry.plan_retry(connect(args, env, SETUP_SECONDS), namespace, args.launch)
    if not found.users:
        print(
            f"launch {found.of.launch_id}: every user succeeded; nothing to retry", file=sys.stderr
        )
        return summaries.EXIT_OK
    shown = ", ".join(found.users[:10]) + (" …" if len(found.users) > 10 else "")
    print(
        f"retrying launch {found.of.launch_id}: {len(found.users)} user(s) that failed or did "
        f"not finish: {shown}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="workshop-runner-retry-") as tmp:
        templates_dir, params = retry.write_files(found.files, Path(tmp))
        again = argparse.Namespace(**vars(args))
        again.__dict__.update(
            retry_failed=False,
            launch=None,
            users=[",".join(found.users)],
            templates=templates_dir,
            params=params,
            image=found.of.image,
            mode="indexed" if found.of.indexed else "jobs",
            parallelism=args.parallelism if args.parallelism is not None else found.parallelism,
        )
        return launch(again, env, steps)


def _start(applier: Applier, objects: LaunchObjects, plan: LaunchPlan) -> None:
    launched = apply_launch(applier, objects, plan)
    made = ", ".join(dict.fromkeys(launched.changed)) or "nothing new"
    print(
        f"launch {plan.launch_id}: {len(plan.users)} user(s), --mode {plan.mode}, image "
        f"{plan.image}, namespace {plan.namespace}; applied: {made} ({launched.unchanged} "
        "unchanged)",
        file=sys.stderr,
    )
    applier.changed.clear()
    applier.unchanged = 0


def _info(plan: LaunchPlan) -> summaries.LaunchInfo:
    return summaries.LaunchInfo(plan.launch_id, plan.namespace, plan.mode, plan.image, plan.users)


def _canary_size(args: argparse.Namespace, users: Sequence[str], launch_id: str) -> int:
    k: int | None = args.canary
    if k is None:
        return 0
    if not 1 <= k < len(users):
        raise InvalidInput(f"--canary {k}: between 1 and {len(users) - 1} (fewer than the users)")
    if args.render or args.no_wait:
        raise InvalidInput("--canary waits for the canary users; not with --render or --no-wait")
    if len(launch_id) + len(CANARY_SUFFIX) > MAX_LAUNCH_ID:
        raise InvalidInput(
            f"--launch-id {launch_id!r}: with --canary at most "
            f"{MAX_LAUNCH_ID - len(CANARY_SUFFIX)} characters (the canary's is <id>{CANARY_SUFFIX})"
        )
    return k


def _canary_failed(args: argparse.Namespace, result: dict[str, Any], rest: Sequence[str]) -> int:
    """The canary did not all succeed: say who failed where, start nobody else."""
    bad = [u for u in result["users"] if u["outcome"] != "succeeded"]
    for user in bad:
        where = f"step {user['failed_step']}: " if user["failed_step"] else ""
        reason = one_line(user["reason"] or user["outcome"])
        print(f"canary {user['user']} {user['outcome']}: {where}{reason}", file=sys.stderr)
    print(
        f"canary {result['launch']} failed: {len(rest)} other user(s) not started "
        f"({', '.join(rest[:5])}{' …' if len(rest) > 5 else ''}); fix the cause and launch again",
        file=sys.stderr,
    )
    result["canary"] = {"outcome": "failed", "not_started": list(rest)}
    result["exit_code"] = summaries.EXIT_CANARY
    if args.summary_json:
        summaries.write_json(args.summary_json, result)
    return summaries.EXIT_CANARY


def status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    namespace = args.namespace or load_deploy().namespace
    kube = connect(args, env, args.timeout + SETUP_SECONDS)
    found = retry.find_launch(kube, namespace, args.launch)
    launch_id, users, indexed = found.launch_id, found.users, found.indexed
    info = summaries.LaunchInfo(
        launch_id, namespace, "indexed" if indexed else "jobs", found.image, tuple(users)
    )
    started = min(
        datetime.fromisoformat(retry.created(j).replace("Z", "+00:00")) for j in found.jobs
    )
    if args.no_wait:
        fleet = Fleet(users, indexed=indexed)
        snapshot(kube, fleet, namespace, f"{LAUNCH_LABEL}={launch_id}")
        code: int = report(args, kube, info, fleet, started, waited=False)["exit_code"]
        return code
    result = watch_and_summarize(args, kube, info, started)
    exit_code: int = result["exit_code"]
    return exit_code


def watch_and_summarize(
    args: argparse.Namespace,
    kube: Kube,
    info: summaries.LaunchInfo,
    started: datetime,
    *,
    final: bool = True,
    canary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    fleet = Fleet(info.users, indexed=info.mode == "indexed")
    recorder = Recorder(kube.cluster, kube.log, f"{LAUNCHER_INSTANCE}@{socket.gethostname()}")
    followed = follow(
        kube,
        fleet,
        info.namespace,
        f"{LAUNCH_LABEL}={info.launch_id}",
        display=make_display(args.progress, info.launch_id, started),
        deadline=Deadline.after(args.timeout),
        on_finished=lambda view: record_finished(recorder, fleet, info.namespace, view),
    )
    return report(
        args,
        kube,
        info,
        fleet,
        started,
        timed_out=followed.timed_out,
        interrupted=followed.interrupted,
        final=final,
        canary=canary,
    )


def record_finished(recorder: Recorder, fleet: Fleet, namespace: str, view: UserView) -> None:
    """One Event on the user's Job when the launcher sees that user finish. Its name is fixed
    per Job and user, so a second launcher following the same launch adds none."""
    job = fleet.jobs.get(view.job or "")
    if job is None:
        return
    meta = job["metadata"]
    regarding = Regarding("batch/v1", "Job", meta["name"], namespace, meta.get("uid"))
    # No retry count: the Job's verdict can arrive before the last Pod's update (two watches).
    if view.state == "succeeded":
        changed = f"{view.changed}/{view.steps} step(s) changed" if view.steps else "succeeded"
        note = Note("Normal", "UserSucceeded", "Provision", f"user {view.user}: {changed}")
    else:
        step = f"step {view.failed_step}" if view.failed_step else "the run"
        code = f" with exit code {view.exit_code}" if view.exit_code is not None else ""
        note = Note(
            "Warning",
            "UserFailed",
            "Provision",
            f"user {view.user}: {step} failed{code}: {view.reason or ''}",
        )
    recorder.record(regarding, note, name=f"{meta['name']}.{view.user}")


def report(
    args: argparse.Namespace,
    kube: Kube,
    info: summaries.LaunchInfo,
    fleet: Fleet,
    started: datetime,
    *,
    waited: bool = True,
    timed_out: bool = False,
    interrupted: bool = False,
    final: bool = True,
    canary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the summary, print it; the final one also goes to --summary-json. A canary's
    users lead the final summary (and count in its exit code)."""
    result = summaries.build(
        info,
        fleet.views(),
        started=started,
        now=utcnow(),
        timed_out=timed_out,
        interrupted=interrupted,
        waited=waited,
        requests=kube.cluster.requests,
    )
    if canary is not None:
        result = summaries.with_canary(result, canary)
    if not _table_progress(args.progress):
        brief = {k: result[k] for k in ("launch", "counts", "exit_code", "seconds")}
        event = "summary" if final else "canary-summary"
        print(json.dumps({"event": event, **brief}), flush=True)
    summaries.print_summary(result, Console(file=sys.stdout, width=_width()))
    if final and args.summary_json:
        summaries.write_json(args.summary_json, result)
    if final and result["exit_code"] == summaries.EXIT_FAILED:
        print(
            f"retry the failed users: workshop-runner launch --retry-failed --launch "
            f"{info.launch_id} -n {info.namespace}",
            file=sys.stderr,
        )
    return result


def _table_progress(choice: str) -> bool:
    return choice == "table" or (choice == "auto" and sys.stdout.isatty())


def make_display(choice: str, launch_id: str, started: datetime) -> Display:
    if _table_progress(choice):
        return LiveTable(launch_id, Console(file=sys.stdout), started)
    return JsonLines(launch_id, sys.stdout)


def _width() -> int | None:
    return None if sys.stdout.isatty() else 160
