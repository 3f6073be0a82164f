"""The composition root: parse arguments, validate everything, build the cluster layer, hand
the steps to the engine, report. The only module that imports `steps`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from runner import config, hints, templates
from runner.context import StepContext, step_apis, step_templates
from runner.engine import Engine
from runner.errors import ApiMissing, InternalError, InvalidInput, RunnerError
from runner.events import Note, Recorder, Regarding
from runner.kube import Cluster, Kube, load_configuration
from runner.logs import Logger, configure, get_logger, one_line, redact
from runner.progress import STEP_ANNOTATION, ProgressWriter
from runner.result import RunResult, Step
from runner.waits import CancelToken, Deadline, Obj
from steps import STEPS

if TYPE_CHECKING:
    from kubernetes.client import Configuration

PROG = "workshop-runner"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
PREFLIGHT_SECONDS = 60.0
ANNOTATE_SECONDS = 5.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InvalidInput(message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """A value outside the choices (a flag value, a subcommand) names the closest one."""
        if action.choices is not None and value not in action.choices:
            known = [str(c) for c in action.choices]
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}; {hints.suggest([str(value)], known)}"
            )


def _launcher() -> Any:
    """runner.launcher.cli, imported only for its commands: `run` in a pod needs neither its
    table (rich) nor its checks (runner/_lazy.py)."""
    from runner.launcher import cli as launcher  # noqa: PLC0415 - start-up cost

    return launcher


def build_parser(with_launcher: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Provision one workshop user's environment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("steps", help="list the steps in order")
    run = sub.add_parser("run", help="run the steps for one user")
    run.add_argument("--user", help="the user (default: $WORKSHOP_USER, or the Indexed Job index)")
    run.add_argument("--users-file", type=Path, help="users list for JOB_COMPLETION_INDEX")
    run.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig (default: $KUBECONFIG, else in-cluster)"
    )
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument("--steps", action="append", help="only these steps (comma-separated)")
    run.add_argument("--skip", action="append", help="skip these steps (comma-separated)")
    run.add_argument("--from", dest="start", metavar="STEP", help="start at this step")
    run.add_argument(
        "--timeout",
        action="append",
        metavar="STEP=SECONDS",
        help="override a step's deadline (repeatable, comma-separated)",
    )
    run.add_argument("--dry-run", action="store_true", help="server-side dry run; no waits")
    run.add_argument("--serial", action="store_true", help="run the steps one at a time")
    run.add_argument("--templates", type=Path, help="directory overriding/adding templates")
    run.add_argument("--params", type=Path, help="YAML file overriding template parameters")
    run.add_argument(
        "--project-request", action="store_true", help="make namespaces via ProjectRequest"
    )
    run.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    run.add_argument(
        "--termination-log",
        type=Path,
        help=f"result file (default {DEFAULT_TERMINATION_LOG} when it exists)",
    )
    if with_launcher:
        _launcher().register(sub)  # launch, status, teardown, preflight
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environ = dict(os.environ if env is None else env)
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        args = build_parser(with_launcher=words[:1] not in (["run"], ["steps"])).parse_args(argv)
    except InvalidInput as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    if args.command == "steps":
        width = max(len(s.NAME) for s in STEPS)
        for step in STEPS:
            print(f"{step.NAME:<{width}}  {step.DESCRIPTION}")
        return 0
    try:
        if args.command not in ("run", "steps"):
            return int(_launcher().main(args, environ, STEPS))
        return run(args, environ)
    except Exception as e:  # the last resort: the type and a redacted message, exit 1
        error = InternalError.unexpected(args.command, e)
        trace = redact(traceback.format_exc())  # for the bug report, never a token
        if args.command != "run":
            print(f"{trace}{PROG}: error: {error}", file=sys.stderr)
            return error.exit_code
        log = get_logger(user=None, step=None)
        log.error("crashed", error=str(error), traceback=trace)
        result = RunResult(None, error.exit_code, None, str(error))
        return finish(result, log, termination_path(args.termination_log, environ))


def run(args: argparse.Namespace, env: dict[str, str]) -> int:
    """`workshop-runner run`: prepare (input, templates, configuration; nothing sent yet),
    execute (preflight, the engine), finish (the termination message and the exit code)."""
    configure(args.log_format, args.log_level)
    log = get_logger(user=None, step=None)
    termination = termination_path(args.termination_log, env)
    try:
        prepared = prepare(args, env)
    except Unprepared as e:
        result = RunResult(e.user, e.error.exit_code, None, str(e.error))
        return finish(result, log, termination)
    return finish(execute(prepared, args, env, log.bind(user=prepared.user.name)), log, termination)


@dataclass(frozen=True)
class Prepared:
    """A run, validated and rendered before any API call."""

    user: config.User
    selected: list[str]
    timeouts: dict[str, float]
    params: dict[str, Any]
    rendered: dict[str, list[Obj]]
    configuration: Configuration
    source: str
    deadline_scale: float = 1.0


class Unprepared(Exception):
    def __init__(self, user: str | None, error: RunnerError) -> None:
        super().__init__(str(error))
        self.user, self.error = user, error


def prepare(args: argparse.Namespace, env: Mapping[str, str]) -> Prepared:
    """The user, the steps, their timeouts, the parameters and rendered templates, and the
    cluster configuration; a bad input is Unprepared (naming the user when it is known)."""
    user: config.User | None = None
    try:
        user = config.validate_user(
            config.resolve_user_name(args.user, env, args.users_file), config.own_namespaces(env)
        )
        selected = config.select_steps(
            [s.NAME for s in STEPS],
            config.split_names(args.steps),
            config.split_names(args.skip),
            args.start,
        )
        timeouts = config.parse_timeouts(args.timeout, [s.NAME for s in STEPS])
        scale = config.deadline_scale(env)
        params = config.load_params(args.params, user, project_request=args.project_request)
        loaded = templates.load_templates(args.templates)
        rendered = {name: templates.render(t, params) for name, t in loaded.items()}
        for name, docs in rendered.items():
            templates.check_rendered(name, docs, {user.namespace, user.istio_namespace})
        cfg, source = load_configuration(args.kubeconfig, args.context, dict(env))
    except RunnerError as e:
        raise Unprepared(user.name if user else None, e) from None
    return Prepared(user, selected, dict(timeouts), dict(params), rendered, cfg, source, scale)


def execute(
    prepared: Prepared, args: argparse.Namespace, env: Mapping[str, str], log: Logger
) -> RunResult:
    """Preflight, then the engine over the selected steps; the outcome recorded as an Event."""
    started = time.monotonic()
    user, rendered = prepared.user, prepared.rendered
    cluster = Cluster(prepared.configuration)
    chosen = [s for s in STEPS if s.NAME in prepared.selected]
    log.info(
        "run started",
        steps=prepared.selected,
        dry_run=args.dry_run,
        serial=args.serial,
        config=prepared.source,
    )
    named_templates = step_templates(STEPS)
    try:
        preflight(cluster, chosen, rendered, named_templates, log)
    except _StepPreflightError as e:
        cluster.close()
        return RunResult(user.name, e.error.exit_code, e.step or None, str(e.error))

    def make_context(
        step: Step, deadline: Deadline, cancel: CancelToken, step_log: Logger
    ) -> StepContext:
        kube = Kube(cluster, log=step_log, deadline=deadline, cancel=cancel, dry_run=args.dry_run)
        return StepContext(
            step.NAME,
            user,
            prepared.params,
            rendered,
            kube,
            step_log,
            deadline,
            cancel,
            args.dry_run,
            named_templates,
        )

    progress = pod_annotator(cluster, env, log)
    engine = Engine(
        STEPS,
        make_context,
        log=log,
        on_progress=progress,
        timeouts=prepared.timeouts,
        deadline_scale=prepared.deadline_scale,
    )
    previous = _on_sigterm(lambda: engine.stop("terminated by SIGTERM"))
    try:
        result = engine.run(user.name, prepared.selected, serial=args.serial)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if progress is not None:
            progress.close(ANNOTATE_SECONDS)
    if not args.dry_run:
        record_outcome(Recorder(cluster, log, env.get("POD_NAME") or PROG), env, user, result)
    log.info(
        "run finished",
        outcome=result.outcome,
        exit_code=result.exit_code,
        failed_step=result.failed_step,
        seconds=round(time.monotonic() - started, 3),
        api_requests=cluster.requests,
        discovery_requests=cluster.discovery.requests,
    )
    cluster.close()
    return result


class _StepPreflightError(Exception):
    def __init__(self, step: str, error: RunnerError) -> None:
        super().__init__(str(error))
        self.step, self.error = step, error


def preflight(
    cluster: Cluster,
    chosen: Sequence[Step],
    rendered: Mapping[str, list[Obj]],
    named: frozenset[str],
    log: Logger,
) -> None:
    """Resolve every API the selected steps use before anything is written: a missing CRD
    or a rejected identity fails the run with nothing created."""
    kube = Kube(cluster, log=log, deadline=Deadline.after(PREFLIGHT_SECONDS), cancel=CancelToken())
    for step in chosen:
        try:
            for api_version, kind in step_apis(step, rendered, named):
                kube.resource(api_version, kind)
        except ApiMissing as e:
            raise _StepPreflightError(step.NAME, e) from None
        except RunnerError as e:  # unreachable, rejected credentials ...: no step to blame
            raise _StepPreflightError("", e) from None


def pod_annotator(cluster: Cluster, env: Mapping[str, str], log: Logger) -> ProgressWriter | None:
    """In a pod, show the running step(s) on it (coalesced, from a background thread); a
    failure to annotate is only logged."""
    pod, namespace = env.get("POD_NAME"), env.get("POD_NAMESPACE")
    if not pod or not namespace:
        return None

    def annotate(value: str) -> None:
        kube = Kube(
            cluster, log=log, deadline=Deadline.after(ANNOTATE_SECONDS), cancel=CancelToken()
        )
        try:
            kube.merge_patch(
                "v1", "Pod", pod, namespace, {"metadata": {"annotations": {STEP_ANNOTATION: value}}}
            )
        except RunnerError as e:
            log.warning("could not annotate own pod", object=f"Pod {namespace}/{pod}", error=str(e))

    return ProgressWriter(annotate)


def record_outcome(
    recorder: Recorder, env: Mapping[str, str], user: config.User, result: RunResult
) -> None:
    """One Event per run: on the runner's own Pod in a pod, else on the user's namespace,
    which is the runner's once the namespace step passed (or was not selected)."""
    pod, namespace = env.get("POD_NAME"), env.get("POD_NAMESPACE")
    if pod and namespace:
        regarding = Regarding("v1", "Pod", pod, namespace, env.get("POD_UID") or None)
    elif any(
        s.name == "namespace"
        and (s.status in ("changed", "unchanged") or s.detail == "not selected")
        for s in result.steps
    ):
        regarding = Regarding("v1", "Namespace", user.namespace, user.namespace)
    else:
        return
    recorder.record(regarding, outcome_note(user, result))


