"""Event-driven waits: list, then watch from the list's resourceVersion, until a pure predicate
says done or failed, or the deadline passes.

The watch uses bookmarks and a bounded server timeout; when it ends it resumes from the last
resourceVersion seen; a 410 Gone means re-list. There is no sleep loop: time only passes inside
the watch (bounded by the deadline) or in a short backoff after a broken stream. The clock and
the sleep are injected so unit tests never wait for real.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from runner.errors import ApiError, Cancelled, OperatorFailed, TransientError, WaitTimeout

Clock = Callable[[], float]
Obj = dict[str, Any]
MAX_WATCH_SECONDS = 60
STREAM_BACKOFF = (0.1, 0.5, 1.0, 2.0)


class CancelToken:
    """Set when another step of the run failed; sleeps and open watches wake up at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            callback()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(f"cancelled: {self.reason}")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early (and raising Cancelled) when the run is cancelled."""
        if self._event.wait(max(seconds, 0.0)):
            self.check()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Register `callback`; returns the function that unregisters it."""
        with self._lock:
            key = self._next
            self._next += 1
            self._callbacks[key] = callback
            run_now = self._event.is_set()
        if run_now:
            callback()

        def remove() -> None:
            with self._lock:
                self._callbacks.pop(key, None)

        return remove


class Deadline:
    """When a step gives up: a hard cap on elapsed time and, optionally, a stall window.

    With `stall`, a wait that sees no progress for that many seconds expires before the cap.
    Progress is what an operator shows while it works: an awaited object's status (phase,
    conditions, readiness components), `observedGeneration` or `generation` changed. An object
    without any status is *queued*: its operator has not reconciled it yet (it may be working
    through a queue of other users' objects), and so is one whose status.observedGeneration is
    behind its generation: only the cap applies. So is an object its operator has paused
    while the components it applied become ready (Maistra's SMCP between chart groups,
    `_paused`): the operator is working, and the component list it names shrinking is
    progress. Waits report what they observe through `observe`; `state` says queued / in
    progress / stalled for displays.
    """

    def __init__(self, clock: Clock, at: float, stall: float | None = None) -> None:
        self.clock = clock
        self.at = at
        self.stall = stall
        self._lock = threading.Lock()
        self._progress_at = clock()
        self._fingerprint: tuple[Any, ...] | None = None
        self._queued = False
        self._paused = False
        self._observed = False
        self._reported = ""
        # Called with the new `state` when it changes (the engine shows it in the live table).
        self.on_change: Callable[[str], None] | None = None

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock, clock() + seconds)

    def remaining(self) -> float:
        now = self.clock()
        left = self.at - now
        with self._lock:
            if self.stall is not None and not self._queued and not self._paused:
                left = min(left, self._progress_at + self.stall - now)
        return left

    def expired(self) -> bool:
        return self.remaining() <= 0

    def observe(self, objects: list[Obj]) -> None:
        """Record what a wait saw now; a change in what operators write is progress."""
        fingerprint = tuple(sorted((_name(o), _progress_of(o)) for o in objects))
        queued = bool(objects) and all(_queued(o) for o in objects)
        paused = bool(objects) and all(_queued(o) or _paused(o) for o in objects) and not queued
        with self._lock:
            self._queued, self._paused = queued, paused
            self._observed = True
            if fingerprint != self._fingerprint:
                self._fingerprint = fingerprint
                self._progress_at = self.clock()
        self.tick()

    def tick(self) -> None:
        """Report a changed state (waits call it on every event and watch restart)."""
        state = self.state
        with self._lock:
            changed, self._reported = state != self._reported, state
        if changed and self.on_change is not None:
            self.on_change(state)

    @property
    def state(self) -> str:
        """queued | in progress | stalled (no progress for half the stall window or more);
        empty before a wait has observed anything."""
        with self._lock:
            if not self._observed:
                return ""
            if self._queued:
                return "queued"
            quiet = self.clock() - self._progress_at
            if self.stall is not None and quiet >= self.stall / 2 and not self._paused:
                return "stalled"
            return "in progress"

    def why(self) -> str:
        """Why it expired, for the timeout message: "timed out", then the state it was in."""
        now = self.clock()
        with self._lock:
            quiet, queued, paused = now - self._progress_at, self._queued, self._paused
        if self.stall is not None and not queued and not paused and now < self.at:
            return (
                f"timed out: stalled, no progress for {quiet:.0f} s (stall window {self.stall:g} s)"
            )
        cap = " at the hard cap" if self.stall is not None else ""
        if queued:
            return f"timed out{cap}, still queued: the operator has not reconciled it yet"
        if paused:
            return f"timed out{cap}, still paused: the operator waits for components to be ready"
        return f"timed out{cap}, still in progress" if cap else "timed out"


