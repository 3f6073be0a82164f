"""One list + watch per kind (Jobs, Pods) for a whole launch, by label selector.

However many users a launch has, the launcher keeps exactly two watches open: each lists once,
then watches from the list's resourceVersion with bookmarks and a bounded server timeout,
resumes from the last resourceVersion when the server ends the watch, and re-lists only on
410 Gone. A broken stream is resumed after a short backoff. The number of requests therefore
grows with the launch's duration (one per WATCH_SECONDS per kind), never with its size.

Events go to one queue, consumed by a single thread (the display), so no state is shared
between threads.
"""

# The kubernetes client is untyped; its calls stay in runner.kube and here.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import urllib3
from kubernetes.client.exceptions import ApiException

from runner.apierrors import classify
from runner.errors import ApiError, InternalError, RunnerError, TransientError
from runner.kube import REQUEST_TIMEOUT, Kube, watch_events
from runner.launcher.progress import Kind
from runner.waits import CancelToken, Obj

WATCH_SECONDS = 300
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
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
        try:
            self._follow(kind)
        except RunnerError as e:
            if not self.cancel.cancelled:
                self.events.put(Event(kind, "ERROR", error=e))
        except Exception as e:  # a thread boundary: hand the unexpected to the main thread
            error = InternalError.unexpected(f"watch {kind}", e)
            self.events.put(Event(kind, "ERROR", error=error))

    def _follow(self, kind: Kind) -> None:
        api_version = KINDS[kind]
        resource_version: str | None = None
        broken = 0
        while not self.cancel.cancelled:
            if resource_version is None:
                items, resource_version = self.kube.list_items(
                    api_version, kind, self.namespace, label_selector=self.selector
                )
                self.events.put(Event(kind, "SYNC", objects=tuple(items)))
            try:
                for event in self._stream(kind, resource_version):
                    etype, obj = event.get("type"), event.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            resource_version = None
                            break
                        raise ApiError(f"watch {kind}: {obj.get('message', obj)}")
                    resource_version = obj.get("metadata", {}).get(
                        "resourceVersion", resource_version
                    )
                    broken = 0
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        self.events.put(Event(kind, etype, obj))
            except ApiError as e:
                if e.status != 410:
                    raise
                resource_version = None
            except TransientError:
                self.cancel.sleep(BACKOFF[min(broken, len(BACKOFF) - 1)])
                broken += 1

    def _stream(self, kind: Kind, resource_version: str) -> Iterator[Obj]:
        self.cancel.check()
        res = self.kube.resource(KINDS[kind], kind)
        what = f"{kind} {self.namespace} -l {self.selector}"
        self.kube.cluster.count()
        try:
            resp: Any = self.kube.cluster.dyn.request(
                "GET",
                res.path(namespace=self.namespace),
                serialize=False,
                watch=True,
                label_selector=self.selector,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_seconds,
                _request_timeout=(REQUEST_TIMEOUT[0], self.watch_seconds + 15.0),
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise classify(e, "watch", what) from None
        yield from watch_events(resp, self.cancel, what)
