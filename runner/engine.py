"""The engine: runs the selected steps, each with its own deadline, concurrently along their
declared needs (or one by one with --serial), and records what each did.

A step failure cancels the run: steps not started are skipped, running ones stop at their next
wait or API call boundary. The first failure names the failed step and sets the exit code.
The engine knows nothing about the cluster: the CLI gives it a context factory.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from runner.errors import Cancelled, InternalError, RunnerError
from runner.logs import Logger, redact
from runner.result import RunResult, Status, Step, StepRecord
from runner.waits import CancelToken, Clock, Deadline

ContextFactory = Callable[[Step, Deadline, CancelToken, Logger], Any]
ProgressCallback = Callable[[list[str]], None]


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


def step_deadline(step: Step, override: float | None, clock: Clock, started: float) -> Deadline:
    """A step's deadline: `--timeout STEP=S` is a plain S seconds; otherwise TIMEOUT, as a
    stall window up to the step's CAP when it has one."""
    if override is not None:
        return Deadline(clock, started + override)
    cap = getattr(step, "CAP", None)
    if cap is None or cap <= step.TIMEOUT:
        return Deadline(clock, started + step.TIMEOUT)
    return Deadline(clock, started + cap, step.TIMEOUT)


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
    ) -> None:
        check_declaration(steps)
        self.steps = list(steps)
        self.make_context = make_context
        self.log = log
        self.clock = clock
        self.on_progress = on_progress
        self._last_progress: list[str] = []
        self.timeouts = dict(timeouts or {})
        self._cancel = CancelToken()
        self._stopped: str | None = None

    def stop(self, reason: str) -> None:
        """Stop the run from outside (SIGTERM): running steps stop at their next boundary,
        and the result is a failure naming the step that was interrupted."""
        self._stopped = reason
        self._cancel.cancel(reason)

    def run(self, user: str | None, selected: Sequence[str], *, serial: bool = False) -> RunResult:
        chosen = [s for s in self.steps if s.NAME in selected]
        names = {s.NAME for s in chosen}
        needs = {s.NAME: [n for n in s.NEEDS if n in names] for s in chosen}
        cancel = self._cancel
        records: dict[str, StepRecord] = {}
        failure: tuple[str, RunnerError] | None = None
        waiting = list(chosen)
        running: dict[Future[_Outcome], Step] = {}
        succeeded: set[str] = set()
        with ThreadPoolExecutor(max_workers=max(len(chosen), 1)) as pool:
            while waiting or running:
                if not cancel.cancelled:
                    for step in list(waiting):
                        if serial and running:
                            break
                        if all(n in succeeded for n in needs[step.NAME]):
                            waiting.remove(step)
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
                        succeeded.add(step.NAME)
                    elif failure is None and not isinstance(outcome.error, Cancelled):
                        failure = (step.NAME, outcome.error)
                        cancel.cancel(f"step {step.NAME} failed")
                    elif failure is None and self._stopped:
                        failure = (step.NAME, outcome.error)
        for step in waiting:
            why = f"not run: step {failure[0]} failed" if failure else "not run"
            records[step.NAME] = StepRecord(step.NAME, "skipped", why)
        ordered = tuple(
            records.get(s.NAME) or StepRecord(s.NAME, "skipped", "not selected") for s in self.steps
        )
        if failure is None and self._stopped:
            failure = (waiting[0].NAME if waiting else "", Cancelled(self._stopped))
        if failure is None:
            return RunResult(user, 0, steps=ordered)
        name, error = failure
        return RunResult(user, error.exit_code, name or None, str(error), ordered)

    def _execute(self, step: Step, cancel: CancelToken) -> _Outcome:
        log = self.log.bind(step=step.NAME)
        started = self.clock()
        deadline = step_deadline(step, self.timeouts.get(step.NAME), self.clock, started)
        log.info(
            "step started",
            timeout=deadline.stall or deadline.at - started,
            cap=deadline.at - started,
        )
        error: RunnerError | None = None
        try:
            result = step.run(self.make_context(step, deadline, cancel, log))
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

    def _progress(self, running: list[str]) -> None:
        if self.on_progress is not None and running and running != self._last_progress:
            self._last_progress = running
            self.on_progress(running)
