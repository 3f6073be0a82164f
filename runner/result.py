"""Step and run results, and the ≤ 4 KiB termination message built from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from runner.context import StepContext

Status = Literal["changed", "unchanged", "failed", "skipped"]
TERMINATION_LIMIT = 4096


@dataclass(frozen=True)
class StepResult:
    """What a step returns: did it change anything, and a short why/what."""

    changed: bool
    detail: str

    @classmethod
    def done(cls, detail: str) -> StepResult:
        return cls(changed=True, detail=detail)

    @classmethod
    def noop(cls, reason: str) -> StepResult:
        return cls(changed=False, detail=reason)


_PAST = {"bind": "bound", "set": "set"}


def did(verb: str, what: str, *, dry_run: bool) -> str:
    """How a step reports a write: "created X" - or, in a dry run, "would create X". The one
    place that phrases dry-run sentences (runner.kube and StepContext.did use it)."""
    if dry_run:
        return f"would {verb} {what}"
    past = _PAST.get(verb) or (f"{verb}d" if verb.endswith("e") else f"{verb}ed")
    return f"{past} {what}"


class DryRunStop(Exception):
    """A dry run reached what it cannot check: the step ends there with what it did so far
    and `note` (perform turns this into its result)."""

    def __init__(self, note: str, so_far: StepResult | None, log_detail: str = "") -> None:
        super().__init__(log_detail or note)
        done = so_far.detail if so_far is not None else ""
        changed = so_far.changed if so_far is not None else False
        self.result = StepResult(changed, f"{done}; {note}" if done else note)


class NotWaiting(DryRunStop):
    """A dry run reached a wait."""

    def __init__(self, where: str, what: str, so_far: StepResult | None) -> None:
        super().__init__(
            f"dry-run: not waiting for {what}", so_far, f"dry-run: not waiting for {where}"
        )


def perform(action: Callable[[StepContext], StepResult], ctx: StepContext) -> StepResult:
    """Run a step's `run` or `undo`: its result, or in a dry run what it did up to its first
    wait (the engine and the step tests run steps through this)."""
    try:
        return action(ctx)
    except DryRunStop as stop:
        ctx.log.info("dry-run stops here", detail=str(stop))
        return stop.result


@dataclass(frozen=True)
class StepRecord:
    """The engine's bookkeeping for one step of one run."""

    name: str
    status: Status
    detail: str
    ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "ms": self.ms}


@dataclass(frozen=True)
class RunResult:
    user: str | None
    exit_code: int
    failed_step: str | None = None
    reason: str | None = None
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)

    @property
    def outcome(self) -> Literal["succeeded", "failed"]:
        return "succeeded" if self.exit_code == 0 else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "failed_step": self.failed_step,
            "reason": self.reason,
            "steps": [s.as_dict() for s in self.steps],
        }

    def termination_message(self, limit: int = TERMINATION_LIMIT) -> str:
        """JSON of the result, shortened (details first, then the reason) to fit `limit` bytes."""
        data = self.as_dict()
        for detail_len, reason_len in ((None, None), (120, 1000), (40, 600), (0, 300), (0, 120)):
            if detail_len is not None:
                for s in data["steps"]:
                    s["detail"] = _clip(s["detail"], detail_len)
            if reason_len is not None and data["reason"]:
                data["reason"] = _clip(data["reason"], reason_len)
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
            if len(text.encode()) <= limit:
                return text
        data["steps"] = [s for s in data["steps"] if s["status"] == "failed"]
        return json.dumps(data, separators=(",", ":"))


def _clip(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    return text[: max(n - 1, 0)] + "…" if n else ""


class Step(Protocol):
    """A step module (the step contract in docs/design.md).

    NAME, DESCRIPTION; NEEDS: the steps that must have succeeded first; TIMEOUT (seconds);
    CAP (seconds, or None): with it, TIMEOUT is a stall window - the step's waits go on while
    the awaited objects show progress or are queued for their operator, up to CAP
    (runner/waits.py Deadline); TEMPLATES: the template files it applies; APIS: the
    (apiVersion, kind) pairs it uses besides those (both resolved before the run starts);
    run(ctx); undo(ctx) for teardown, or None when there is nothing to undo."""

    @property
    def NAME(self) -> str: ...

    @property
    def DESCRIPTION(self) -> str: ...

    @property
    def NEEDS(self) -> tuple[str, ...]: ...

    @property
    def TIMEOUT(self) -> float: ...

    @property
    def CAP(self) -> float | None: ...

    @property
    def TEMPLATES(self) -> tuple[str, ...]: ...

    @property
    def APIS(self) -> tuple[tuple[str, str], ...]: ...

    def run(self, ctx: StepContext, /) -> StepResult: ...

    @property
    def undo(self) -> Callable[[StepContext], StepResult] | None: ...
