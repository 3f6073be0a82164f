"""Simulated controllers' work queues (devcluster/sim/engine.py): a fake clock, no threads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from devcluster.sim import knobs
from devcluster.sim.engine import Engine, Transition, WorkPool, _Due
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


class OneObject:
    """A controller whose object `key` goes through `steps`, `done` of them performed."""

    name = "fake"

    def __init__(self, steps: list[tuple[str, bool]]) -> None:
        self.steps = steps
        self.done = 0

    def watches(self) -> Iterable[Resource]:
        return [SMCPS]

    def keys_for(self, res: Resource, event: str, obj: Any) -> Iterable[str]:
        return ["k"]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        if self.done >= len(self.steps):
            return []
        step, delayed = self.steps[self.done]
        return [Transition(f"{key}:{step}", "Kiali", "u1", "kiali", step, (), delayed)]


def engine_with(doc: dict[str, Any]) -> Engine:
    k = knobs.build([("test", doc)], profile="instant")
    return Engine(None, Store(), lambda: k)


def test_a_follow_up_due_at_once_continues_on_the_same_worker() -> None:
    eng = engine_with({"workers": {"Kiali": 1}, "service": {"Kiali": 3}, "jitter": 0})
    ctl = OneObject([("running", True), ("successful", True)])
    eng.trigger(ctl, "k", observed=100.0)
    first = eng._heap[0]
    assert (first.workers, first.service, first.holding) == (1, 3.0, False)
    # It fired on a worker; the next step is due at once: same reconcile, worker kept.
    first.holding = True
    eng._pending.clear()
    ctl.done = 1
    assert eng.trigger(ctl, "k", observed=105.0, holder=first) is True
    follow = next(d for d in eng._heap if d is not first)
    assert follow.holding
    assert follow.at == 108.0


def test_a_follow_up_after_a_pause_gives_the_worker_up() -> None:
    eng = engine_with(
        {"workers": {"Kiali": 1}, "service": {"Kiali": 3}, "delays": {"Kiali": 5}, "jitter": 0}
    )
    ctl = OneObject([("running", True), ("successful", True)])
    holder = due("fake|k:running", "Kiali")
    holder.holding = True
    ctl.done = 1
    assert eng.trigger(ctl, "k", observed=100.0, holder=holder) is False
    (queued,) = eng._heap
    assert not queued.holding
    assert queued.at == 105.0


def test_kinds_without_workers_are_not_queued() -> None:
    eng = engine_with({"service": {"Kiali": 3}})
    eng.trigger(OneObject([("running", True)]), "k", observed=0.0)
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
