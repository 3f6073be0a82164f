"""The RH-SSO chain (sso-operator, install-plan, csv): table-driven against a scripted cluster,
predicates from YAML fixtures of real objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runner.errors import OperatorFailed, TemplateError, WaitTimeout
from steps import csv, install_plan, sso_operator
from steps._olm import INSTALL_PLAN
from tests.unit.stepkit import PINNED, ScriptedKube, context, load, run, with_

Obj = dict[str, Any]
OG_API = "operators.coreos.com/v1"


def og(name: str, targets: list[str] | None, *, ours: bool = False, **status: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": "user1"}
    if ours:
        meta["labels"] = {"app.kubernetes.io/managed-by": "workshop-runner"}
    spec = {"targetNamespaces": targets} if targets is not None else {}
    return {
        "apiVersion": OG_API,
        "kind": "OperatorGroup",
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


# -- sso-operator -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("existing", "actions", "detail"),
    [
        (
            [],
            [
                "apply OperatorGroup user1/rhsso-operator-group",
                "apply Subscription user1/rhsso-operator",
            ],
            "created OperatorGroup user1/rhsso-operator-group; created Subscription",
        ),
        (
            [og("workshop-og", ["user1"])],
            ["apply Subscription user1/rhsso-operator"],
            "reusing OperatorGroup user1/workshop-og (it targets user1)",
        ),
        (
            [og("by-selector", None, namespaces=["user1"])],
            ["apply Subscription user1/rhsso-operator"],
            "reusing OperatorGroup user1/by-selector",
        ),
        (
            [og("rhsso-operator-group", ["someone-else"], ours=True)],
            [
                "apply OperatorGroup user1/rhsso-operator-group",
                "apply Subscription user1/rhsso-operator",
            ],
            "updated OperatorGroup user1/rhsso-operator-group",
        ),
    ],
)
def test_sso_operator_group_and_subscription(
    existing: list[Obj], actions: list[str], detail: str
) -> None:
    result, kube = run(sso_operator, existing)
    assert kube.actions == actions
    assert detail in result.detail
    assert result.changed
    sub = kube.objects[("Subscription", "user1", "rhsso-operator")]
    assert sub["spec"] == {
        "channel": "stable",
        "name": "rhsso-operator",
        "source": "rhsso-catalog",
        "sourceNamespace": "user1",
        "installPlanApproval": "Manual",
        "startingCSV": PINNED,
    }
    groups = [k for k in kube.objects if k[0] == "OperatorGroup"]
    assert len(groups) == 1  # never a second OperatorGroup


@pytest.mark.parametrize(
    ("existing", "reason"),
    [
        ([og("a", ["user1"]), og("b", ["user1"])], "TooManyOperatorGroups"),
        (
            [og("rhsso-operator-group", ["user1"], ours=True), og("b", None)],
            "TooManyOperatorGroups",
        ),
        ([og("global", None)], "UnsupportedOperatorGroup"),
        ([og("other", ["user2"])], "UnsupportedOperatorGroup"),
    ],
)
def test_sso_operator_refuses_to_double_or_misuse_a_group(existing: list[Obj], reason: str) -> None:
    with pytest.raises(OperatorFailed, match=reason):
        run(sso_operator, existing)


def test_sso_operator_rerun_changes_nothing() -> None:
    _, first = run(sso_operator)
    result, again = run(sso_operator, list(first.objects.values()))
    assert again.actions == []
    assert not result.changed


@pytest.mark.parametrize("approval", ["manual", "Automatic", None])
def test_sso_operator_needs_an_exactly_manual_subscription(approval: str | None) -> None:
    kube = ScriptedKube([], [])
    ctx = context(sso_operator, kube)
    sub = ctx.rendered["subscription.yaml"][0]
    sub["spec"]["installPlanApproval"] = approval
    with pytest.raises(TemplateError, match="exactly 'Manual'"):
        sso_operator.run(ctx)
    assert kube.actions == []


def test_sso_operator_undo_keeps_a_reused_group() -> None:
    csv_obj = load("csv-succeeded.yaml")
    _, made = run(sso_operator, [og("workshop-og", ["user1"]), csv_obj])
    kube = ScriptedKube(list(made.objects.values()), [])
    result = sso_operator.undo(context(sso_operator, kube))
    assert kube.actions == [
        "delete Subscription user1/rhsso-operator",
        f"delete ClusterServiceVersion user1/{PINNED}",
    ]
    assert result.changed
    assert ("OperatorGroup", "user1", "workshop-og") in kube.objects


def test_sso_operator_undo_removes_its_own_group_then_nothing_left() -> None:
    _, made = run(sso_operator)
    kube = ScriptedKube(list(made.objects.values()), [])
    first = sso_operator.undo(context(sso_operator, kube))
    assert "deleted OperatorGroup user1/rhsso-operator-group" in first.detail
    second = sso_operator.undo(context(sso_operator, kube))
    assert not second.changed
    assert "already absent" in second.detail


# -- install-plan -------------------------------------------------------------------------
NEW = load("installplan-new.yaml")
WAITING = load("installplan-requires-approval.yaml")
INSTALLING = with_(WAITING, spec={"approved": True}, status={"phase": "Installing"})
COMPLETE = load("installplan-complete.yaml")
FAILED = load("installplan-failed.yaml")
TWO = load("installplan-two-subscriptions.yaml")
OTHERS = with_(
    TWO,
    metadata={"name": "install-other"},
    spec={"clusterServiceVersionNames": ["amq-streams.v2.5.0-0"]},
)


def never_approve_early(what: str, live: Obj, patch: Obj) -> None:
    """OLM's trap: approving a plan before RequiresApproval makes a duplicate plan."""
    if patch.get("spec", {}).get("approved"):
        assert (live.get("status") or {}).get("phase") == "RequiresApproval", f"{what} too early"


