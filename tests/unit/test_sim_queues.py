"""Simulated controllers' work queues (devcluster/sim/engine.py): a fake clock, no threads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from devcluster.sim import knobs
from devcluster.sim.engine import Action, Engine, Transition, WorkPool, _Due
from devcluster.sim.informer import Store
from devcluster.sim.knobs import KnobError, Knobs
from devcluster.sim.kube import SMCPS, Resource


def due(name: str, kind: str = "ServiceMeshControlPlane") -> _Due:
    return _Due(0.0, 0, name, None, name, 0.0, 0.0, kind=kind)


def test_one_worker_serves_the_queue_in_order() -> None:
    pool = WorkPool("ServiceMeshControlPlane", 1, now=0.0)
    for name in ("a", "b", "c"):
        pool.offer(due(name), now=0.0)
    assert [d.tid for d in pool.start(now=0.0)] == ["a"]
    assert pool.start(now=1.0) == []  # the one worker is busy
    pool.release(now=2.0)
    assert [d.tid for d in pool.start(now=2.0)] == ["b"]
    pool.release(now=4.0)
    assert [d.tid for d in pool.start(now=4.0)] == ["c"]
    pool.release(now=6.0)
    out = pool.summary(now=8.0)
    assert out["reconciles"] == 3
    assert out["busy_seconds"] == 6.0
    assert out["busy_fraction"] == 0.75
    assert out["depth_max"] == 3
    assert out["wait_seconds"] == 6.0  # b waited 2 s, c 4 s
    assert out["series"][0] == (0.0, 1, 0)
    assert out["series"][-1] == (6.0, 0, 0)


def test_ten_workers_take_ten_at_once() -> None:
    pool = WorkPool("ServiceMeshMember", 10, now=0.0)
    for i in range(12):
        pool.offer(due(f"m{i}", "ServiceMeshMember"), now=0.0)
    assert len(pool.start(now=0.0)) == 10
    assert pool.summary(now=0.0)["depth"] == 2
    pool.release(now=1.0)
    assert [d.tid for d in pool.start(now=1.0)] == ["m10"]


class Steps:
    """A controller whose object `k` goes through `steps` ((name, delayed, at_start)); the
    engine's writes are replaced by advancing `done`, so a test drives it without a cluster."""

    name = "fake"

    def __init__(self, *steps: tuple[str, bool, bool]) -> None:
        self.steps = list(steps)
        self.done = 0

    def watches(self) -> Iterable[Resource]:
        return [SMCPS]

    def keys_for(self, res: Resource, event: str, obj: Any) -> Iterable[str]:
        return ["k"]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        if self.done >= len(self.steps):
            return []
        step, delayed, first = self.steps[self.done]
        act = Action("patch", SMCPS, "u1", "kiali", {"step": step})
        return [Transition(f"{key}:{step}", "Kiali", "u1", "kiali", step, (act,), delayed,
                           at_start=first)]  # fmt: skip


def engine_with(doc: dict[str, Any], ctl: Steps | None = None) -> Engine:
    k = knobs.build([("test", {"jitter": 0, **doc})], profile="instant")
    eng = Engine(None, Store(), lambda: k)
    if ctl is not None:

        def perform(action: Action) -> None:
            assert action.body == {"step": ctl.steps[ctl.done][0]}
            ctl.done += 1

        eng.perform = perform  # type: ignore[method-assign]
    return eng


KIALI_QUEUE = {"workers": {"Kiali": 1}, "service": {"Kiali": 3}}


def test_a_key_is_queued_once_however_many_events_arrive() -> None:
    ctl = Steps(("a", True, False))
    eng = engine_with(KIALI_QUEUE)
    other = Steps(("x", True, False))
    other.name = "other"
    eng.trigger(other, "k", observed=0.0, cause="first")  # takes the one worker
    for at in (1.0, 2.0, 3.0):
        eng.trigger(ctl, "k", observed=at, cause="Kiali MODIFIED")
    pool = eng._pools["Kiali"]
    assert [d.controller.name for d in pool.queue] == ["fake"]
    assert pool.summary(now=3.0)["reconciles"] == 1  # only `other` has started


