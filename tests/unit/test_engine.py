"""The engine with fake steps: ordering, concurrency along needs, cancellation, error mapping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from runner import errors
from runner.engine import Engine
from runner.logs import get_logger
from runner.result import StepResult
from runner.waits import CancelToken, Deadline

Action = Callable[[Any], StepResult]
During = Callable[[Any], object]


@dataclass
class FakeStep:
    NAME: str
    NEEDS: tuple[str, ...] = ()
    action: Action = lambda ctx: StepResult.noop("nothing to do")
    TIMEOUT: float = 30.0
    DESCRIPTION: str = "fake"
    CAP: float | None = None
    TEMPLATES: tuple[str, ...] = ()
    APIS: tuple[tuple[str, str], ...] = ()
    undo: Action | None = None

    def run(self, ctx: Any) -> StepResult:
        return self.action(ctx)


@dataclass
class FakeContext:
    step: str
    deadline: Deadline
    cancel: CancelToken


def engine(steps: list[FakeStep], progress: list[list[str]] | None = None) -> Engine:
    def make(step: Any, deadline: Deadline, cancel: CancelToken, log: Any) -> FakeContext:
        return FakeContext(step.NAME, deadline, cancel)

    return Engine(
        steps,
        make,
        log=get_logger(user="u1"),
        on_progress=progress.append if progress is not None else None,
    )


class Journal:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def step(self, result: StepResult | None = None, during: During | None = None) -> Action:
        def act(ctx: Any) -> StepResult:
            with self.lock:
                self.events.append(f"start {ctx.step}")
            if during is not None:
                during(ctx)
            with self.lock:
                self.events.append(f"end {ctx.step}")
            return result or StepResult.done(f"did {ctx.step}")

        return act


def mesh_like(
    journal: Journal, sso: During | None = None, mesh: During | None = None
) -> list[FakeStep]:
    """root, then two chains (sso-1 -> sso-2, mesh-1 -> mesh-2), then a join."""
    return [
        FakeStep("root", (), journal.step()),
        FakeStep("sso-1", ("root",), journal.step(during=sso)),
        FakeStep("sso-2", ("sso-1",), journal.step()),
        FakeStep("mesh-1", ("root",), journal.step(during=mesh)),
        FakeStep("mesh-2", ("mesh-1",), journal.step()),
        FakeStep("join", ("sso-2", "mesh-2"), journal.step()),
    ]


ALL = ["root", "sso-1", "sso-2", "mesh-1", "mesh-2", "join"]


def test_chains_overlap() -> None:
    journal = Journal()
    mesh_started = threading.Event()

    def sso(ctx: Any) -> None:
        # Only a concurrent engine lets mesh-1 start while sso-1 is still running.
        assert mesh_started.wait(10), "mesh-1 did not start while sso-1 was running"

    steps = mesh_like(journal, sso=sso, mesh=lambda ctx: mesh_started.set())
    result = engine(steps).run("u1", ALL)
    assert result.exit_code == 0
    ev = journal.events
    assert ev.index("start mesh-1") < ev.index("end sso-1")
    assert ev[0] == "start root"
    assert ev[-2:] == ["start join", "end join"]
    assert [s.status for s in result.steps] == ["changed"] * 6


def test_serial_runs_in_declaration_order() -> None:
    journal = Journal()
    result = engine(mesh_like(journal)).run("u1", ALL, serial=True)
    assert result.exit_code == 0
    assert journal.events == [f"{x} {n}" for n in ALL for x in ("start", "end")]


def test_failure_cancels_the_other_chain() -> None:
    journal = Journal()
    mesh_waiting = threading.Event()

    def sso(ctx: Any) -> None:
        assert mesh_waiting.wait(10)
        raise errors.OperatorFailed(
            "CSV rhsso-operator.7.5.2-opr-001 Failed: TooManyOperatorGroups"
        )

    def mesh(ctx: Any) -> None:
        mesh_waiting.set()
        ctx.cancel.sleep(30)  # a wait boundary: wakes up at once on cancellation
        raise AssertionError("not cancelled")

    result = engine(mesh_like(journal, sso=sso, mesh=mesh)).run("u1", ALL)
    assert result.exit_code == 6
    assert result.failed_step == "sso-1"
    assert "TooManyOperatorGroups" in (result.reason or "")
    status = {s.name: (s.status, s.detail) for s in result.steps}
    assert status["root"][0] == "changed"
    assert status["sso-1"][0] == "failed"
    assert status["mesh-1"] == ("skipped", "cancelled: step sso-1 failed")
    for name in ("sso-2", "mesh-2", "join"):
        assert status[name] == ("skipped", "not run: step sso-1 failed")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidInput("x"), 2),
        (errors.TemplateError("x"), 3),
        (errors.Forbidden("x"), 4),
        (errors.WaitTimeout("x"), 5),
        (errors.OperatorFailed("x"), 6),
        (errors.ApiMissing("x"), 7),
        (errors.ApiError("x", 400), 1),
        (ValueError("surprise"), 1),
    ],
)
def test_error_mapping(error: Exception, code: int) -> None:
    def fail(ctx: Any) -> StepResult:
        raise error

    steps = [FakeStep("a"), FakeStep("b", ("a",), fail), FakeStep("c", ("b",))]
    result = engine(steps).run("u1", ["a", "b", "c"])
    assert (result.exit_code, result.failed_step) == (code, "b")
    assert [s.status for s in result.steps] == ["unchanged", "failed", "skipped"]
    if isinstance(error, ValueError):
        assert result.reason == "step b: unexpected ValueError: surprise"


def test_unselected_steps_and_needs() -> None:
    journal = Journal()
    result = engine(mesh_like(journal)).run("u1", ["sso-2", "join"])
    assert result.exit_code == 0
    assert journal.events == ["start sso-2", "end sso-2", "start join", "end join"]
    status = {s.name: (s.status, s.detail) for s in result.steps}
    assert status["root"] == ("skipped", "not selected")


def test_unchanged_detail_and_progress() -> None:
    progress: list[list[str]] = []
    steps = [FakeStep("a", (), lambda ctx: StepResult.noop("namespace a exists"))]
    result = engine(steps, progress).run("u1", ["a"])
    assert result.steps[0].status == "unchanged"
    assert result.steps[0].detail == "namespace a exists"
    assert progress == [["a"]]


def test_each_step_gets_its_own_deadline() -> None:
    seen: dict[str, float] = {}

    def remember(ctx: Any) -> StepResult:
        seen[ctx.step] = ctx.deadline.remaining()
        return StepResult.noop("ok")

    steps = [FakeStep("a", (), remember, TIMEOUT=5), FakeStep("b", ("a",), remember, TIMEOUT=600)]
    engine(steps).run("u1", ["a", "b"])
    assert 0 < seen["a"] <= 5 < seen["b"] <= 600


def test_declaration_must_list_needs_first() -> None:
    with pytest.raises(errors.InternalError, match="needs b, declared after it"):
        engine([FakeStep("a", ("b",)), FakeStep("b")])
    with pytest.raises(errors.InternalError, match="declared twice"):
        engine([FakeStep("a"), FakeStep("a")])


def test_timeout_override() -> None:
    seen: list[float] = []

    def remember(ctx: Any) -> StepResult:
        seen.append(ctx.deadline.remaining())
        return StepResult.noop("ok")

    steps = [FakeStep("a", (), remember, TIMEOUT=600)]

    def make(step: Any, deadline: Deadline, cancel: CancelToken, log: Any) -> Any:
        return FakeContext(step.NAME, deadline, cancel)

    Engine(steps, make, log=get_logger(), timeouts={"a": 2}).run("u1", ["a"])
    assert 0 < seen[0] <= 2


def test_stop_from_outside_names_the_interrupted_step() -> None:
    started = threading.Event()

    def long_wait(ctx: Any) -> StepResult:
        started.set()
        ctx.cancel.sleep(30)
        return StepResult.noop("not reached")

    eng = engine([FakeStep("a"), FakeStep("b", ("a",), long_wait), FakeStep("c", ("b",))])

    def terminate() -> None:
        started.wait(10)
        eng.stop("terminated by SIGTERM")

    threading.Thread(target=terminate).start()
    result = eng.run("u1", ["a", "b", "c"])
    assert (result.exit_code, result.failed_step) == (1, "b")
    assert result.reason == "cancelled: terminated by SIGTERM"
    assert [s.status for s in result.steps] == ["unchanged", "skipped", "skipped"]


def test_progress_shows_each_running_waits_state() -> None:
    """A wait that sees an object its operator has not reconciled shows `(queued)`, then
    `(in progress)` once status appears; the live table and `status` show this label."""
    progress: list[list[str]] = []
    reported = threading.Event()

    def on_progress(labels: list[str]) -> None:
        progress.append(labels)
        reported.set()

    def waits_on_operator(ctx: Any) -> StepResult:
        assert reported.wait(30)  # the engine has shown the step as started
        ctx.deadline.observe([{"metadata": {"name": "smcp"}}])
        ctx.deadline.observe([{"metadata": {"name": "smcp"}, "status": {"phase": "x"}}])
        return StepResult.done("ready")

    steps = [FakeStep("smcp", (), waits_on_operator)]
    Engine(steps, fake_context, log=get_logger(user="u1"), on_progress=on_progress).run(
        "u1", ["smcp"]
    )
    assert progress == [["smcp"], ["smcp (queued)"], ["smcp (in progress)"]]


def fake_context(step: Any, deadline: Deadline, cancel: CancelToken, log: Any) -> FakeContext:
    return FakeContext(step.NAME, deadline, cancel)
