"""The OLM simulator's state machine, run to a steady state on an in-memory API."""

from __future__ import annotations

from typing import Any

from devcluster.sim import knobs
from devcluster.sim.catalog import (
    CLUSTER_WIDE_OPERATORS,
    catalog_transitions,
    copy_transitions,
    is_user_namespace,
)
from devcluster.sim.csvs import install_mode_error, phase
from devcluster.sim.fakeworld import FakeWorld
from devcluster.sim.kube import (
    CATALOGSOURCES,
    CSVS,
    INSTALLPLANS,
    NAMESPACES,
    OPERATORGROUPS,
    SUBSCRIPTIONS,
)
from devcluster.sim.olm import OlmController, sub_csv

NS = "user1"
CSV = "rhsso-operator.7.5.2-opr-001"
FAST = knobs.build([])


def sub(name: str = "rhsso-operator", approval: Any = "Manual", csv: str = CSV) -> dict[str, Any]:
    spec = {"name": name, "channel": "stable", "source": "redhat", "sourceNamespace": NS}
    if approval is not None:
        spec["installPlanApproval"] = approval
    if csv:
        spec["startingCSV"] = csv
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def og(name: str = "og", targets: list[str] | None = None) -> dict[str, Any]:
    spec = {} if targets == [] else {"targetNamespaces": targets or [NS]}
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def settle(world: FakeWorld, k: knobs.Knobs = FAST) -> list[str]:
    ctl = OlmController()
    return world.settle(lambda: ctl.transitions(NS, world.store, k))


def plans(world: FakeWorld) -> list[dict[str, Any]]:
    return sorted(world.list(INSTALLPLANS, NS), key=lambda p: p["metadata"]["name"])


def approve(world: FakeWorld, plan: dict[str, Any]) -> None:
    current = world.get(INSTALLPLANS, NS, plan["metadata"]["name"])
    assert current is not None
    current["spec"]["approved"] = True
    world.store.update(INSTALLPLANS, current)


def test_manual_subscription_waits_for_approval_then_installs() -> None:
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub())
    steps = settle(w)
    assert steps[0].startswith("Subscription:plan:")
    (plan,) = plans(w)
    assert plan["spec"] == {
        "approval": "Manual",
        "approved": False,
        "clusterServiceVersionNames": [CSV],
        "generation": 1,
    }
    assert phase(plan) == "RequiresApproval"
    assert w.get(CSVS, NS, CSV) is None
    s = w.get(SUBSCRIPTIONS, NS, "rhsso-operator")
    assert s is not None
    assert s["status"]["state"] == "UpgradePending"
    assert s["status"]["installPlanRef"]["name"] == plan["metadata"]["name"]
    assert s["status"]["currentCSV"] == CSV
    assert "installedCSV" not in s["status"]
    assert {
        "type": "InstallPlanPending",
        "status": "True",
        "reason": "RequiresApproval",
    }.items() <= s["status"]["conditions"][0].items()

    approve(w, plan)
    steps = settle(w)
    csv_steps = [st for st in steps if st.startswith("ClusterServiceVersion:")]
    assert [st.split(":")[1] for st in csv_steps] == [
        "Pending",
        "InstallReady",
        "Installing",
        "Succeeded",
    ]
    assert phase(plans(w)[0]) == "Complete"
    s = w.get(SUBSCRIPTIONS, NS, "rhsso-operator")
    assert s is not None
    assert s["status"]["state"] == "AtLatestKnown"
    assert s["status"]["installedCSV"] == CSV
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert csv["metadata"]["annotations"]["olm.targetNamespaces"] == NS
    assert [c["phase"] for c in csv["status"]["conditions"]] == [
        "Pending",
        "InstallReady",
        "Installing",
        "Succeeded",
    ]


def test_only_the_exact_string_manual_is_manual() -> None:
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub(approval="manual"))
    settle(w)
    (plan,) = plans(w)
    assert plan["spec"]["approval"] == "Automatic"
    assert phase(plan) == "Complete"
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert phase(csv) == "Succeeded"


def test_one_plan_covers_every_subscription_and_one_manual_makes_it_manual() -> None:
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub())
    w.add(SUBSCRIPTIONS, sub("other-operator", approval="Automatic", csv="other-operator.v2.0.0"))
    settle(w)
    (plan,) = plans(w)
    assert plan["spec"]["clusterServiceVersionNames"] == [CSV, "other-operator.v2.0.0"]
    assert plan["spec"]["approval"] == "Manual"
    assert phase(plan) == "RequiresApproval"
    owners = {o["name"] for o in plan["metadata"]["ownerReferences"]}
    assert owners == {"rhsso-operator", "other-operator"}
    approve(w, plan)
    settle(w)
    for name in (CSV, "other-operator.v2.0.0"):
        csv = w.get(CSVS, NS, name)
        assert csv is not None
        assert phase(csv) == "Succeeded"