def _queued(obj: Obj) -> bool:
    """The operator has not reconciled this object (or its current spec) yet."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    if not status:
        return True
    return isinstance(observed, int) and isinstance(generation, int) and observed < generation


PAUSING = ("PausingInstall", "PausingUpdate")


def _paused(obj: Obj) -> bool:
    """Maistra's control plane between chart groups: condition Reconciled False with reason
    PausingInstall or PausingUpdate, "Paused until the following components become ready:
    [...]" (maistra-2.4 controlplane/reconciler.go, pauseReconciliation). The operator resumes
    when those components' readiness changes: in progress, not stuck."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(
        isinstance(c, dict)
        and c.get("type") == "Reconciled"
        and c.get("status") == "False"
        and c.get("reason") in PAUSING
        for c in conditions
    )


def _progress_of(obj: Obj) -> str:
    """What an operator changes as it works on `obj`: status and generations, as text."""
    meta = obj.get("metadata") or {}
    return json.dumps([meta.get("generation"), obj.get("status")], sort_keys=True, default=str)


@dataclass(frozen=True)
class Verdict:
    """A predicate's answer: done, failed (fail fast), or pending with a status summary."""

    state: Literal["done", "pending", "failed"]
    summary: str = ""
    obj: Obj | None = field(default=None, compare=False)


def done(summary: str = "", obj: Obj | None = None) -> Verdict:
    return Verdict("done", summary, obj)


def pending(summary: str) -> Verdict:
    return Verdict("pending", summary)


def failed(reason: str, obj: Obj | None = None) -> Verdict:
    return Verdict("failed", reason, obj)


@dataclass(frozen=True)
class Target:
    """What to watch: one object by name, or every object of a kind in a namespace."""

    api_version: str
    kind: str
    namespace: str | None
    name: str | None = None
    selector: str = ""  # a label selector, for a collection

    @classmethod
    def of(cls, obj: Obj) -> Target:
        """The target naming `obj` itself (a template or a live object)."""
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    def describe(self) -> str:
        described = describe(self.kind, self.name, self.namespace)
        return f"{described} -l {self.selector}" if self.selector else described


def describe(kind: str, name: str | None, namespace: str | None) -> str:
    """How every message names an object: "Kind namespace/name" (or less, when unset)."""
    where = "/".join(p for p in (namespace, name) if p)
    return f"{kind} {where}".strip()


class WatchSource(Protocol):
    """The cluster side of a wait (runner.kube.Kube; a fake in unit tests)."""

    def list_objects(self, target: Target) -> tuple[list[Obj], str]: ...

    def watch_objects(
        self, target: Target, resource_version: str, timeout_seconds: int
    ) -> Iterator[Obj]: ...


@dataclass(frozen=True)
class WatchEvent:
    """SYNC carries everything a (re-)list returned; the others one object each."""

    type: Literal["SYNC", "ADDED", "MODIFIED", "DELETED"]
    obj: Obj = field(default_factory=dict)
    objects: tuple[Obj, ...] = ()


def follow(
    source: WatchSource,
    target: Target,
    *,
    cancel: CancelToken,
    deadline: Deadline | None = None,
    watch_seconds: int = MAX_WATCH_SECONDS,
    resource_version: str | None = None,
    sleep: Callable[[float], None] | None = None,
    backoff: tuple[float, ...] = STREAM_BACKOFF,
) -> Iterator[WatchEvent]:
    """The one watch engine: the events of `target` until the deadline (forever without one).

    It lists (a SYNC event; skipped when `resource_version` says where to start), then watches
    from the list's resourceVersion with bookmarks and a server timeout of at most
    `watch_seconds` (and never past the deadline), resumes from the last resourceVersion seen
    when the server ends a watch, re-lists (another SYNC) on 410 Gone, and after a broken
    stream resumes after a short backoff, so a flapping server is not hammered. Cancellation
    raises Cancelled, also from inside an open watch."""
    pause = sleep or cancel.sleep
    broken = 0
    while True:
        cancel.check()
        if deadline is not None:
            deadline.tick()  # a wait's state can turn stalled between events
            if deadline.expired():
                return
        if resource_version is None:
            items, resource_version = source.list_objects(target)
            yield WatchEvent("SYNC", objects=tuple(items))
            continue
        timeout = watch_seconds
        if deadline is not None:
            timeout = max(1, min(watch_seconds, int(deadline.remaining() + 0.999)))
        try:
            for event in source.watch_objects(target, resource_version, timeout):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        resource_version = None
                        break
                    raise ApiError(f"watch {target.describe()}: {obj.get('message', obj)}")
                resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                broken = 0
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    yield WatchEvent(kind, obj)
                    cancel.check()
                if deadline is not None and deadline.expired():
                    break
        except ApiError as e:
            if e.status != 410:
                raise
            resource_version = None
        except TransientError:
            pause(backoff[min(broken, len(backoff) - 1)])
            broken += 1


