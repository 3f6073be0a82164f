"""Delayed, level-triggered transitions: how every simulated operator moves objects along.

A controller looks at the cache and lists the transitions that are due for one key (say, "write
phase RequiresApproval on InstallPlan u1/install-abc"), each a list of API writes. The engine
waits the knob delay for that transition, then asks the controller again with the cache as it is
*then*, and performs the transition only if it is still wanted - so a transition never acts on a
stale view, and a world that changed in the meantime simply produces different transitions.
Each performed transition is one step; the resulting watch event schedules the next.

Work queues: a kind with a worker count (knob `workers`) is served like an upstream
controller's work queue (client-go's workqueue under controller-runtime): the queue holds
*keys*, each at most once. A key that is queued when another event for it arrives is not queued
again; a key that changes while a worker processes it is queued once more after that reconcile.
A free worker takes the next key and is busy for the kind's service time (knob `service`: the
reconcile's own work, rendering charts or running a playbook); then it performs every
transition of that key that is due, one after the other with the cache re-read in between, as
one reconcile pass does all its writes. A transition marked `at_start` (ansible-operator's
"Running" status) is written when the worker takes the key, before the service time, and never
later in the same pass. A transition with a delay (upstream: a pause until components are
ready, a requeue) is not done in a pass before its delay has run out: then the key is queued
again. A kind without a worker count is served per transition in parallel, as before. Queue
depth over time, busy seconds, and reconciles per kind with what triggered each (`causes`) are
exported with the latency figures (`queues`). A reconcile that would write nothing is not
counted: it costs an operator next to nothing (upstream's own status writes and watches of
other objects enqueue such no-op passes all the time).

Reaction latency is measured per transition: from the watch event that made it due to the
moment its last write returned, minus the deliberate knob delay and the time spent queued and
in service.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import MERGE, Kube, KubeError, Obj, Resource

log = logging.getLogger(__name__)

Key = Hashable


@dataclass(frozen=True)
class Action:
    """One API write. `verb`: create | patch | status | delete."""

    verb: str
    res: Resource
    namespace: str | None
    name: str | None = None
    body: Any = None
    content_type: str = MERGE
    tolerate: tuple[int, ...] = ()

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        name = self.name or (self.body or {}).get("metadata", {}).get("name") or "(generated)"
        return f"{self.verb} {self.res.kind} {where}{name}"


@dataclass(frozen=True)
class Transition:
    """A named step of one object's state machine, with the writes that perform it."""

    id: str
    kind: str
    namespace: str
    name: str
    step: str
    actions: tuple[Action, ...]
    delayed: bool = True
    scale: float = 1.0  # times the knob delay (a controller's backoff)
    at_start: bool = False  # in a work queue: written when a worker takes the key
    # in a work queue: the pass ends after this write (upstream returns from Reconcile, e.g.
    # after adding a finalizer); the write changed the key, so it is reconciled again
    ends_pass: bool = False


class Controller(Protocol):
    name: str

    def watches(self) -> Iterable[Resource]: ...

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]: ...

    def transitions(self, key: Key, store: Store, knobs: Knobs) -> list[Transition]: ...


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    tid: str = field(compare=False)
    controller: Controller = field(compare=False)
    key: Key = field(compare=False)
    observed: float = field(compare=False)
    delay: float = field(compare=False)
    kind: str = field(compare=False, default="")
    # queued: the time it joined its work queue; service: seconds a worker spends on it;
    # holding: it owns one of its kind's workers until it has fired.
    queued: float = field(compare=False, default=0.0)
    service: float = field(compare=False, default=0.0)
    holding: bool = field(compare=False, default=False)
    workers: int = field(compare=False, default=0)
    # role in a work queue: "reconcile" (one pass over `key`), "begin" (its at-start
    # writes), "wake" (a delayed transition `tid` may now be done: queue its key).
    role: str = field(compare=False, default="")
    # What the item does (the transition's step) and what made it due: the watch event
    # ("Kiali MODIFIED"), "retry" after a failed write, "sync" after a cache listed.
    step: str = field(compare=False, default="")
    cause: str = field(compare=False, default="")