def test_approving_while_the_phase_is_empty_makes_a_second_plan() -> None:
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub())
    ctl = OlmController()
    due = ctl.transitions(NS, w.store, FAST)
    w.apply(next(t for t in due if t.step.startswith("plan:")))
    (first,) = plans(w)
    assert "status" not in first  # phase not written yet
    approve(w, first)
    settle(w)
    all_plans = plans(w)
    assert len(all_plans) == 2
    first = next(p for p in all_plans if p["metadata"]["name"] == first["metadata"]["name"])
    second = next(p for p in all_plans if p is not first)
    assert phase(first) == ""
    assert second["spec"]["approved"] is False
    assert second["spec"]["clusterServiceVersionNames"] == [CSV]
    assert phase(second) == "RequiresApproval"
    assert (first["spec"]["generation"], second["spec"]["generation"]) == (1, 2)
    s = w.get(SUBSCRIPTIONS, NS, "rhsso-operator")
    assert s is not None
    assert s["status"]["installPlanRef"]["name"] == second["metadata"]["name"]
    assert w.get(CSVS, NS, CSV) is None


def test_a_subscription_with_a_plan_under_way_is_not_resolved_again() -> None:
    # OLM's nothingToUpdate: installPlanRef set and state UpgradePending. Even when the plan
    # is not in the cache (yet), no second plan is made.
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    pending = sub()
    pending["status"] = {
        "installPlanRef": {"kind": "InstallPlan", "name": "install-elsewhere", "namespace": NS},
        "installPlanGeneration": 3,
        "state": "UpgradePending",
    }
    w.add(SUBSCRIPTIONS, pending)
    settle(w)
    assert plans(w) == []
    w.add(SUBSCRIPTIONS, sub("other-operator", csv="other-operator.v2.0.0"))
    settle(w)
    (plan,) = plans(w)
    assert plan["spec"]["clusterServiceVersionNames"] == ["other-operator.v2.0.0"]
    assert plan["spec"]["generation"] == 4  # one more than any Subscription's


def test_two_operator_groups_fail_the_csv_until_one_is_removed() -> None:
    w = FakeWorld()
    w.add(OPERATORGROUPS, og("og-a"))
    w.add(OPERATORGROUPS, og("og-b"))
    w.add(SUBSCRIPTIONS, sub(approval="Automatic"))
    settle(w)
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert (phase(csv), csv["status"]["reason"]) == ("Failed", "TooManyOperatorGroups")
    assert csv["status"]["message"] == (
        "csv created in namespace with multiple operatorgroups, can't pick one automatically"
    )
    second = w.get(OPERATORGROUPS, NS, "og-b")
    assert second is not None
    w.store.remove(OPERATORGROUPS, second)
    settle(w)
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert phase(csv) == "Succeeded"


def test_no_operator_group_and_all_namespaces_group_fail_with_olm_reasons() -> None:
    w = FakeWorld()
    w.add(SUBSCRIPTIONS, sub(approval="Automatic"))
    settle(w)
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert (phase(csv), csv["status"]["reason"]) == ("Failed", "NoOperatorGroup")
    w.add(OPERATORGROUPS, og(targets=[]))
    settle(w)
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert (phase(csv), csv["status"]["reason"]) == ("Failed", "UnsupportedOperatorGroup")
    assert "AllNamespaces InstallModeType not supported" in csv["status"]["message"]


def test_install_mode_messages() -> None:
    csv = {"spec": {"installModes": [{"type": "OwnNamespace", "supported": False}]}}
    assert install_mode_error(csv, "a", ["a"]) == (
        "OwnNamespace InstallModeType not supported, cannot configure to watch own namespace"
    )
    assert install_mode_error(csv, "a", ["b", "c"]) == (
        "MultiNamespace InstallModeType not supported, cannot configure to watch 2 namespaces"
    )


def csv_knob(failure: str) -> knobs.Knobs:
    return knobs.build([("t", {"rules": [{"user": NS, "kind": "CSV", "fail": failure}]})])