def test_a_key_changed_while_it_is_reconciled_runs_once_more_after() -> None:
    ctl = Steps(("a", True, False), ("b", True, False))
    eng = engine_with(KIALI_QUEUE, ctl)
    eng.trigger(ctl, "k", observed=0.0, cause="Kiali ADDED")
    (running,) = (d for d in eng._heap if d.role == "reconcile")
    assert running.holding
    assert running.at == 3.0
    eng.trigger(ctl, "k", observed=1.0, cause="Kiali MODIFIED")
    eng.trigger(ctl, "k", observed=2.0, cause="Kiali MODIFIED")
    assert eng._pools["Kiali"].queue == []  # not queued beside the running one
    assert eng._dirty == {("fake", "k")}
    assert eng._release(running) is True  # so the worker re-triggers the key once
    assert eng._dirty == set()


def test_one_pass_does_every_due_write_of_the_key() -> None:
    # The member roll creates the member, updates Kiali and writes its status in one pass.
    ctl = Steps(("member", True, False), ("kiali", True, False), ("status", True, False))
    eng = engine_with({"workers": {"Kiali": 1}, "service": {"Kiali": 0.2}}, ctl)
    eng.trigger(ctl, "k", observed=0.0)
    (due,) = (d for d in eng._heap if d.role == "reconcile")
    eng._reconcile(due, at_start=False)
    assert ctl.done == 3
    assert eng._pools["Kiali"].summary(now=1.0)["reconciles"] == 1


def test_an_at_start_write_comes_first_and_only_first() -> None:
    # ansible-operator: "Running" when the worker takes the CR, the result after the playbook.
    ctl = Steps(("running", True, True), ("successful", True, False), ("again", True, True))
    eng = engine_with(KIALI_QUEUE, ctl)
    eng.trigger(ctl, "k", observed=0.0)
    (due,) = (d for d in eng._heap if d.role == "reconcile")
    eng._reconcile(due, at_start=False)
    assert ctl.done == 0  # the pass's end does not write what belongs to a start
    eng._reconcile(due, at_start=True)
    assert ctl.done == 1
    eng._reconcile(due, at_start=False)
    assert ctl.done == 2  # and stops before the next run's start


def test_a_delayed_transition_waits_without_a_worker_then_queues_its_key() -> None:
    ctl = Steps(("installed", True, False))
    eng = engine_with({**KIALI_QUEUE, "delays": {"Kiali": 5}}, ctl)
    eng.trigger(ctl, "k", observed=100.0, cause="Kiali MODIFIED")
    (wake,) = eng._heap
    assert (wake.role, wake.at) == ("wake", 105.0)
    assert eng._pools == {}  # no worker taken during the pause
    eng.trigger(ctl, "k", observed=101.0, cause="Kiali MODIFIED")
    assert len(eng._heap) == 1  # the pause is not started again
    eng._heap.clear()
    eng._ripen(wake)  # what the scheduler does when the pause is over
    eng.trigger(ctl, "k", observed=105.0, cause="installed after its delay")
    (due,) = eng._heap
    assert (due.role, due.holding, due.at) == ("reconcile", True, 108.0)
    eng._reconcile(due, at_start=False)
    assert ctl.done == 1


def test_kinds_without_workers_are_not_queued() -> None:
    eng = engine_with({"service": {"Kiali": 3}})
    eng.trigger(Steps(("running", True, False)), "k", observed=0.0)
    assert eng._heap[0].workers == 0
    assert eng._heap[0].service == 0.0


def test_capacity_profile_has_upstreams_worker_counts() -> None:
    k = knobs.build([], profile="capacity")
    assert k.workers_for("ServiceMeshControlPlane") == 1
    assert k.workers_for("ServiceMeshMemberRoll") == 1
    assert k.workers_for("ServiceMeshMember") == 10
    assert k.workers_for("ClusterServiceVersion") == 2
    assert k.workers_for("ProjectRequest") == 0
    smcp = k.service_for("ServiceMeshControlPlane", "u1-istio", "basic", "begin")
    member = k.service_for("ServiceMeshMember", "u1-istio", "default", "ready")
    assert smcp > member > 0


@pytest.mark.parametrize("value", [-1, "many"])
def test_workers_must_be_a_whole_non_negative_number(value: Any) -> None:
    with pytest.raises(KnobError, match="workers"):
        knobs.build([("f", {"workers": {"SMCP": value}})])


def test_an_item_no_longer_wanted_is_dropped_without_taking_a_worker() -> None:
    pool = WorkPool("Kiali", 1, now=0.0)
    pool.offer(due("stale", "Kiali"), now=0.0)
    pool.offer(due("live", "Kiali"), now=0.0)
    started = pool.start(now=1.0, wanted=lambda d: d.tid != "stale")
    assert [d.tid for d in started] == ["live"]
    assert [d.tid for d in pool.dropped] == ["stale"]
    assert pool.summary(now=1.0)["reconciles"] == 1
