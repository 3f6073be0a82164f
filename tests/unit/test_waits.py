"""The generic wait with a fake watch source and a fake clock: nothing sleeps for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runner import errors, waits
from runner.waits import CancelToken, Deadline, Target, Verdict

TARGET = Target("operators.coreos.com/v1alpha1", "CatalogSource", "u1", "cat")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def obj(state: str | None, rv: str, name: str = "cat") -> dict[str, Any]:
    status = {"connectionState": {"lastObservedState": state}} if state else {}
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": status}


def ev(kind: str, o: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": o}


class FakeSource:
    """Scripted lists and watch streams; a stream item that is a float advances the clock
    (time passing inside the watch), an Exception is raised mid-stream."""

    def __init__(self, clock: FakeClock, lists: list[Any], streams: list[list[Any]]) -> None:
        self.clock, self.lists, self.streams = clock, lists, streams
        self.calls: list[tuple[str, Any]] = []

    def list_objects(self, target: Target) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(("list", None))
        items, rv = self.lists.pop(0)
        return items, rv

    def watch_objects(self, target: Target, rv: str, timeout: int) -> Iterator[dict[str, Any]]:
        self.calls.append(("watch", (rv, timeout)))
        stream = self.streams.pop(0) if self.streams else [float(timeout)]
        for item in stream:
            if isinstance(item, float):
                self.clock.now += item
            elif isinstance(item, Exception):
                raise item
            else:
                yield item


def ready(o: dict[str, Any] | None) -> Verdict:
    if o is None:
        return waits.pending("absent")
    state = o["status"].get("connectionState", {}).get("lastObservedState")
    if state == "READY":
        return waits.done("READY")
    if state == "BROKEN":
        return waits.failed("registry broken")
    return waits.pending(f"state={state}")


def run(
    source: FakeSource, clock: FakeClock, seconds: float = 300, cancel: CancelToken | None = None
) -> dict[str, Any]:
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.now += s

    return waits.wait_for(
        source,
        TARGET,
        ready,
        deadline=Deadline(clock, clock.now + seconds),
        cancel=cancel or CancelToken(),
        what="READY",
        sleep=sleep,
    )


def test_done_on_first_list() -> None:
    clock = FakeClock()
    source = FakeSource(clock, [([obj("READY", "5")], "9")], [])
    assert run(source, clock)["metadata"]["resourceVersion"] == "5"
    assert source.calls == [("list", None)]


def test_watch_from_list_resource_version_until_ready() -> None:
    clock = FakeClock()
    stream = [
        ev("ADDED", obj("CONNECTING", "11")),
        ev("BOOKMARK", {"metadata": {"resourceVersion": "15"}}),
        ev("MODIFIED", obj("READY", "17")),
    ]
    source = FakeSource(clock, [([], "10")], [stream])
    assert run(source, clock)["metadata"]["resourceVersion"] == "17"
    assert source.calls == [("list", None), ("watch", ("10", 60))]


def test_resume_from_last_resource_version_and_bookmark() -> None:
    clock = FakeClock()
    first = [
        ev("ADDED", obj("CONNECTING", "11")),
        ev("BOOKMARK", {"metadata": {"resourceVersion": "20"}}),
        60.0,
    ]
    second = [ev("MODIFIED", obj("READY", "21"))]
    source = FakeSource(clock, [([], "10")], [first, second])
    run(source, clock)
    assert source.calls == [("list", None), ("watch", ("10", 60)), ("watch", ("20", 60))]


def test_gone_relists() -> None:
    clock = FakeClock()
    gone = ev("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"})
    source = FakeSource(
        clock,
        [([obj("CONNECTING", "3")], "10"), ([obj("READY", "40")], "41")],
        [[gone]],
    )
    assert run(source, clock)["metadata"]["resourceVersion"] == "40"
    assert [c[0] for c in source.calls] == ["list", "watch", "list"]


def test_gone_on_watch_start_relists() -> None:
    clock = FakeClock()
    source = FakeSource(
        clock,
        [([], "10"), ([obj("READY", "40")], "41")],
        [[errors.ApiError("watch: too old", 410)]],
    )
    run(source, clock)
    assert [c[0] for c in source.calls] == ["list", "watch", "list"]


def test_deadline_names_last_status() -> None:
    clock = FakeClock()
    source = FakeSource(clock, [([obj("CONNECTING", "3")], "10")], [])
    with pytest.raises(errors.WaitTimeout) as info:
        run(source, clock, seconds=150)
    assert str(info.value) == (
        "wait CatalogSource u1/cat READY: timed out; last observed: state=CONNECTING"
    )
    # Watches are bounded by the remaining time: 60 + 60 + 30 seconds.
    assert [c[1][1] for c in source.calls if c[0] == "watch"] == [60, 60, 30]


def test_failed_verdict_fails_fast() -> None:
    clock = FakeClock()
    source = FakeSource(clock, [([], "10")], [[ev("ADDED", obj("BROKEN", "11"))]])
    with pytest.raises(errors.OperatorFailed, match="registry broken"):
        run(source, clock)


def test_deleted_object_is_absent_again() -> None:
    clock = FakeClock()
    stream = [ev("ADDED", obj("CONNECTING", "11")), ev("DELETED", obj("CONNECTING", "12"))]
    source = FakeSource(clock, [([], "10")], [stream])
    with pytest.raises(errors.WaitTimeout, match="last observed: absent"):
        run(source, clock, seconds=100)


def test_broken_stream_resumes_after_backoff() -> None:
    clock = FakeClock()
    broken = [ev("ADDED", obj("CONNECTING", "11")), errors.TransientError("reset")]
    source = FakeSource(clock, [([], "10")], [broken, [ev("MODIFIED", obj("READY", "12"))]])
    run(source, clock)
    assert source.calls[-1] == ("watch", ("11", 60))


def test_cancellation_stops_the_wait() -> None:
    clock = FakeClock()
    cancel = CancelToken()
    stream = [ev("ADDED", obj("CONNECTING", "11"))]
    source = FakeSource(clock, [([], "10")], [stream])
    original = source.watch_objects

    def cancelling(target: Target, rv: str, timeout: int) -> Iterator[dict[str, Any]]:
        yield from original(target, rv, timeout)
        cancel.cancel("step csv failed")

    source.watch_objects = cancelling  # type: ignore[method-assign]
    with pytest.raises(errors.Cancelled, match="step csv failed"):
        run(source, clock, cancel=cancel)


def test_collection_wait() -> None:
    clock = FakeClock()
    stream = [ev("ADDED", obj(None, "11", "plan-a")), ev("ADDED", obj("READY", "12", "plan-b"))]
    source = FakeSource(clock, [([], "10")], [stream])

    def any_ready(objs: list[dict[str, Any]]) -> Verdict:
        found = [o for o in objs if ready(o).state == "done"]
        return waits.done("found", found[0]) if found else waits.pending(f"{len(objs)} seen")

    verdict = waits.wait_for_collection(
        source,
        Target("v1", "X", "u1"),
        any_ready,
        deadline=Deadline(clock, clock.now + 10),
        cancel=CancelToken(),
        what="any ready",
    )
    assert verdict.obj is not None
    assert verdict.obj["metadata"]["name"] == "plan-b"


def test_cancel_token_callbacks() -> None:
    token = CancelToken()
    called: list[str] = []
    remove = token.on_cancel(lambda: called.append("a"))
    token.on_cancel(lambda: called.append("b"))
    remove()
    token.cancel("why")
    token.cancel("again")
    assert called == ["b"]
    assert token.reason == "why"
    with pytest.raises(errors.Cancelled):
        token.sleep(5)


def test_known_object_skips_the_first_list() -> None:
    clock = FakeClock()
    source = FakeSource(clock, [], [[ev("MODIFIED", obj("READY", "31"))]])
    got = waits.wait_for(
        source,
        TARGET,
        ready,
        deadline=Deadline(clock, clock.now + 30),
        cancel=CancelToken(),
        what="READY",
        known=obj("CONNECTING", "30"),
    )
    assert got["metadata"]["resourceVersion"] == "31"
    assert source.calls == [("watch", ("30", 30))]


# -- progress-aware deadlines: a stall window up to a hard cap --------------------------------
def wait_with(source: FakeSource, clock: FakeClock, deadline: Deadline) -> dict[str, Any]:
    return waits.wait_for(
        source, TARGET, ready, deadline=deadline, cancel=CancelToken(), what="READY"
    )


def test_no_progress_for_the_stall_window_times_out_as_stalled() -> None:
    clock = FakeClock()
    source = FakeSource(clock, [([obj("CONNECTING", "3")], "10")], [[400.0]])
    deadline = Deadline(clock, clock.now + 3600, stall=300)
    with pytest.raises(errors.WaitTimeout) as info:
        wait_with(source, clock, deadline)
    assert "timed out: stalled, no progress for 400 s (stall window 300 s)" in str(info.value)
    assert str(info.value).endswith("last observed: state=CONNECTING")
    # The first watch is bounded by the stall window, not the cap.
    assert source.calls[1] == ("watch", ("10", 60))


def test_progress_keeps_the_wait_going_past_the_stall_window() -> None:
    clock = FakeClock()
    steps = [
        [
            250.0,
            ev(
                "MODIFIED",
                obj("CONNECTING", "11")
                | {"metadata": {"name": "cat", "resourceVersion": "11", "generation": 2}},
            ),
        ],
        [250.0, ev("MODIFIED", obj("TRANSIENT_FAILURE", "12"))],
        [250.0, ev("MODIFIED", obj("READY", "13"))],
    ]
    source = FakeSource(clock, [([obj("CONNECTING", "3")], "10")], steps)
    deadline = Deadline(clock, clock.now + 3600, stall=300)
    assert wait_with(source, clock, deadline)["metadata"]["resourceVersion"] == "13"
    assert clock.now - 1000.0 == 750.0  # past the 300 s window: every status change counted


def test_a_queued_object_waits_up_to_the_cap_and_says_so() -> None:
    clock = FakeClock()
    source = FakeSource(clock, [([obj(None, "3")], "10")], [])  # no status: not reconciled
    deadline = Deadline(clock, clock.now + 900, stall=300)
    with pytest.raises(errors.WaitTimeout) as info:
        wait_with(source, clock, deadline)
    assert clock.now - 1000.0 >= 900
    assert "timed out at the hard cap, still queued: the operator has not reconciled" in str(
        info.value
    )


def test_deadline_state_queued_in_progress_stalled() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, clock.now + 3600, stall=300)
    behind = {"metadata": {"name": "x", "generation": 3}, "status": {"observedGeneration": 2}}
    deadline.observe([behind])
    assert deadline.state == "queued"
    deadline.observe([obj("CONNECTING", "4")])
    assert deadline.state == "in progress"
    clock.now += 200
    assert deadline.state == "stalled"  # half the window and more without progress
    assert deadline.remaining() == 100


def paused_smcp(*waiting: str) -> dict[str, Any]:
    message = f"Paused until the following components become ready: [{' '.join(waiting)}]"
    pause = {"type": "Reconciled", "status": "False", "reason": "PausingInstall"}
    return {
        "metadata": {"name": "x", "generation": 1},
        "status": {"conditions": [{**pause, "message": message}]},  # installing: none yet
    }


def test_a_paused_smcp_is_in_progress_not_stalled_and_its_components_are_progress() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, clock.now + 3600, stall=300)
    deadline.observe([paused_smcp("istiod")])
    clock.now += 250
    assert deadline.state == "in progress"  # not "stalled" after half the window
    clock.now += 400
    assert not deadline.expired()  # past the stall window: only the cap applies
    assert deadline.remaining() == 3600 - 650
    progress_at = deadline._progress_at
    deadline.observe([paused_smcp("istio-ingressgateway", "prometheus")])
    assert deadline._progress_at > progress_at  # the list changed: progress
    # Once it is no longer paused, the stall window counts from the last change again.
    installing = paused_smcp("istiod")
    installing["status"]["conditions"][0]["reason"] = "ResourceCreated"
    deadline.observe([installing])
    clock.now += 200
    assert deadline.state == "stalled"


def test_a_paused_smcp_times_out_at_the_cap_saying_it_was_paused() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, clock.now + 900, stall=300)
    deadline.observe([paused_smcp("istiod")])
    clock.now += 900
    assert deadline.expired()
    assert deadline.why() == (
        "timed out at the hard cap, still paused: the operator waits for components to be ready"
    )


def test_timeout_override_is_a_plain_deadline_and_cap_makes_timeout_a_stall_window() -> None:
    from runner.engine import step_deadline
    from steps import smcp

    clock = FakeClock()
    plain = step_deadline(smcp, 45.0, clock, clock.now)
    assert (plain.at - clock.now, plain.stall) == (45.0, None)
    aware = step_deadline(smcp, None, clock, clock.now)
    assert (aware.at - clock.now, aware.stall) == (smcp.CAP, smcp.TIMEOUT)
    # WORKSHOP_RUNNER_DEADLINE_SCALE scales both figures; an explicit --timeout stays as given.
    scaled = step_deadline(smcp, None, clock, clock.now, 0.1)
    assert (scaled.at - clock.now, scaled.stall) == (smcp.CAP * 0.1, smcp.TIMEOUT * 0.1)
    assert step_deadline(smcp, 45.0, clock, clock.now, 0.1).at - clock.now == 45.0
    from steps import namespace  # a plain deadline (API calls only) is not scaled

    assert step_deadline(namespace, None, clock, clock.now, 0.1).at - clock.now == namespace.TIMEOUT