class WorkPool:
    """One controller's work queue: FIFO of due items served by `workers` workers.

    Pure bookkeeping with explicit times (the engine passes time.monotonic(), tests a fake
    clock): `offer` queues an item, `start` hands out the items a free worker may take now,
    `release` frees a worker. Busy seconds are integrated over time.
    """

    SERIES_MAX = 600

    def __init__(self, kind: str, workers: int, now: float) -> None:
        self.kind = kind
        self.workers = workers
        self.queue: list[_Due] = []
        self.busy = 0
        self.busy_seconds = 0.0
        self.started = 0
        self.depth_max = 0
        self.wait_seconds = 0.0
        self.since = now
        self._last = now
        self.series: list[tuple[float, int, int]] = []
        self.dropped: list[_Due] = []
        self.causes: dict[str, int] = {}
        self.by_namespace: dict[str, int] = {}

    def _account(self, now: float) -> None:
        now = max(now, self._last)  # an event's own time may be a little behind
        self.busy_seconds += self.busy * max(0.0, now - self._last)
        self._last = now

    def _sample(self, now: float) -> None:
        point = (round(now - self.since, 2), len(self.queue), self.busy)
        if self.series and self.series[-1][1:] == point[1:]:
            return
        self.series.append(point)
        if len(self.series) > self.SERIES_MAX:
            del self.series[1 : len(self.series) // 2 : 2]

    def offer(self, due: _Due, now: float) -> None:
        self._account(now)
        due.queued = now
        self.queue.append(due)
        self.depth_max = max(self.depth_max, len(self.queue))
        self._sample(now)

    def start(self, now: float, wanted: Callable[[_Due], bool] = lambda _: True) -> list[_Due]:
        """The items free workers take now. An item no longer `wanted` (what it would write is
        written already) is dropped without occupying a worker: a reconcile with nothing to do
        costs the operator next to nothing."""
        self._account(now)
        out = []
        while self.queue and self.busy < self.workers:
            due = self.queue.pop(0)
            if not wanted(due):
                self.dropped.append(due)
                continue
            self.busy += 1
            self.started += 1
            self.wait_seconds += now - due.queued
            what = due.tid.split(":", 1)[1] if ":" in due.tid else due.step
            why = f"{what} <- {due.cause or '?'}"
            self.causes[why] = self.causes.get(why, 0) + 1
            where = str(due.key[0]) if isinstance(due.key, tuple) and due.key else str(due.key)
            self.by_namespace[where] = self.by_namespace.get(where, 0) + 1
            due.holding = True
            out.append(due)
        if out:
            self._sample(now)
        return out

    def release(self, now: float) -> None:
        self._account(now)
        self.busy = max(0, self.busy - 1)
        self._sample(now)

    def summary(self, now: float) -> dict[str, Any]:
        self._account(now)
        elapsed = max(1e-9, now - self.since)
        return {
            "workers": self.workers,
            "reconciles": self.started,
            "busy_seconds": round(self.busy_seconds, 2),
            "busy_fraction": round(self.busy_seconds / (elapsed * max(1, self.workers)), 4),
            "depth": len(self.queue),
            "depth_max": self.depth_max,
            "busy": self.busy,
            "wait_seconds": round(self.wait_seconds, 2),
            "causes": dict(sorted(self.causes.items())),
            "by_namespace": dict(sorted(self.by_namespace.items())),
            "series": list(self.series),
        }


class Stats:
    """Reaction latencies (seconds, knob delay excluded) per kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}
        self.performed: dict[str, int] = {}
        self.errors = 0

    def add(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.performed[kind] = self.performed.get(kind, 0) + 1
            bucket = self.samples.setdefault(kind, [])
            bucket.append(seconds)
            if len(bucket) > 5000:
                del bucket[:1000]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            every = [s for b in self.samples.values() for s in b]
            out: dict[str, Any] = {"all": percentiles(every), "errors": self.errors}
            out["transitions"] = dict(sorted(self.performed.items()))
            for kind, bucket in sorted(self.samples.items()):
                out[kind] = percentiles(bucket)
            return out


def writer(obj: Obj) -> str:
    """ " by <manager>" of the object's latest write (its newest managedFields entry)."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    if not entries:
        return ""
    last = max(entries, key=lambda e: str(e.get("time") or ""))
    where = f" ({last['subresource']})" if last.get("subresource") else ""
    return f" by {last.get('manager', '?')}{where}"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50_ms": pick(0.50), "p95_ms": pick(0.95), "max_ms": pick(1.0)}


class Engine:
    """Schedules transitions after their knob delay and performs them on worker threads."""

    def __init__(
        self,
        kube: Kube,
        store: Store,
        knobs: Callable[[], Knobs],
        workers: int = 8,
        synced: Callable[[Controller], bool] = lambda _c: True,
    ) -> None:
        self.kube = kube
        self.synced = synced  # has every watch of this controller listed once?
        self._held: set[tuple[Controller, Key]] = set()
        self.store = store
        self.knobs = knobs
        self.stats = Stats()
        self._lock = threading.Condition()
        self._heap: list[_Due] = []
        self._pending: dict[str, _Due] = {}
        self._seq = itertools.count()
        self._queues = [_Queue() for _ in range(workers)]
        self._pools: dict[str, WorkPool] = {}
        # Work queues by key: the queued or running reconcile of (controller, key), the keys
        # that changed while running, and the delayed transitions whose delay has run out.
        self._keyed: dict[tuple[str, Key], _Due] = {}
        self._dirty: set[tuple[str, Key]] = set()
        self._ripe: set[str] = set()
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._schedule, name="sim-sched", daemon=True)]
        for i, q in enumerate(self._queues):
            self._threads.append(
                threading.Thread(target=self._work, args=(q,), name=f"sim-w{i}", daemon=True)
            )

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._lock.notify_all()
        for q in self._queues:
            q.put(None)

    # -- triggering ----------------------------------------------------------------------
    def handler(self, controller: Controller) -> Callable[[Resource, str, Obj, float], None]:
        def on_event(res: Resource, event: str, obj: Obj, at: float) -> None:
            cause = f"{res.kind} {event}{writer(obj)}"
            for key in controller.keys_for(res, event, obj):
                self.trigger(controller, key, at, cause=cause)

        return on_event

    def trigger(
        self,
        controller: Controller,
        key: Key,
        observed: float | None = None,
        cause: str = "",
    ) -> None:
        """Schedule the transitions due for `key`: in a work queue, queue the key (a delayed
        transition first waits out its delay); otherwise each transition after its delay."""
        if not self._ready(controller, key):
            return
        observed = time.monotonic() if observed is None else observed
        knobs = self.knobs()
        try:
            wanted = controller.transitions(key, self.store, knobs)
        except Exception:
            log.exception("%s: computing transitions for %s failed", controller.name, key)
            return
        for t in wanted:
            tid = f"{controller.name}|{t.id}"
            workers = knobs.workers_for(t.kind)
            delay = knobs.delay_for(t.kind, t.namespace, t.name, t.step) if t.delayed else 0.0
            delay *= t.scale
            with self._lock:
                if workers and (delay <= 0 or tid in self._ripe):
                    self._enqueue(
                        controller, key, t, workers=workers, now=observed, cause=cause, knobs=knobs
                    )
                    continue
                if tid in self._pending:
                    continue
                due = _Due(observed + delay, next(self._seq), tid, controller, key, observed, delay)
                due.kind, due.step, due.cause = t.kind, t.step, cause
                if workers:
                    due.role, due.workers = "wake", workers
                self._pending[tid] = due
                heapq.heappush(self._heap, due)
                self._lock.notify()

    def _enqueue(
        self,
        controller: Controller,
        key: Key,
        t: Transition,
        *,
        workers: int,
        now: float,
        cause: str,
        knobs: Knobs,
    ) -> None:
        """Caller holds the lock. Queue one reconcile of `key` unless one is queued already;
        one that is running is marked to run once more after it."""
        rk = (controller.name, key)
        current = self._keyed.get(rk)
        if current is not None:
            if current.holding:
                self._dirty.add(rk)
            return
        due = _Due(now, next(self._seq), f"{controller.name}|{t.id}", controller, key, now, 0.0)
        due.kind, due.step, due.cause, due.workers, due.role = (
            t.kind,
            t.step,
            cause,
            workers,
            "reconcile",
        )
        due.service = knobs.service_for(t.kind, t.namespace, t.name, t.step) if t.delayed else 0.0
        self._keyed[rk] = due
        pool = self._pool(t.kind, workers, now)
        pool.offer(due, now)
        self._start(pool, now)
        self._lock.notify()

    def _ready(self, controller: Controller, key: Key) -> bool:
        """Like a controller's WaitForCacheSync: no decision on a cache that has not listed
        every resource the controller reads; the key is held until `release`."""
        with self._lock:  # checked under the lock `release` takes: no key is left behind
            if self.synced(controller):
                return True
            self._held.add((controller, key))
        return False

    def release(self) -> None:
        """A watch has listed: re-trigger the held keys (held again if still not synced)."""
        with self._lock:
            held, self._held = self._held, set()
        for controller, key in held:
            self.trigger(controller, key, cause="sync")

    # -- scheduling ----------------------------------------------------------------------
    def _schedule(self) -> None:
        while not self._stopped.is_set():
            wakes: list[_Due] = []
            with self._lock:
                now = time.monotonic()
                while self._heap and self._heap[0].at <= now:
                    due = heapq.heappop(self._heap)
                    if due.role == "wake":
                        self._ripen(due)
                        wakes.append(due)
                        continue
                    self._queues[hash(due.key) % len(self._queues)].put(due)
                timeout = (self._heap[0].at - now) if self._heap else 1.0
                if not wakes:
                    self._lock.wait(timeout=max(0.0, min(timeout, 1.0)))
            for due in wakes:
                self.trigger(due.controller, due.key, due.at, cause=f"{due.step} after its delay")

    def _ripen(self, wake: _Due) -> None:
        """Caller holds the lock. The delay ran out: the next reconcile may do the transition."""
        self._pending.pop(wake.tid, None)
        self._ripe.add(wake.tid)

    def _pool(self, kind: str, workers: int, now: float) -> WorkPool:
        """Caller holds the lock. A changed worker count (knobs reloaded) applies from now."""
        pool = self._pools.get(kind)
        if pool is None:
            pool = self._pools[kind] = WorkPool(kind, workers, now)
        pool.workers = workers
        return pool

    def _start(self, pool: WorkPool, now: float) -> None:
        """Caller holds the lock: a key a free worker takes writes its at-start transitions
        now (a "begin" item on the key's thread) and the rest when its service time is up."""
        for due in pool.start(now, self._still_wanted):
            due.at = now + due.service
            queue = self._queues[hash(due.key) % len(self._queues)]
            queue.put(_Due(now, next(self._seq), due.tid, due.controller, due.key, now, 0.0,
                           kind=due.kind, role="begin"))  # fmt: skip
            heapq.heappush(self._heap, due)
        for due in pool.dropped:
            self._keyed.pop((due.controller.name, due.key), None)
        pool.dropped.clear()

    def _doable(
        self, controller: Controller, wanted: list[Transition], knobs: Knobs
    ) -> list[Transition]:
        """The transitions a reconcile pass may do now: in a work queue, with no delay or
        with its delay run out."""
        out = []
        for t in wanted:
            if not knobs.workers_for(t.kind):
                continue
            delay = knobs.delay_for(t.kind, t.namespace, t.name, t.step) if t.delayed else 0.0
            if delay * t.scale <= 0 or f"{controller.name}|{t.id}" in self._ripe:
                out.append(t)
        return out

    def _still_wanted(self, due: _Due) -> bool:
        try:
            knobs = self.knobs()
            wanted = due.controller.transitions(due.key, self.store, knobs)
        except Exception:
            return True  # let the worker find out, and log it
        return bool(self._doable(due.controller, wanted, knobs))

    def _release(self, due: _Due) -> bool:
        """The reconcile of `due.key` is over: free its worker. True when the key changed
        while it ran (upstream queues it once more)."""
        with self._lock:
            rk = (due.controller.name, due.key)
            self._keyed.pop(rk, None)
            dirty = rk in self._dirty
            self._dirty.discard(rk)
            pool = self._pools.get(due.kind)
            if pool is not None:
                now = time.monotonic()
                pool.release(now)
                self._start(pool, now)
            self._lock.notify()
        return dirty

    def queues(self) -> dict[str, Any]:
        """Per pooled kind: workers, reconciles, busy seconds and fraction, depth over time."""
        with self._lock:
            now = time.monotonic()
            return {kind: pool.summary(now) for kind, pool in sorted(self._pools.items())}

    def _work(self, queue: _Queue) -> None:
        while True:
            due = queue.get()
            if due is None:
                return
            failed = False
            try:
                if due.role == "begin":
                    self._reconcile(due, at_start=True)
                elif due.role == "reconcile":
                    self._reconcile(due, at_start=False)
                else:
                    self._fire(due)
            except Exception as exc:
                failed = True
                self.stats.errors += 1
                log.warning("%s failed: %s", due.tid, exc)
            if due.role == "begin":
                continue  # the rest of the pass follows when its service time is up
            cause = f"after {due.step}"
            if due.role == "reconcile":
                if self._release(due):
                    cause = "changed while reconciling"
            else:
                with self._lock:
                    self._pending.pop(due.tid, None)
            if failed:
                # Retry from scratch a little later (API hiccup, conflict, webhook refusal).
                timer = threading.Timer(
                    1.0, self.trigger, args=(due.controller, due.key), kwargs={"cause": "retry"}
                )
                timer.daemon = True
                timer.start()
            else:
                # Whatever we wrote is in the cache already: schedule what comes next now.
                self.trigger(due.controller, due.key, cause=cause)

    def _reconcile(self, due: _Due, at_start: bool) -> None:
        """One pass over a queued key: its at-start writes (`at_start`), or every other
        transition that is due, re-reading the cache after each."""
        if not self._ready(due.controller, due.key):
            return
        knobs = self.knobs()
        for _ in range(50):  # a controller that keeps wanting more is a bug: stop, log it
            wanted = due.controller.transitions(due.key, self.store, knobs)
            match = next(
                (t for t in self._doable(due.controller, wanted, knobs) if t.at_start == at_start),
                None,
            )
            if match is None:
                return
            for action in match.actions:
                self.perform(action)
            with self._lock:
                self._ripe.discard(f"{due.controller.name}|{match.id}")
            self._performed(match, due, time.monotonic() - (due.queued if at_start else due.at))
            if at_start or match.ends_pass:
                return
        log.warning("%s: a reconcile of %s stopped after 50 writes", due.controller.name, due.key)

    def _fire(self, due: _Due) -> None:
        if not self._ready(due.controller, due.key):
            return
        wanted = due.controller.transitions(due.key, self.store, self.knobs())
        prefix = f"{due.controller.name}|"
        match = next((t for t in wanted if prefix + t.id == due.tid), None)
        if match is None:
            return
        for action in match.actions:
            self.perform(action)
        self._performed(match, due, time.monotonic() - due.observed - due.delay)

    def _performed(self, match: Transition, due: _Due, reaction: float) -> None:
        # In a work queue, the reaction excludes time queued and in service: that is the
        # operator's capacity, not the simulator's latency.
        self.stats.add(match.kind, max(0.0, reaction))
        log.info(
            "%s %s/%s -> %s (delay %.2fs, reaction %.1fms)",
            match.kind,
            match.namespace,
            match.name,
            match.step,
            due.delay,
            reaction * 1000,
        )

    def perform(self, action: Action) -> Obj | None:
        kube = self.kube
        try:
            if action.verb == "create":
                obj = kube.create(action.res, action.namespace, dict(action.body))
            elif action.verb == "patch":
                assert action.name is not None
                obj = kube.patch(
                    action.res,
                    action.namespace,
                    action.name,
                    action.body,
                    content_type=action.content_type,
                )
            elif action.verb == "status":
                assert action.name is not None
                obj = kube.patch(
                    action.res,
                    action.namespace,
                    action.name,
                    {"status": action.body},
                    sub="status",
                    content_type=action.content_type,
                )
            elif action.verb == "delete":
                assert action.name is not None
                kube.delete(action.res, action.namespace, action.name)
                return None
            else:
                raise ValueError(f"unknown verb {action.verb}")
        except KubeError as exc:
            if exc.status in action.tolerate:
                return None
            raise KubeError(exc.status, exc.reason, exc.message, action.describe()) from None
        obj.setdefault("apiVersion", action.res.api_version)
        obj.setdefault("kind", action.res.kind)
        self.store.update(action.res, obj)
        return obj


class _Queue:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._items: list[_Due | None] = []

    def put(self, item: _Due | None) -> None:
        with self._cv:
            self._items.append(item)
            self._cv.notify()

    def get(self) -> _Due | None:
        with self._cv:
            while not self._items:
                self._cv.wait()
            return self._items.pop(0)
