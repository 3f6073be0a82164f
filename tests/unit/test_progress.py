"""The own-Pod progress annotation: coalesced so a run writes a few times, not per step."""

from __future__ import annotations

import threading

from runner.progress import Coalescer, ProgressWriter


def test_first_value_is_written_at_once_then_at_most_one_per_interval() -> None:
    c = Coalescer(interval=2.0)
    assert c.due(0.0) == (None, None)  # nothing offered yet
    c.offer("namespace")
    assert c.due(10.0) == ("namespace", None)
    assert c.due(10.1) == (None, None)  # written; nothing new
    c.offer("rbac")
    c.offer("catalog-source,rbac")
    assert c.due(10.5) == (None, 1.5)  # too soon: ask again in 1.5 s
    c.offer("catalog-source")
    assert c.due(12.0) == ("catalog-source", None)  # only the latest; the others never written


def test_a_value_equal_to_the_written_one_is_not_written_again() -> None:
    c = Coalescer(interval=2.0)
    c.offer("smcp")
    assert c.due(0.0) == ("smcp", None)
    c.offer("member-roll")
    c.offer("smcp")  # back to what is on the Pod already
    assert c.due(5.0) == (None, None)


def test_writer_writes_the_first_at_once_and_drops_what_is_left_on_close() -> None:
    written: list[str] = []
    first = threading.Event()

    def write(value: str) -> None:
        written.append(value)
        first.set()

    writer = ProgressWriter(write, interval=3600.0)  # nothing but the first before close
    writer(["namespace"])
    assert first.wait(10)
    writer(["rbac"])
    writer(["catalog-source", "rbac"])
    writer(["sso-operator"])
    writer.close(timeout=10)
    assert written == ["namespace"]  # the rest came within the interval; the run is over


def test_writer_writes_the_latest_once_the_interval_has_passed() -> None:
    now = [0.0]
    written: list[str] = []
    wrote = threading.Semaphore(0)

    def write(value: str) -> None:
        written.append(value)
        wrote.release()

    writer = ProgressWriter(write, interval=2.0, clock=lambda: now[0])
    writer(["namespace"])
    assert wrote.acquire(timeout=10)
    now[0] = 10.0  # the interval has passed on the writer's clock
    writer(["rbac"])
    assert wrote.acquire(timeout=10)
    writer.close(timeout=10)
    assert written == ["namespace", "rbac"]


def test_a_first_value_offered_just_before_close_is_still_written() -> None:
    written: list[str] = []
    writer = ProgressWriter(written.append, interval=3600.0)
    writer(["namespace"])
    writer.close(timeout=10)
    assert written == ["namespace"]
