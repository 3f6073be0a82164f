"""The simulated OLM against the real API server: state machines, traps and knobs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devcluster.sim.catalog import CLUSTER_WIDE_OPERATORS
from devcluster.sim.kube import (
    CATALOGSOURCES,
    CSVS,
    INSTALLPLANS,
    OPERATORGROUPS,
    SUBSCRIPTIONS,
    Kube,
)
from devcluster.sim.testkit import RHSSO_CSV, namespaces, operator_group, phase, subscription
from devcluster.sim.waiting import wait_for, wait_list

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def ns(kube: Kube, unique_user: str) -> Any:
    with namespaces(kube, unique_user):
        yield unique_user


def plans_listing(csv: str, count: int = 1, phased: bool = True) -> Any:
    def check(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        found = [p for p in items if csv in p["spec"]["clusterServiceVersionNames"]]
        if len(found) >= count and (not phased or all(phase(p) for p in found[-1:])):
            return sorted(found, key=lambda p: p["metadata"]["creationTimestamp"])
        return None

    return check


def test_catalog_source_reports_ready(kube: Kube, ns: str) -> None:
    kube.create(
        CATALOGSOURCES,
        ns,
        {"metadata": {"name": "redhat"}, "spec": {"sourceType": "grpc", "image": "x"}},
    )
    cs = wait_for(
        kube,
        CATALOGSOURCES,
        ns,
        "redhat",
        lambda o: (
            (o.get("status") or {}).get("connectionState", {}).get("lastObservedState") == "READY"
        ),
        timeout=20,
    )
    assert cs["status"]["registryService"]["serviceName"] == "redhat"


def test_manual_subscription_plan_approval_and_csv_phases(kube: Kube, ns: str) -> None:
    kube.create(OPERATORGROUPS, ns, operator_group(ns))
    kube.create(SUBSCRIPTIONS, ns, subscription(ns))
    (plan,) = wait_list(kube, INSTALLPLANS, ns, plans_listing(RHSSO_CSV), timeout=20)
    assert phase(plan) == "RequiresApproval"
    assert plan["spec"]["approval"] == "Manual"
    assert plan["spec"]["approved"] is False
    sub = wait_for(
        kube,
        SUBSCRIPTIONS,
        ns,
        "rhsso-operator",
        lambda o: (
            (o.get("status") or {}).get("installPlanRef", {}).get("name")
            == plan["metadata"]["name"]
        ),
        timeout=20,
    )
    assert sub["status"]["state"] == "UpgradePending"
    assert sub["status"]["currentCSV"] == RHSSO_CSV
    assert kube.get_or_none(CSVS, ns, RHSSO_CSV) is None

    kube.patch(INSTALLPLANS, ns, plan["metadata"]["name"], {"spec": {"approved": True}})
    csv = wait_for(kube, CSVS, ns, RHSSO_CSV, lambda o: phase(o) == "Succeeded", timeout=30)
    assert [c["phase"] for c in csv["status"]["conditions"]] == [
        "Pending",
        "InstallReady",
        "Installing",
        "Succeeded",
    ]
    done = wait_for(
        kube,
        INSTALLPLANS,
        ns,
        plan["metadata"]["name"],
        lambda o: phase(o) == "Complete",
        timeout=10,
    )
    assert done["status"]["plan"][0]["resolving"] == RHSSO_CSV
    sub = wait_for(
        kube,
        SUBSCRIPTIONS,
        ns,
        "rhsso-operator",
        lambda o: (o.get("status") or {}).get("state") == "AtLatestKnown",
        timeout=20,
    )
    assert sub["status"]["installedCSV"] == RHSSO_CSV


def test_one_plan_covers_two_subscriptions(kube: Kube, ns: str, sim_knobs: Any) -> None:
    # Resolution waits 1 s, so both Subscriptions are there when the plan is made, as in OLM.
    sim_knobs.set({"kind": "Subscription", "delay": 1.0, "jitter": 0})
    kube.create(OPERATORGROUPS, ns, operator_group(ns))
    kube.create(SUBSCRIPTIONS, ns, subscription(ns, installPlanApproval="Automatic"))
    kube.create(
        SUBSCRIPTIONS, ns, subscription(ns, "other-operator", startingCSV="other-operator.v1.2.0")
    )
    (plan,) = wait_list(kube, INSTALLPLANS, ns, plans_listing(RHSSO_CSV), timeout=20)
    assert sorted(plan["spec"]["clusterServiceVersionNames"]) == [
        "other-operator.v1.2.0",
        RHSSO_CSV,
    ]
    assert plan["spec"]["approval"] == "Manual"  # one Manual subscription makes the plan Manual
    assert phase(plan) == "RequiresApproval"


def test_approval_with_a_lowercase_manual_is_automatic(kube: Kube, ns: str) -> None:
    kube.create(OPERATORGROUPS, ns, operator_group(ns))
    kube.create(SUBSCRIPTIONS, ns, subscription(ns, installPlanApproval="manual"))
    wait_for(kube, CSVS, ns, RHSSO_CSV, lambda o: phase(o) == "Succeeded", timeout=30)
    (plan,) = kube.list(INSTALLPLANS, ns)[0]
    assert plan["spec"]["approval"] == "Automatic"


def test_early_approval_makes_a_second_plan(kube: Kube, ns: str, sim_knobs: Any) -> None:
    # The plan's phase stays empty for 3 s: long enough to approve it too early.
    sim_knobs.set({"kind": "InstallPlan", "delay": 3.0, "jitter": 0})
    kube.create(OPERATORGROUPS, ns, operator_group(ns))
    kube.create(SUBSCRIPTIONS, ns, subscription(ns))
    (first,) = wait_list(kube, INSTALLPLANS, ns, plans_listing(RHSSO_CSV, phased=False), timeout=20)
    assert phase(first) == ""
    kube.patch(INSTALLPLANS, ns, first["metadata"]["name"], {"spec": {"approved": True}})
    plans = wait_list(kube, INSTALLPLANS, ns, plans_listing(RHSSO_CSV, count=2), timeout=30)
    second = next(p for p in plans if p["metadata"]["name"] != first["metadata"]["name"])
    assert second["spec"]["approved"] is False
    assert phase(second) == "RequiresApproval"
    sub = wait_for(
        kube,
        SUBSCRIPTIONS,
        ns,
        "rhsso-operator",
        lambda o: (
            (o.get("status") or {}).get("installPlanRef", {}).get("name")
            == second["metadata"]["name"]
        ),
        timeout=20,
    )
    assert sub["status"]["currentCSV"] == RHSSO_CSV
    stale = kube.get(INSTALLPLANS, ns, first["metadata"]["name"])
    assert phase(stale) == ""
    assert kube.get_or_none(CSVS, ns, RHSSO_CSV) is None


def test_two_operator_groups_fail_the_csv(kube: Kube, ns: str) -> None:
    kube.create(OPERATORGROUPS, ns, operator_group(ns, "og-one"))
    kube.create(OPERATORGROUPS, ns, operator_group(ns, "og-two"))
    kube.create(SUBSCRIPTIONS, ns, subscription(ns, installPlanApproval="Automatic"))
    csv = wait_for(kube, CSVS, ns, RHSSO_CSV, lambda o: phase(o) == "Failed", timeout=30)
    assert csv["status"]["reason"] == "TooManyOperatorGroups"
    kube.delete(OPERATORGROUPS, ns, "og-two")
    wait_for(kube, CSVS, ns, RHSSO_CSV, lambda o: phase(o) == "Succeeded", timeout=30)


def test_copied_csvs_are_in_every_user_namespace(kube: Kube, ns: str) -> None:
    def copied(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        found = [c for c in items if (c.get("status") or {}).get("reason") == "Copied"]
        return found if len(found) == len(CLUSTER_WIDE_OPERATORS) else None

    found = wait_list(kube, CSVS, ns, copied, timeout=20)
    assert {c["metadata"]["name"] for c in found} == set(CLUSTER_WIDE_OPERATORS)
    assert all(phase(c) == "Succeeded" for c in found)
    assert all(c["metadata"]["labels"]["olm.copiedFrom"] == "openshift-operators" for c in found)


def test_csv_failure_knob(kube: Kube, ns: str, sim_knobs: Any) -> None:
    sim_knobs.set(
        {"kind": "CSV", "fail": "InstallComponentFailed: install strategy failed: simulated"}
    )
    kube.create(OPERATORGROUPS, ns, operator_group(ns))
    kube.create(SUBSCRIPTIONS, ns, subscription(ns, installPlanApproval="Automatic"))
    csv = wait_for(kube, CSVS, ns, RHSSO_CSV, lambda o: phase(o) == "Failed", timeout=30)
    assert (csv["status"]["reason"], csv["status"]["message"]) == (
        "InstallComponentFailed",
        "install strategy failed: simulated",
    )


def test_delay_knob_slows_one_user_only(kube: Kube, ns: str, sim_knobs: Any) -> None:
    sim_knobs.set({"kind": "CatalogSource", "delay": 1.5, "jitter": 0})
    start = time.monotonic()
    kube.create(CATALOGSOURCES, ns, {"metadata": {"name": "slow"}, "spec": {"sourceType": "grpc"}})
    wait_for(
        kube,
        CATALOGSOURCES,
        ns,
        "slow",
        lambda o: (
            (o.get("status") or {}).get("connectionState", {}).get("lastObservedState") == "READY"
        ),
        timeout=20,
    )
    # Two transitions (CONNECTING, READY) of 1.5 s each.
    assert time.monotonic() - start >= 3.0
