"""The engine: runs the selected steps, each with its own deadline, concurrently along their
declared needs (or one by one with --serial), and records what each did. Teardown is the same
engine running each step's `undo` in reverse order, one at a time, with the same records.

A step failure cancels the run: steps not started are skipped, running ones stop at their next
wait or API call boundary. The first failure names the failed step and sets the exit code.
The engine knows nothing about the cluster: the CLI gives it a context factory.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING

from runner.errors import Cancelled, InternalError, RunnerError
from runner.logs import Logger, redact
from runner.result import RunResult, Status, Step, StepRecord, StepResult, perform
from runner.waits import CancelToken, Clock, Deadline

if TYPE_CHECKING:
    from runner.context import StepContext

ContextFactory = Callable[[Step, Deadline, CancelToken, Logger], "StepContext"]
ProgressCallback = Callable[[list[str]], None]
Action = Callable[["StepContext"], StepResult]
UNDO_MIN_SECONDS = 180.0  # an undo waits for namespaces and finalizers to let go


@dataclass(frozen=True)
class _Outcome:
    record: StepRecord
    error: RunnerError | None


def check_declaration(steps: Sequence[Step]) -> None:
    """Names are unique and every step's needs are declared before it."""
    seen: set[str] = set()
    for step in steps:
        if step.NAME in seen:
            raise InternalError(f"step {step.NAME} is declared twice")
        missing = [n for n in step.NEEDS if n not in seen]
        if missing:
            raise InternalError(f"step {step.NAME} needs {', '.join(missing)}, declared after it")
        seen.add(step.NAME)


def step_deadline(
    step: Step, override: float | None, clock: Clock, started: float, scale: float = 1.0
) -> Deadline:
    """A step's deadline: `--timeout STEP=S` is a plain S seconds; otherwise TIMEOUT, as a
    stall window up to the step's CAP when it has one. Those two figures of a step that waits
    on an operator (it has a CAP) are times `scale` (WORKSHOP_RUNNER_DEADLINE_SCALE: a test
    cluster whose operators run that much faster); a plain deadline covers API calls, which
    no operator scale changes."""
    if override is not None:
        return Deadline(clock, started + override)
    cap = step.CAP
    if cap is None or cap <= step.TIMEOUT:
        return Deadline(clock, started + step.TIMEOUT)
    return Deadline(clock, started + cap * scale, step.TIMEOUT * scale)