def until_csv(w: FakeWorld, k: knobs.Knobs, wanted: str) -> dict[str, Any]:
    """Apply due transitions until the CSV reaches `wanted` (OLM retries some failures
    forever, so there is no steady state to settle into)."""
    ctl = OlmController()
    for _ in range(50):
        csv = w.get(CSVS, NS, CSV)
        if csv is not None and phase(csv) == wanted:
            return csv
        w.apply(ctl.transitions(NS, w.store, k)[0])
    raise AssertionError(f"the CSV never reached {wanted}")


def test_a_retried_csv_failure_cycles_until_the_deployment_is_healthy() -> None:
    k = csv_knob("InstallCheckFailed: install timeout")
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub(approval="Automatic"))
    csv = until_csv(w, k, "Failed")
    assert (csv["status"]["reason"], csv["status"]["message"]) == (
        "InstallCheckFailed",
        "install timeout",
    )
    csv = until_csv(w, k, "Pending")  # OLM's re-check: the deployment is still not ready
    assert csv["status"]["reason"] == "NeedsReinstall"
    assert csv["status"]["message"].startswith("installing: waiting for deployment rhsso-operator")
    until_csv(w, k, "Failed")  # ... and the install fails again
    csv = until_csv(w, FAST, "Succeeded")  # the knob is gone: the deployment became healthy
    assert csv["status"]["reason"] == "InstallSucceeded"
    assert [c["reason"] for c in csv["status"]["conditions"]][-2:] == [
        "InstallCheckFailed",
        "InstallSucceeded",
    ]


def test_a_no_retry_csv_failure_stays_failed() -> None:
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub(approval="Automatic"))
    settle(w, csv_knob("InstallComponentFailedNoRetry: install strategy failed: invalid"))
    settle(w)  # even once the knob is gone
    csv = w.get(CSVS, NS, CSV)
    assert csv is not None
    assert (phase(csv), csv["status"]["reason"]) == ("Failed", "InstallComponentFailedNoRetry")


def test_subscription_failure_knob() -> None:
    k = knobs.build([("t", {"rules": [{"user": NS, "kind": "Subscription", "fail": True}]})])
    w = FakeWorld()
    w.add(OPERATORGROUPS, og())
    w.add(SUBSCRIPTIONS, sub())
    settle(w, k)
    assert plans(w) == []
    s = w.get(SUBSCRIPTIONS, NS, "rhsso-operator")
    assert s is not None
    assert s["status"]["conditions"][0]["type"] == "ResolutionFailed"


def test_subscription_without_starting_csv_resolves_to_a_fixed_version() -> None:
    assert sub_csv(sub(csv="")) == "rhsso-operator.v1.0.0"


def test_catalog_source_connects_then_is_ready_or_fails_by_knob() -> None:
    w = FakeWorld()
    w.add(
        CATALOGSOURCES,
        {"metadata": {"name": "redhat", "namespace": NS}, "spec": {"sourceType": "grpc"}},
    )

    def run(k: knobs.Knobs) -> list[str]:
        return w.settle(lambda: catalog_transitions(w.get(CATALOGSOURCES, NS, "redhat") or {}, k))

    assert run(FAST) == ["CatalogSource:CONNECTING", "CatalogSource:READY"]
    w2 = FakeWorld()
    w2.add(CATALOGSOURCES, {"metadata": {"name": "redhat", "namespace": NS}, "spec": {}})
    bad = knobs.build([("t", {"rules": [{"user": NS, "kind": "CatalogSource", "fail": True}]})])
    steps = w2.settle(lambda: catalog_transitions(w2.get(CATALOGSOURCES, NS, "redhat") or {}, bad))
    assert steps == ["CatalogSource:CONNECTING", "CatalogSource:TRANSIENT_FAILURE"]


def test_copied_csvs_appear_in_user_namespaces_only() -> None:
    assert is_user_namespace("user1")
    assert is_user_namespace("user1-istio")
    for system in (
        "default",
        "kube-system",
        "openshift-operators",
        "openshift",
        "devcluster-system",
    ):
        assert not is_user_namespace(system)
    w = FakeWorld()
    w.add(NAMESPACES, {"metadata": {"name": NS}, "status": {"phase": "Active"}})

    def due() -> list[Any]:
        csvs = {c["metadata"]["name"]: c for c in w.list(CSVS, NS)}
        return copy_transitions(w.get(NAMESPACES, None, NS), csvs)

    w.settle(due)
    copied = {c["metadata"]["name"]: c for c in w.list(CSVS, NS)}
    assert set(copied) == set(CLUSTER_WIDE_OPERATORS)
    for csv in copied.values():
        assert csv["status"]["phase"] == "Succeeded"
        assert csv["status"]["reason"] == "Copied"
        assert csv["metadata"]["labels"]["olm.copiedFrom"] == "openshift-operators"