def run_plan(objects: list[Obj], script: list[Obj], conflicts: int = 0) -> tuple[Any, ScriptedKube]:
    kube = ScriptedKube(copy.deepcopy(objects), copy.deepcopy(script))
    kube.on_patch = never_approve_early
    kube.conflicts["InstallPlan user1/install-7x2kq"] = conflicts
    return install_plan.run(context(install_plan, kube)), kube


@pytest.mark.parametrize(
    ("objects", "script", "patches", "detail"),
    [
        (
            [WAITING],
            [INSTALLING, COMPLETE],
            1,
            "approved InstallPlan install-7x2kq; InstallPlan install-7x2kq is Complete",
        ),
        ([NEW], [WAITING, INSTALLING, COMPLETE], 1, "approved InstallPlan install-7x2kq;"),
        ([], [NEW, WAITING, INSTALLING, COMPLETE], 1, "approved InstallPlan install-7x2kq;"),
        ([COMPLETE], [], 0, "InstallPlan install-7x2kq is Complete"),
        ([INSTALLING], [COMPLETE], 0, "InstallPlan install-7x2kq is Complete"),
        ([OTHERS, WAITING], [INSTALLING, COMPLETE], 1, "approved InstallPlan install-7x2kq;"),
    ],
)
def test_install_plan(objects: list[Obj], script: list[Obj], patches: int, detail: str) -> None:
    result, kube = run_plan(objects, script)
    assert [w for w, _ in kube.patches] == ["InstallPlan user1/install-7x2kq"] * patches
    assert all(p["spec"] == {"approved": True} for _, p in kube.patches)
    assert result.detail.startswith(detail)
    assert result.changed == bool(patches)
    if OTHERS in objects:  # another Subscription's Manual plan: not ours to approve
        assert kube.objects[("InstallPlan", "user1", "install-other")]["spec"]["approved"] is False