def outcome_note(user: config.User, result: RunResult) -> Note:
    if result.exit_code == 0:
        changed = [s.name for s in result.steps if s.status == "changed"]
        unchanged = sum(s.status == "unchanged" for s in result.steps)
        what = f" ({', '.join(changed)})" if changed else ""
        return Note(
            "Normal",
            "Provisioned",
            "Provision",
            f"user {user.name}: {len(changed)} step(s) changed{what}, {unchanged} unchanged",
        )
    where = f"step {result.failed_step}" if result.failed_step else "the run"
    return Note(
        "Warning",
        "StepFailed",
        "Provision",
        f"user {user.name}: {where} failed with exit code {result.exit_code}: {result.reason}",
    )


def _on_sigterm(stop: Callable[[], None]) -> Any:
    """On SIGTERM (pod deletion, Job deadline) stop the run cleanly so the termination message
    still says which step was interrupted. Only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda _sig, _frame: stop())


def termination_path(flag: Path | None, env: Mapping[str, str]) -> Path | None:
    if flag is not None:
        return flag
    if env.get("WORKSHOP_RUNNER_TERMINATION_LOG"):
        return Path(env["WORKSHOP_RUNNER_TERMINATION_LOG"])
    return DEFAULT_TERMINATION_LOG if DEFAULT_TERMINATION_LOG.exists() else None


def finish(result: RunResult, log: Logger, termination: Path | None) -> int:
    if termination is not None:
        try:
            termination.write_text(result.termination_message(), encoding="utf-8")
        except OSError as e:
            log.warning(
                "could not write the termination message", path=str(termination), error=str(e)
            )
    if result.exit_code != 0:
        where = f"step {result.failed_step}: " if result.failed_step else ""
        reason = one_line(result.reason or "")
        print(f"{PROG}: error: {where}{reason}", file=sys.stderr)
    return result.exit_code
