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


def test_unwritten_returns_the_latest_once() -> None:
    c = Coalescer(interval=2.0)
    assert c.unwritten() is None
    c.offer("a")
    assert c.due(0.0) == ("a", None)
    assert c.unwritten() is None
    c.offer("b")
    assert c.unwritten() == "b"
    assert c.unwritten() is None


def test_writer_writes_the_first_at_once_and_flushes_the_last_on_close() -> None:
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
    assert written == ["namespace", "sso-operator"]


def test_writer_closed_with_nothing_new_writes_nothing_more() -> None:
    written: list[str] = []
    done = threading.Event()

    def write(value: str) -> None:
        written.append(value)
        done.set()

    writer = ProgressWriter(write, interval=3600.0)
    writer(["namespace"])
    assert done.wait(10)
    writer.close(timeout=10)
    assert written == ["namespace"]