def test_the_fake_refuses_an_early_approval() -> None:
    kube = ScriptedKube([copy.deepcopy(NEW)], [])
    kube.on_patch = never_approve_early
    with pytest.raises(AssertionError, match="too early"):
        kube.merge_patch(*INSTALL_PLAN, "install-7x2kq", "user1", {"spec": {"approved": True}})


def test_install_plan_covering_two_subscriptions_is_approved_and_says_so() -> None:
    complete = with_(TWO, spec={"approved": True}, status={"phase": "Complete"})
    kube = ScriptedKube([copy.deepcopy(TWO)], [complete])
    result = install_plan.run(context(install_plan, kube))
    assert kube.patches == [
        (
            "InstallPlan user1/install-k4lzd",
            {
                "metadata": {"resourceVersion": kube.patches[0][1]["metadata"]["resourceVersion"]},
                "spec": {"approved": True},
            },
        )
    ]
    assert "(also installs amq-streams.v2.5.0-0)" in result.detail


def test_install_plan_duplicate_of_an_early_approval_is_the_one_approved() -> None:
    # Someone approved the first plan while its phase was empty: OLM left it phase-less
    # forever and resolved again into a second plan listing the same CSV.
    stuck = with_(NEW, metadata={"name": "install-early"}, spec={"approved": True})
    dup = with_(WAITING, metadata={"creationTimestamp": "2024-03-05T10:13:09Z"})
    done = with_(COMPLETE, metadata={"creationTimestamp": "2024-03-05T10:13:09Z"})
    result, kube = run_plan([stuck, dup], [done])
    assert [w for w, _ in kube.patches] == ["InstallPlan user1/install-7x2kq"]
    assert result.changed


DUPLICATE = with_(
    WAITING, metadata={"name": "install-dup", "creationTimestamp": "2024-03-05T10:14:00Z"}
)


def test_install_plan_duplicate_after_our_approval_is_left_alone() -> None:
    # The 2026-12-01 fault-suite failure: OLM resolved again after an apiserver restart while
    # the approved plan was installing; the runner approved the duplicate too (2 approved).
    result, kube = run_plan([WAITING], [INSTALLING, DUPLICATE, COMPLETE])
    assert [w for w, _ in kube.patches] == ["InstallPlan user1/install-7x2kq"]
    assert kube.objects[("InstallPlan", "user1", "install-dup")]["spec"]["approved"] is False
    assert result.detail.startswith("approved InstallPlan install-7x2kq;")


def test_install_plan_predicate_waits_for_the_approved_plan_not_a_newer_duplicate() -> None:
    verdict = install_plan.plan_for(PINNED)([INSTALLING, DUPLICATE])
    assert (verdict.state, verdict.summary) == (
        "pending",
        "InstallPlan install-7x2kq phase=Installing, approved",
    )


def test_install_plan_conflict_reads_again() -> None:
    result, kube = run_plan([WAITING], [INSTALLING, COMPLETE], conflicts=1)
    assert len(kube.patches) == 2
    assert result.detail.startswith("approved InstallPlan install-7x2kq;")


def test_install_plan_failed_is_exit_6_with_the_reason() -> None:
    with pytest.raises(OperatorFailed, match="install-7x2kq Failed: InstallComponentFailed") as e:
        run_plan([WAITING], [INSTALLING, FAILED])
    assert e.value.exit_code == 6


def test_install_plan_never_listed_times_out_naming_what_it_waited_for() -> None:
    sub = {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": "rhsso-operator", "namespace": "user1"},
        "status": {"conditions": [{
            "type": "ResolutionFailed", "status": "True", "reason": "ConstraintsNotSatisfiable",
            "message": "no operators found in channel stable of package rhsso-operator"}]},
    }  # fmt: skip
    with pytest.raises(WaitTimeout, match=f"no InstallPlan lists {PINNED} yet") as e:
        run_plan([OTHERS, sub], [])
    assert e.value.exit_code == 5
    assert "Subscription rhsso-operator: ResolutionFailed=True (ConstraintsNotSatisfiable: no " in (
        str(e.value)
    )