class Engine:
    def __init__(
        self,
        steps: Sequence[Step],
        make_context: ContextFactory,
        *,
        log: Logger,
        clock: Clock = time.monotonic,
        on_progress: ProgressCallback | None = None,
        timeouts: Mapping[str, float] | None = None,
        deadline_scale: float = 1.0,
    ) -> None:
        check_declaration(steps)
        self.steps = list(steps)
        self.make_context = make_context
        self.log = log
        self.clock = clock
        self.on_progress = on_progress
        self._last_progress: list[str] = []
        self._running: list[str] = []
        self._deadlines: dict[str, Deadline] = {}
        self._progress_lock = threading.Lock()
        self.timeouts = dict(timeouts or {})
        self.deadline_scale = deadline_scale
        self._cancel = CancelToken()
        self._stopped: str | None = None

    def stop(self, reason: str) -> None:
        """Stop the run from outside (SIGTERM): running steps stop at their next boundary,
        and the result is a failure naming the step that was interrupted."""
        self._stopped = reason
        self._cancel.cancel(reason)

    def run(self, user: str | None, selected: Sequence[str], *, serial: bool = False) -> RunResult:
        chosen = [s for s in self.steps if s.NAME in selected]
        order = {s.NAME: i for i, s in enumerate(chosen)}
        graph = TopologicalSorter({s.NAME: [n for n in s.NEEDS if n in order] for s in chosen})
        graph.prepare()
        cancel = self._cancel
        records: dict[str, StepRecord] = {}
        failure: tuple[str, RunnerError] | None = None
        ready: list[Step] = []  # needs met, not started yet: declaration order
        running: dict[Future[_Outcome], Step] = {}
        with ThreadPoolExecutor(max_workers=max(len(chosen), 1)) as pool:
            while True:
                if not cancel.cancelled:
                    now_ready = graph.get_ready()
                    ready += [s for s in chosen if s.NAME in now_ready]
                    ready.sort(key=lambda s: order[s.NAME])
                    while ready and not (serial and running):
                        step = ready.pop(0)
                        running[pool.submit(self._execute, step, cancel)] = step
                    self._progress([s.NAME for s in self.steps if s in running.values()])
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    step = running.pop(future)
                    outcome = future.result()
                    records[step.NAME] = outcome.record
                    if outcome.error is None:
                        graph.done(step.NAME)
                    elif failure is None and not isinstance(outcome.error, Cancelled):
                        failure = (step.NAME, outcome.error)
                        cancel.cancel(f"step {step.NAME} failed")
                    elif failure is None and self._stopped:
                        failure = (step.NAME, outcome.error)
        not_run = [s for s in chosen if s.NAME not in records]
        for step in not_run:
            why = f"not run: step {failure[0]} failed" if failure else "not run"
            records[step.NAME] = StepRecord(step.NAME, "skipped", why)
        ordered = tuple(
            records.get(s.NAME) or StepRecord(s.NAME, "skipped", "not selected") for s in self.steps
        )
        if failure is None and self._stopped:
            failure = (not_run[0].NAME if not_run else "", Cancelled(self._stopped))
        if failure is None:
            return RunResult(user, 0, steps=ordered)
        name, error = failure
        return RunResult(user, error.exit_code, name or None, str(error), ordered)

    def teardown(self, user: str | None) -> RunResult:
        """Every step's `undo`, in reverse order, one at a time; the first failure stops."""
        records: list[StepRecord] = []
        for step in reversed(self.steps):
            undo = step.undo
            if undo is None:
                records.append(StepRecord(step.NAME, "skipped", "nothing to undo"))
                continue
            outcome = self._execute(step, self._cancel, undo=undo)
            records.append(outcome.record)
            if outcome.error is not None:
                error = outcome.error
                return RunResult(user, error.exit_code, step.NAME, str(error), tuple(records))
        return RunResult(user, 0, steps=tuple(records))

    def _execute(self, step: Step, cancel: CancelToken, *, undo: Action | None = None) -> _Outcome:
        """Run the step (or its `undo`) with its deadline; its record and error, timed."""
        log = self.log.bind(step=step.NAME, **({"undo": True} if undo else {}))
        started = self.clock()
        if undo:
            deadline = Deadline(self.clock, started + max(step.TIMEOUT, UNDO_MIN_SECONDS))
        else:
            deadline = step_deadline(
                step, self.timeouts.get(step.NAME), self.clock, started, self.deadline_scale
            )
        deadline.on_change = lambda _state: self._progress(None)
        with self._progress_lock:
            self._deadlines[step.NAME] = deadline
        log.info(
            "step started",
            timeout=deadline.stall or deadline.at - started,
            cap=deadline.at - started,
        )
        error: RunnerError | None = None
        try:
            result = perform(undo or step.run, self.make_context(step, deadline, cancel, log))
        except Cancelled as e:
            error = e
        except RunnerError as e:
            error = e
        except Exception as e:  # the unexpected: keep the traceback in the log, exit 1
            error = InternalError.unexpected(f"step {step.NAME}", e)
            log.error("step crashed", error=str(error), traceback=redact(traceback.format_exc()))
        ms = int((self.clock() - started) * 1000)
        if isinstance(error, Cancelled):
            log.info("step cancelled", reason=str(error), ms=ms)
            return _Outcome(StepRecord(step.NAME, "skipped", str(error), ms), error)
        if error is not None:
            log.error("step failed", reason=str(error), exit_code=error.exit_code, ms=ms)
            return _Outcome(StepRecord(step.NAME, "failed", str(error), ms), error)
        status: Status = "changed" if result.changed else "unchanged"
        log.info("step finished", status=status, detail=result.detail, ms=ms)
        return _Outcome(StepRecord(step.NAME, status, result.detail, ms), None)

    def _progress(self, running: list[str] | None) -> None:
        """Report the running steps, each with its wait's state (`smcp (queued)`); None: the
        same steps, a wait's state changed."""
        if self.on_progress is None:
            return
        with self._progress_lock:
            if running is not None:
                self._running = running
            labels = []
            for name in self._running:
                deadline = self._deadlines.get(name)
                state = deadline.state if deadline is not None else ""
                labels.append(f"{name} ({state})" if state else name)
            if not labels or labels == self._last_progress:
                return
            self._last_progress = labels
            self.on_progress(labels)  # only hands the value over (runner/progress.py)