Predicate = Callable[[Obj | None], Verdict]
CollectionPredicate = Callable[[list[Obj]], Verdict]


def wait_for(
    source: WatchSource,
    target: Target,
    predicate: Predicate,
    *,
    deadline: Deadline,
    cancel: CancelToken,
    what: str,
    sleep: Callable[[float], None] | None = None,
    known: Obj | None = None,
) -> Obj:
    """Wait until `predicate(object)` is done; the object is None while it does not exist.

    `known` is the object as just written or read (e.g. the answer of an apply): the wait
    then starts watching from its resourceVersion instead of listing first."""
    if target.name is None:
        raise ValueError("wait_for needs a named target; use wait_for_collection")
    name = target.name

    def evaluate(objs: list[Obj]) -> Verdict:
        obj = next((o for o in objs if _name(o) == name), None)
        verdict = predicate(obj)
        if verdict.state == "done" and verdict.obj is None:
            return Verdict("done", verdict.summary, obj)
        return verdict

    verdict = _wait(
        source,
        target,
        evaluate,
        deadline=deadline,
        cancel=cancel,
        what=what,
        sleep=sleep,
        known=[known] if known is not None else None,
    )
    if verdict.obj is None:
        raise ValueError(f"{what}: the predicate said done for a missing object")
    return verdict.obj


def wait_for_collection(
    source: WatchSource,
    target: Target,
    predicate: CollectionPredicate,
    *,
    deadline: Deadline,
    cancel: CancelToken,
    what: str,
    sleep: Callable[[float], None] | None = None,
) -> Verdict:
    """Wait until `predicate(all objects of the kind in the namespace)` is done."""
    return _wait(
        source, target, predicate, deadline=deadline, cancel=cancel, what=what, sleep=sleep
    )


def _wait(
    source: WatchSource,
    target: Target,
    evaluate: CollectionPredicate,
    *,
    deadline: Deadline,
    cancel: CancelToken,
    what: str,
    sleep: Callable[[float], None] | None,
    known: list[Obj] | None = None,
) -> Verdict:
    label = f"wait {target.describe()} {what}"
    objects: dict[str, Obj] = {}
    resource_version: str | None = None
    verdict = pending("not observed yet")
    if known:
        objects = {_name(o): o for o in known}
        resource_version = max((resource_version_of(o) for o in known), key=_rv_order) or None
        verdict = _decide(evaluate, objects, label, deadline)
        if verdict.state == "done":
            return verdict
    events = follow(
        source,
        target,
        cancel=cancel,
        deadline=deadline,
        resource_version=resource_version,
        sleep=sleep,
    )
    for event in events:
        if event.type == "SYNC":
            objects = {_name(o): o for o in event.objects}
        elif event.type == "DELETED":
            objects.pop(_name(event.obj), None)
        else:
            objects[_name(event.obj)] = event.obj
        verdict = _decide(evaluate, objects, label, deadline)
        if verdict.state == "done":
            return verdict
    raise WaitTimeout(f"{label}: {deadline.why()}; last observed: {verdict.summary}")


def _decide(
    evaluate: CollectionPredicate, objects: dict[str, Obj], label: str, deadline: Deadline
) -> Verdict:
    deadline.observe(list(objects.values()))
    verdict = evaluate(list(objects.values()))
    if verdict.state == "failed":
        raise OperatorFailed(f"{label}: {verdict.summary}")
    return verdict


def resource_version_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _rv_order(rv: str) -> tuple[int, str]:
    # resourceVersions are opaque; etcd's are integers, compare those numerically.
    return (int(rv), rv) if rv.isdigit() else (0, rv)


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))