def test_install_plan_dry_run_does_not_look() -> None:
    result, kube = run(install_plan, [WAITING], dry_run=True)
    assert kube.actions == []
    assert result.detail.startswith("dry-run")


# -- csv ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "state", "summary"),
    [
        ("csv-succeeded.yaml", "done", "Succeeded"),
        ("csv-installing.yaml", "pending", "phase=Installing (InstallWaiting)"),
        (
            "csv-failed-too-many-operatorgroups.yaml",
            "failed",
            "Failed: TooManyOperatorGroups: csv created",
        ),
        # OLM re-checks the deployment and recovers: not final
        ("csv-failed-install-check.yaml", "pending", "InstallCheckFailed: install timeout); OLM"),
        ("csv-recovering.yaml", "pending", "phase=Pending (NeedsReinstall)"),
    ],
)
def test_csv_predicate(fixture: str, state: str, summary: str) -> None:
    verdict = csv.succeeded(PINNED)(load(fixture))
    assert (verdict.state, summary in verdict.summary) == (state, True)
    assert csv.succeeded(PINNED)(None).summary == f"CSV {PINNED} not created yet"


def test_csv_waits_for_the_pinned_one_not_the_first() -> None:
    copied = load("csv-copied-mesh-operator.yaml")
    result, kube = run(csv, [copied], [load("csv-installing.yaml"), load("csv-succeeded.yaml")])
    assert result.detail == f"ClusterServiceVersion user1/{PINNED} Succeeded"
    assert not result.changed
    assert kube.actions == []


@pytest.mark.parametrize(
    "reason",
    [
        "NoOperatorGroup",
        "UnsupportedOperatorGroup",
        "InterOperatorGroupOwnerConflict",
        "NoTargetNamespaces",
        "InstallComponentFailedNoRetry",
    ],
)
def test_csv_final_reasons_fail_at_once(reason: str) -> None:
    obj = with_(load("csv-failed-install-check.yaml"), status={"reason": reason})
    assert csv.succeeded(PINNED)(obj).state == "failed"


@pytest.mark.parametrize("reason", ["InstallComponentFailed", "ComponentUnhealthy"])
def test_csv_retried_reasons_keep_waiting(reason: str) -> None:
    obj = with_(load("csv-failed-install-check.yaml"), status={"reason": reason})
    assert csv.succeeded(PINNED)(obj).state == "pending"


def test_csv_failed_then_recovering_then_succeeded_is_done() -> None:
    script = [load(f) for f in ("csv-failed-install-check.yaml", "csv-recovering.yaml")]
    result, _ = run(csv, [load("csv-installing.yaml")], [*script, load("csv-succeeded.yaml")])
    assert result.detail == f"ClusterServiceVersion user1/{PINNED} Succeeded"


def test_csv_still_failing_at_the_deadline_reports_the_last_failure() -> None:
    script = [load(f) for f in ("csv-failed-install-check.yaml", "csv-recovering.yaml")]
    with pytest.raises(WaitTimeout) as e:
        run(csv, [load("csv-installing.yaml")], script, seconds=60)
    assert e.value.exit_code == 5
    assert "phase=Pending (NeedsReinstall); last failure InstallCheckFailed: install timeout" in (
        str(e.value)
    )


def test_csv_failure_is_exit_6_naming_csv_and_reason() -> None:
    failed = load("csv-failed-too-many-operatorgroups.yaml")
    with pytest.raises(OperatorFailed) as e:
        run(csv, [load("csv-copied-mesh-operator.yaml")], [load("csv-installing.yaml"), failed])
    assert PINNED in str(e.value)
    assert "TooManyOperatorGroups" in str(e.value)


def test_csv_timeout_reports_the_last_phase() -> None:
    with pytest.raises(WaitTimeout, match=r"last observed: phase=Installing \(InstallWaiting\)"):
        run(csv, [load("csv-installing.yaml")], [], seconds=600)
