"""Teardown: undo what the steps created, in reverse step order, for one user at a time.

Step knowledge lives in the steps: a step module may define `undo(ctx) -> StepResult`, which
removes what its `run` made, observing first (something already gone is a no-op with its
reason, so teardown is idempotent). This driver only orders the calls (reversed STEPS), gives
each its own deadline, and stops a user's teardown at the first failure, naming the step. The
helpers below are for the undo functions: delete what a template rendered (waiting until a
Namespace is really gone), and take one member out of a member roll, keeping the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import config, templates
from runner.config import User
from runner.context import StepContext, step_templates
from runner.errors import RunnerError
from runner.kube import Cluster, Kube
from runner.logs import Logger
from runner.result import RunResult, Status, Step, StepRecord, StepResult
from runner.waits import CancelToken, Deadline, Obj, Target, Verdict, done, pending

UNDO_MIN_SECONDS = 180.0
Undo = Callable[[StepContext], StepResult]


def undo_of(step: Step) -> Undo | None:
    found: Undo | None = getattr(step, "undo", None)
    return found


def render_for(
    user: User, templates_dir: Path | None, params_file: Path | None, *, project_request: bool
) -> tuple[dict[str, Any], dict[str, list[Obj]]]:
    """The same parameters and rendered templates a run for `user` would use."""
    params = config.load_params(params_file, user, project_request=project_request)
    loaded = templates.load_templates(templates_dir)
    return params, {name: templates.render(t, params) for name, t in loaded.items()}


def teardown_user(
    cluster: Cluster,
    steps: Sequence[Step],
    user: User,
    params: Mapping[str, Any],
    rendered: Mapping[str, list[Obj]],
    *,
    log: Logger,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Run every step's undo in reverse order; the first failure stops this user."""
    records: list[StepRecord] = []
    cancel = CancelToken()
    named = step_templates(steps)
    for step in reversed(steps):
        undo = undo_of(step)
        if undo is None:
            records.append(StepRecord(step.NAME, "skipped", "nothing to undo"))
            continue
        step_log = log.bind(user=user.name, step=step.NAME)
        started = clock()
        deadline = Deadline(clock, started + max(step.TIMEOUT, UNDO_MIN_SECONDS))
        kube = Kube(cluster, log=step_log, deadline=deadline, cancel=cancel)
        ctx = StepContext(
            step.NAME, user, params, rendered, kube, step_log, deadline, cancel, False, named
        )
        try:
            result = undo(ctx)
        except RunnerError as e:
            ms = int((clock() - started) * 1000)
            step_log.error("undo failed", reason=str(e), exit_code=e.exit_code)
            records.append(StepRecord(step.NAME, "failed", str(e), ms))
            return RunResult(user.name, e.exit_code, step.NAME, str(e), tuple(records))
        status: Status = "changed" if result.changed else "unchanged"
        step_log.info("undone", status=status, detail=result.detail)
        records.append(
            StepRecord(step.NAME, status, result.detail, int((clock() - started) * 1000))
        )
    return RunResult(user.name, 0, steps=tuple(records))


# -- helpers for undo functions ------------------------------------------------------------
def remove(ctx: StepContext, *template_names: str) -> StepResult:
    """Delete every object the templates render, last document first; a Namespace is waited
    on until it is gone (its content goes with it), so a later launch never meets it
    Terminating."""
    deleted: list[str] = []
    absent: list[str] = []
    for name in template_names:
        for obj in reversed(ctx.objects(name)):
            meta = obj["metadata"]
            what = (
                f"{obj['kind']} {'/'.join(p for p in (meta.get('namespace'), meta['name']) if p)}"
            )
            gone = ctx.kube.delete(
                obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")
            )
            if obj["kind"] == "Namespace":
                gone = _wait_namespace_gone(ctx, meta["name"]) or gone
            (deleted if gone else absent).append(what)
    if deleted:
        return StepResult.done(f"deleted {', '.join(deleted)}")
    return StepResult.noop(f"{', '.join(absent)} already absent")


def _wait_namespace_gone(ctx: StepContext, name: str) -> bool:
    """True when the namespace still existed (Terminating) and we waited for it."""
    waited = False

    def gone(objects: list[Obj]) -> Verdict:
        nonlocal waited
        if not objects:
            return done("gone")
        waited = True
        phase = (objects[0].get("status") or {}).get("phase", "?")
        return pending(f"phase {phase}")

    ctx.wait_collection(Target("v1", "Namespace", None, name), gone, "deleted")
    return waited


def remove_member(ctx: StepContext, roll: Target, member: str) -> StepResult:
    """Take `member` out of `spec.members`, keeping every other member. The list is replaced
    as a whole, so this is a read-modify-write (kube.update: a concurrent change makes the
    write fail with 409, and it is recomputed)."""
    keep: list[str] = []

    def drop(live: Obj | None) -> Obj | None:
        members = list(((live or {}).get("spec") or {}).get("members") or [])
        if live is None or member not in members:
            return None
        keep[:] = [m for m in members if m != member]
        live["spec"]["members"] = keep
        return live

    if not ctx.kube.update(roll, drop).changed:
        return StepResult.noop(f"{member} is not a member of {roll.describe()}")
    others = f"; kept {', '.join(keep)}" if keep else ""
    return StepResult.done(f"removed {member} from {roll.describe()}{others}")
