"""Progress on the runner's own Pod: the running step(s) in an annotation the launcher reads.

The engine reports every change of the running set; writing each one would cost an API
request per step start and end. A background writer coalesces them instead: the first change
is written at once, later ones at most once per interval and only the latest. Nothing is
written when the run ends: a finished Pod's outcome and failed step come from its termination
message, which the launcher reads. The engine never waits for the API server here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from runner.waits import Clock

STEP_ANNOTATION = "workshop-runner.io/step"  # on the runner's own Pod: the current step(s)
INTERVAL_SECONDS = 5.0  # a human reads the live table; real steps take minutes


class Coalescer:
    """When to write which value: pure, so its timing is tested without real time."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.latest: str | None = None
        self.written: str | None = None
        self.last_write = float("-inf")

    def offer(self, value: str) -> None:
        self.latest = value

    def due(self, now: float) -> tuple[str | None, float | None]:
        """(the value to write now, or None; and if None, how long until it may be written,
        None meaning nothing is waiting to be written)."""
        if self.latest is None or self.latest == self.written:
            return None, None
        wait = self.last_write + self.interval - now
        if wait > 0:
            return None, wait
        self.written, self.last_write = self.latest, now
        return self.latest, None


class ProgressWriter:
    """Feeds a Coalescer from the engine's callback and writes from its own thread."""

    def __init__(
        self,
        write: Callable[[str], None],
        interval: float = INTERVAL_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._write = write
        self._clock = clock
        self._coalescer = Coalescer(interval)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def __call__(self, running: list[str]) -> None:
        with self._cond:
            self._coalescer.offer(",".join(running))
            self._cond.notify()

    def close(self, timeout: float) -> None:
        """Stop the thread (a write under way may finish within `timeout`); values not
        written by then are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    # A value already due is written even when closing (the first one of a
                    # quick run); one the interval holds back is not.
                    value, wait = self._coalescer.due(self._clock())
                    if value is not None:
                        break
                    if self._closed:
                        return
                    self._cond.wait(wait)
            self._write(value)
