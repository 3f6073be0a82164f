"""One list + watch per kind (Jobs, Pods) for a whole launch, by label selector.

However many users a launch has, the launcher keeps exactly two watches open, each one
runner.kube's watch engine (Kube.watch): a list, then a watch from its resourceVersion with
bookmarks and a bounded server timeout, resumed when the server ends it, re-listed only on 410
Gone, resumed after a short backoff when a stream breaks. The number of requests therefore
grows with the launch's duration (one per WATCH_SECONDS per kind), never with its size.

Events go to one queue, consumed by a single thread (the display), so no state is shared
between threads.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Literal

from runner.errors import InternalError, RunnerError
from runner.kube import Kube
from runner.launcher.progress import Kind
from runner.waits import CancelToken, Obj, Target

WATCH_SECONDS = 300
KINDS: dict[Kind, str] = {"Job": "batch/v1", "Pod": "v1"}
EventType = Literal["SYNC", "ADDED", "MODIFIED", "DELETED", "ERROR"]


@dataclass(frozen=True)
class Event:
    kind: Kind
    type: EventType
    obj: Obj = field(default_factory=dict)
    objects: tuple[Obj, ...] = ()  # SYNC: everything the (re-)list returned
    error: RunnerError | None = None


class LaunchWatch:
    """Two daemon threads feeding `events`; `stop()` closes the open streams at once."""

    def __init__(
        self, kube: Kube, namespace: str, selector: str, *, watch_seconds: int = WATCH_SECONDS
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.selector = selector
        self.watch_seconds = watch_seconds
        self.events: queue.Queue[Event] = queue.Queue()
        self.cancel = CancelToken()
        self._threads: list[threading.Thread] = []

    def start(self) -> LaunchWatch:
        for kind in KINDS:
            thread = threading.Thread(target=self._run, args=(kind,), daemon=True)
            thread.name = f"watch-{kind.lower()}"
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.cancel.cancel("stopped")
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self, kind: Kind) -> None:
        target = Target(KINDS[kind], kind, self.namespace, selector=self.selector)
        try:
            for event in self.kube.watch(
                target, cancel=self.cancel, watch_seconds=self.watch_seconds
            ):
                self.events.put(Event(kind, event.type, event.obj, event.objects))
        except RunnerError as e:
            if not self.cancel.cancelled:
                self.events.put(Event(kind, "ERROR", error=e))
        except Exception as e:  # a thread boundary: hand the unexpected to the main thread
            error = InternalError.unexpected(f"watch {kind}", e)
            self.events.put(Event(kind, "ERROR", error=error))
