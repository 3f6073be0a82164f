"""The simulators' cache after a re-list, and the engine's wait for synced watches: the two
ways the OLM simulator once made a second InstallPlan for a Subscription that had one (the
fault suite's apiserver restart, 2026-12-01)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devcluster.sim import knobs
from devcluster.sim.engine import Engine, Key, Transition
from devcluster.sim.informer import Informer, Store
from devcluster.sim.kube import INSTALLPLANS, PODS, SUBSCRIPTIONS, Obj, Resource
from devcluster.sim.olm import OlmController

NS = "user1"
CSV = "rhsso-operator.7.5.2-opr-001"


def obj(name: str, rv: int, ns: str = NS, **spec: Any) -> Obj:
    meta = {"name": name, "namespace": ns, "resourceVersion": str(rv)}
    return {"metadata": meta, "spec": {k.rstrip("_"): v for k, v in spec.items()}}


class Listing:
    """A Kube whose list answers a fixed listing at a fixed resourceVersion."""

    def __init__(self, items: list[Obj], rv: int) -> None:
        self.items, self.rv = items, rv

    def list(self, res: Resource, namespace: str | None = None, **_: Any) -> tuple[list[Obj], str]:
        mine = [
            o for o in self.items if namespace is None or o["metadata"]["namespace"] == namespace
        ]
        return mine, str(self.rv)


def relist(
    store: Store, res: Resource, items: list[Obj], rv: int, ns: str | None = None
) -> list[str]:
    informer = Informer(Listing(items, rv), store, res, ns)
    seen: list[str] = []
    informer.handlers.append(
        lambda _r, kind, o, _at: seen.append(f"{kind} {o['metadata']['name']}")
    )
    informer._relist()
    return seen


def test_a_relist_keeps_what_the_simulator_wrote_after_the_listing() -> None:
    store = Store()
    store.update(INSTALLPLANS, obj("install-old", 5))
    store.update(INSTALLPLANS, obj("install-a", 12))  # created (write-through) after the list
    store.update(INSTALLPLANS, obj("install-b", 11, approved=True))  # newer than listed
    listing = [obj("install-b", 9), obj("install-c", 8)]
    seen = relist(store, INSTALLPLANS, listing, rv=10)
    names = sorted(p["metadata"]["name"] for p in store.list(INSTALLPLANS))
    assert names == ["install-a", "install-b", "install-c"]  # install-old was deleted
    assert store.get(INSTALLPLANS, NS, "install-b")["spec"] == {"approved": True}  # type: ignore[index]
    assert sorted(seen) == ["ADDED install-b", "ADDED install-c", "DELETED install-old"]


def test_a_namespaced_relist_leaves_other_namespaces_alone() -> None:
    store = Store()
    store.update(PODS, obj("web", 3, ns="other"))
    store.update(PODS, obj("gone", 4))
    seen = relist(store, PODS, [obj("db", 6)], rv=7, ns=NS)
    assert sorted(p["metadata"]["name"] for p in store.list(PODS)) == ["db", "web"]
    assert sorted(seen) == ["ADDED db", "DELETED gone"]


def test_olm_makes_no_second_plan_after_a_relist_older_than_its_plan() -> None:
    """The sequence of the fault-suite failure, made deterministic: OLM created the plan just
    as its InstallPlan watch re-listed; the listing predates the plan."""
    store = Store()
    sub = obj(
        "rhsso-operator", 3, name_="rhsso-operator", installPlanApproval="Manual", startingCSV=CSV
    )
    store.update(SUBSCRIPTIONS, sub)
    plan = obj("install-a", 12, approval="Manual", approved=False, clusterServiceVersionNames=[CSV])
    store.update(INSTALLPLANS, plan)  # the simulator's own create, written through
    relist(store, INSTALLPLANS, [], rv=10)
    wanted = OlmController().transitions(NS, store, knobs.build([]))
    assert [t.step for t in wanted if t.step.startswith("plan:")] == []


class Counting:
    name = "counting"

    def __init__(self) -> None:
        self.asked: list[Key] = []

    def watches(self) -> Iterable[Resource]:
        return (SUBSCRIPTIONS, INSTALLPLANS)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        return [NS]

    def transitions(self, key: Key, store: Store, knobs: knobs.Knobs) -> list[Transition]:
        self.asked.append(key)
        return []


def test_a_controller_decides_nothing_until_all_its_watches_have_listed() -> None:
    synced = {"flag": False}
    engine = Engine(None, Store(), lambda: knobs.build([]), synced=lambda _c: synced["flag"])
    ctl = Counting()
    engine.trigger(ctl, NS)
    engine.trigger(ctl, NS)
    assert ctl.asked == []
    engine.release()  # one watch listed, the other not yet
    assert ctl.asked == []
    synced["flag"] = True
    engine.release()
    assert ctl.asked == [NS]  # the held key, once
    engine.release()
    assert ctl.asked == [NS]
