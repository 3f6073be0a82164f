"""Follow a launch to its end: consume the watch's events, keep the fleet's view, feed the
display, stop when every user is final, at the deadline, or on Ctrl-C (the Jobs go on)."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.kube import Kube
from runner.launcher.display import Display
from runner.launcher.progress import Fleet, UserView
from runner.launcher.watch import KINDS, Event, LaunchWatch
from runner.waits import Deadline

TICK_SECONDS = 0.5
Now = Callable[[], datetime]


@dataclass(frozen=True)
class Followed:
    timed_out: bool = False
    interrupted: bool = False


def utcnow() -> datetime:
    return datetime.now(UTC)


def apply_event(fleet: Fleet, event: Event) -> set[str]:
    if event.type == "SYNC":
        return fleet.resync(event.kind, event.objects)
    if event.type == "DELETED":
        return fleet.delete(event.kind, event.obj)
    return fleet.upsert(event.kind, event.obj)


def follow(
    kube: Kube,
    fleet: Fleet,
    namespace: str,
    selector: str,
    *,
    display: Display,
    deadline: Deadline,
    tick: float | None = TICK_SECONDS,
    now: Now = utcnow,
    on_finished: Callable[[UserView], None] | None = None,
) -> Followed:
    """`tick`: redraw interval for elapsed times (None: only on events). `on_finished`: called
    once per user seen becoming final while followed (not for those already final at the
    first sync, e.g. when `status` re-attaches to a finished launch)."""
    watch = LaunchWatch(kube, namespace, selector).start()
    synced: set[str] = set()
    finished: set[str] = set()
    try:
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                return Followed(timed_out=True)
            wait = min(remaining, tick) if tick else remaining
            try:
                event = watch.events.get(timeout=wait)
            except queue.Empty:
                if synced == set(KINDS):
                    display.update(fleet.views(), set(), now())
                continue
            if event.type == "ERROR" and event.error is not None:
                raise event.error
            touched = apply_event(fleet, event)
            if synced != set(KINDS):
                # Show nothing until both first lists are in: a Job without its Pods is a
                # half-known state, not a change worth a line.
                if event.type == "SYNC":
                    synced.add(event.kind)
                if synced != set(KINDS):
                    continue
                touched = set(fleet.users)
                finished = {v.user for v in fleet.views() if v.final}
            display.update(fleet.views(), touched, now())
            for user in sorted(touched - finished):
                view = fleet.view(user)
                if view.final:
                    finished.add(user)
                    if on_finished is not None:
                        on_finished(view)
            if fleet.done():
                return Followed()
    except KeyboardInterrupt:
        return Followed(interrupted=True)
    finally:
        watch.stop()
        display.close()


def snapshot(kube: Kube, fleet: Fleet, namespace: str, selector: str) -> None:
    """One list per kind, no watch (`status --no-wait`)."""
    for kind, api_version in KINDS.items():
        items, _ = kube.list_items(api_version, kind, namespace, label_selector=selector)
        fleet.resync(kind, items)
