"""Maistra, Kiali and OpenShift project simulators, and the admission decisions, in memory."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devcluster.sim import knobs
from devcluster.sim.engine import Action
from devcluster.sim.fakeworld import FakeWorld
from devcluster.sim.kiali import RECONCILED, KialiController
from devcluster.sim.kube import (
    KIALIS,
    LIMITRANGES,
    NAMESPACES,
    PROJECTREQUESTS,
    PROJECTS,
    ROLEBINDINGS,
    SMCPS,
    SMMRS,
    SMMS,
)
from devcluster.sim.maistra import FINALIZER, MEMBER_OF, SmcpController, components, version_refusal
from devcluster.sim.memberroll import (
    SmmController,
    SmmrController,
    desired_smmr_status,
)
from devcluster.sim.objects import condition
from devcluster.sim.openshift import ProjectRequestController, admission_refusal
from devcluster.sim.webhook import NOT_READY_MESSAGE, ONE_MESH_MESSAGE, Admission

CP = "user1-istio"
FAST = knobs.build([])
SPEC = {
    "version": "v2.4",
    "tracing": {"type": "Jaeger", "sampling": 10000},
    "addons": {
        "grafana": {"enabled": True},
        "kiali": {"enabled": True},
        "prometheus": {"enabled": True},
    },
}


def status_of_condition(status: dict[str, Any], kind: str) -> tuple[str, str, str]:
    """(status, reason, message) of the condition `kind`; the condition must be there."""
    found = condition(status, kind)
    assert found is not None, f"no {kind} condition"
    return (found["status"], found["reason"], found["message"])


def smcp(world: FakeWorld, name: str = "workshop-install") -> dict[str, Any]:
    return world.add(SMCPS, {"metadata": {"name": name, "namespace": CP}, "spec": dict(SPEC)})


def ns(world: FakeWorld, name: str) -> None:
    world.add(NAMESPACES, {"metadata": {"name": name}, "status": {"phase": "Active"}})


def run_all(world: FakeWorld, k: knobs.Knobs = FAST) -> list[str]:
    controllers: list[Any] = [
        SmcpController(),
        SmmrController(),
        SmmController(),
        KialiController(),
    ]
    for c in controllers:
        if hasattr(c, "bind"):
            c.bind(world.store)

    def due() -> list[Any]:
        out: list[Any] = []
        for obj in world.list(SMCPS):
            out += controllers[0].transitions((CP, obj["metadata"]["name"]), world.store, k)
        for obj in world.list(SMMRS):
            out += controllers[1].transitions(
                (obj["metadata"]["namespace"], obj["metadata"]["name"]), world.store, k
            )
        for obj in world.list(SMMS):
            out += controllers[2].transitions(
                (obj["metadata"]["namespace"], obj["metadata"]["name"]), world.store, k
            )
        for obj in world.list(KIALIS):
            out += controllers[3].transitions(
                (obj["metadata"]["namespace"], obj["metadata"]["name"]), world.store, k
            )
        return out

    return world.settle(due)


def test_smcp_goes_installed_reconciled_ready_and_creates_kiali() -> None:
    w = FakeWorld()
    smcp(w)
    steps = run_all(w)
    assert [s for s in steps if s.startswith("ServiceMeshControlPlane")] == [
        "ServiceMeshControlPlane:add-finalizer",
        "ServiceMeshControlPlane:begin",
        "ServiceMeshControlPlane:paused",
        "ServiceMeshControlPlane:installed",
        "ServiceMeshControlPlane:ready",
    ]
    obj = w.get(SMCPS, CP, "workshop-install")
    assert obj is not None
    st = obj["status"]
    assert st["observedGeneration"] == 1
    for ctype, reason in (
        ("Installed", "InstallSuccessful"),
        ("Reconciled", "InstallSuccessful"),
        ("Ready", "ComponentsReady"),
    ):
        cond = condition(st, ctype)
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("True", reason)
    assert st["readiness"]["components"]["ready"] == components(SPEC)
    assert "jaeger" in st["readiness"]["components"]["ready"]
    assert (
        st["annotations"]["readyComponentCount"]
        == f"{len(components(SPEC))}/{len(components(SPEC))}"
    )
    kiali = w.get(KIALIS, CP, "kiali")
    assert kiali is not None
    assert kiali["metadata"]["ownerReferences"][0]["kind"] == "ServiceMeshControlPlane"
    assert condition(kiali["status"], "Successful")["status"] == "True"  # type: ignore[index]


def test_smcp_pauses_between_chart_groups_as_maistra_writes_it() -> None:
    # controlplane/reconciler.go pauseReconciliation: Reconciled stays False, reason
    # PausingInstall (PausingUpdate once installed), the awaited components in Go's %v form.
    w = FakeWorld()
    smcp(w)
    ctl = SmcpController()
    for expected in ("add-finalizer", "begin", "paused"):
        (t,) = ctl.transitions((CP, "workshop-install"), w.store, knobs.build([]))
        assert t.step == expected
        w.apply(t)
    assert t.delayed is False  # the same reconcile as "begin": no pause before it
    obj = w.get(SMCPS, CP, "workshop-install")
    assert obj is not None
    assert status_of_condition(obj["status"], "Reconciled") == (
        "False",
        "PausingInstall",
        "Paused until the following components become ready: [istiod]",
    )
    (t,) = ctl.transitions((CP, "workshop-install"), w.store, knobs.build([]))
    assert (t.step, t.delayed) == ("installed", True)


def test_deleting_the_smcp_says_so_prunes_the_mesh_then_lets_it_go() -> None:
    """controlplane/deleter.go: Reconciled/Ready False Deleting first, then the mesh's own
    objects are pruned, the mesh namespace's member-of label removed, the finalizer too."""
    w = FakeWorld()
    ns(w, CP)
    smcp(w)
    run_all(w)
    obj = w.get(SMCPS, CP, "workshop-install")
    assert obj is not None
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    mesh_ns = w.get(NAMESPACES, None, CP)
    assert mesh_ns is not None
    assert mesh_ns["metadata"]["labels"][MEMBER_OF] == CP  # addNamespaceLabels, at install
    w.perform(Action("delete", SMCPS, CP, "workshop-install"))
    ctl = SmcpController()
    (t,) = ctl.transitions((CP, "workshop-install"), w.store, FAST)
    assert (t.step, t.ends_pass) == ("deleting", True)
    w.apply(t)
    marked = w.get(SMCPS, CP, "workshop-install")
    assert marked is not None
    assert status_of_condition(marked["status"], "Reconciled") == (
        "False",
        "Deleting",
        "Deleting service mesh",
    )
    (t,) = ctl.transitions((CP, "workshop-install"), w.store, FAST)
    assert t.step == "finalize"
    described = [a.describe() for a in t.actions]
    assert described[0] == f"delete Kiali {CP}/kiali"
    assert f"delete NetworkPolicy {CP}/istio-mesh-default" in described
    assert described[-1] == f"patch ServiceMeshControlPlane {CP}/workshop-install"
    w.apply(t)
    assert w.get(SMCPS, CP, "workshop-install") is None
    assert w.get(KIALIS, CP, "kiali") is None
    mesh_ns = w.get(NAMESPACES, None, CP)
    assert mesh_ns is not None
    assert MEMBER_OF not in (mesh_ns["metadata"].get("labels") or {})  # removeNamespaceLabels


def test_smcp_spec_change_is_a_new_generation_to_reconcile() -> None:
    w = FakeWorld()
    smcp(w)
    run_all(w)
    from devcluster.sim.engine import Action

    w.perform(
        Action("patch", SMCPS, CP, "workshop-install", {"spec": {"tracing": {"sampling": 100}}})
    )
    obj = w.get(SMCPS, CP, "workshop-install")
    assert obj is not None
    assert obj["metadata"]["generation"] == 2
    steps = run_all(w)
    assert "ServiceMeshControlPlane:begin" in steps
    assert "ServiceMeshControlPlane:paused" in steps
    obj = w.get(SMCPS, CP, "workshop-install")
    assert obj is not None
    assert obj["status"]["observedGeneration"] == 2
    rec = condition(obj["status"], "Reconciled")
    assert rec is not None
    assert rec["reason"] == "UpdateSuccessful"


def test_smcp_failure_knob_stops_at_reconcile_error() -> None:
    k = knobs.build([("t", {"rules": [{"user": "user1", "kind": "SMCP", "fail": True}]})])
    w = FakeWorld()
    smcp(w)
    run_all(w, k)
    obj = w.get(SMCPS, CP, "workshop-install")
    assert obj is not None
    rec = condition(obj["status"], "Reconciled")
    assert rec is not None
    assert (rec["status"], rec["reason"]) == ("False", "ReconcileError")
    assert not obj["status"].get("observedGeneration")
    assert w.get(KIALIS, CP, "kiali") is None


def ready_of(world: FakeWorld) -> tuple[str, str, str]:
    roll = world.get(SMMRS, CP, "default")
    assert roll is not None
    ready = condition(roll["status"], "Ready")
    assert ready is not None
    return ready["status"], ready["reason"], ready["message"]


def test_member_roll_as_2_4_writes_it() -> None:
    w = FakeWorld()
    ns(w, CP)
    ns(w, "user1")
    w.add(
        SMMRS,
        {
            "metadata": {"name": "default", "namespace": CP},
            "spec": {"members": ["user1", "user1-apps"]},
        },
    )
    run_all(w)
    assert ready_of(w)[:2] == ("False", "ErrSMCPMissing")
    assert w.get(SMMS, "user1", "default") is None  # no member without a mesh

    smcp(w)
    run_all(w)
    assert ready_of(w) == (
        "False",
        "ReconcileError",
        "The following namespaces are not yet configured: [user1-apps]",
    )
    roll = w.get(SMMRS, CP, "default")
    assert roll is not None
    st = roll["status"]
    assert (st["members"], st["configuredMembers"], st["pendingMembers"]) == (
        ["user1", "user1-apps"],
        ["user1"],
        ["user1-apps"],
    )
    (missing,) = [m for m in st["memberStatuses"] if m["namespace"] == "user1-apps"]
    assert missing["conditions"][0]["reason"] == "NamespaceNotExists"
    assert missing["conditions"][0]["message"] == "Namespace user1-apps does not exist"
    assert st["meshReconciledVersion"] == "2.4.5-0-1"
    # the roll made a ServiceMeshMember, whose controller configured the namespace
    member = w.get(SMMS, "user1", "default")
    assert member is not None
    assert member["metadata"]["annotations"]["maistra.io/created-by"] == (
        "servicemeshmemberroll-controller"
    )
    assert member["spec"]["controlPlaneRef"] == {"name": "workshop-install", "namespace": CP}
    reconciled = condition(member["status"], "Reconciled")
    assert reconciled is not None
    assert (reconciled["status"], reconciled["reason"]) == ("True", "")
    labelled = w.get(NAMESPACES, None, "user1")
    assert labelled is not None
    assert labelled["metadata"]["labels"][MEMBER_OF] == CP
    # Kiali: every known member, configured or not, and no exclusions
    kiali = w.get(KIALIS, CP, "kiali")
    assert kiali is not None
    assert kiali["spec"]["deployment"]["accessible_namespaces"] == ["user1", "user1-apps"]
    assert kiali["spec"]["api"]["namespaces"]["exclude"] == []

    ns(w, "user1-apps")
    run_all(w)
    assert ready_of(w) == ("True", "Configured", "All namespaces have been configured successfully")
    roll = w.get(SMMRS, CP, "default")
    assert roll is not None
    assert roll["status"]["annotations"]["configuredMemberCount"] == "2/2"

    # out of spec.members: the roll deletes the member it made, the namespace leaves the mesh
    w.perform(Action("patch", SMMRS, CP, "default", {"spec": {"members": ["user1"]}}))
    run_all(w)
    assert w.get(SMMS, "user1-apps", "default") is None
    left = w.get(NAMESPACES, None, "user1-apps")
    assert left is not None
    assert MEMBER_OF not in (left["metadata"].get("labels") or {})
    assert ready_of(w)[:2] == ("True", "Configured")


def test_a_member_behind_the_mesh_generation_is_pending() -> None:
    """configured (Reconciled True) but not up to date: its meshReconciledVersion is not the
    SMCP's `<operatorVersion>-<observedGeneration>`."""
    mesh = {
        "metadata": {"name": "basic", "namespace": CP},
        "status": {"operatorVersion": "2.4.5-0", "observedGeneration": 3},
    }
    member = {
        "metadata": {"name": "default", "namespace": "user1"},
        "spec": {"controlPlaneRef": {"name": "basic", "namespace": CP}},
        "status": {
            "meshReconciledVersion": "2.4.5-0-2",
            "conditions": [{"type": "Reconciled", "status": "True"}],
        },
    }
    roll = {"metadata": {"name": "default", "namespace": CP}, "spec": {"members": ["user1"]}}
    found = desired_smmr_status(
        roll, [mesh], {"user1": {"metadata": {"name": "user1"}}}, [member], knobs=FAST, now="t"
    )
    assert (found["configuredMembers"], found["pendingMembers"]) == (["user1"], ["user1"])
    assert found["conditions"][0]["reason"] == "ReconcileError"


def world_with_a_member() -> FakeWorld:
    """A mesh and a ServiceMeshMember in user1 (no roll made by hand), settled."""
    w = FakeWorld()
    ns(w, CP)
    ns(w, "user1")
    smcp(w)
    w.add(
        SMMS,
        {
            "metadata": {"name": "default", "namespace": "user1"},
            "spec": {"controlPlaneRef": {"name": "workshop-install", "namespace": CP}},
        },
    )
    run_all(w)
    return w


def test_service_mesh_member_joins_the_mesh_without_spec_members() -> None:
    """2.4: a ServiceMeshMember makes the roll if there is none (created-by the member
    controller, no spec.members) and is a known member through its controlPlaneRef."""
    w = world_with_a_member()
    roll = w.get(SMMRS, CP, "default")
    assert roll is not None
    assert roll["metadata"]["annotations"]["maistra.io/created-by"] == (
        "servicemeshmember-controller"
    )
    assert "members" not in (roll.get("spec") or {})
    assert roll["status"]["configuredMembers"] == ["user1"]
    assert ready_of(w)[:2] == ("True", "Configured")
    member = w.get(SMMS, "user1", "default")
    assert member is not None
    ready = condition(member["status"], "Ready")
    assert ready is not None
    assert ready["status"] == "True"


def test_service_mesh_member_without_its_control_plane() -> None:
    w = FakeWorld()
    ns(w, "user1")
    w.add(
        SMMS,
        {
            "metadata": {"name": "default", "namespace": "user1"},
            "spec": {"controlPlaneRef": {"name": "basic", "namespace": CP}},
        },
    )
    run_all(w)
    member = w.get(SMMS, "user1", "default")
    assert member is not None
    assert status_of_condition(member["status"], "Reconciled") == (
        "False",
        "ErrorControlPlaneMissing",
        "the referenced ServiceMeshControlPlane object does not exist",
    )


def world_with_a_roll() -> tuple[FakeWorld, list[str]]:
    """A mesh and a roll listing user1, settled; the steps it took."""
    w = FakeWorld()
    ns(w, CP)
    ns(w, "user1")
    smcp(w)
    w.add(SMMRS, {"metadata": {"name": "default", "namespace": CP}, "spec": {"members": ["user1"]}})
    return w, run_all(w)


def test_the_roll_and_its_members_get_the_operator_s_finalizer_before_anything_else() -> None:
    """common.AddFinalizer: the first reconcile of a roll or member only adds the finalizer."""
    w, steps = world_with_a_roll()
    roll_steps = [st for st in steps if st.startswith("ServiceMeshMemberRoll:")]
    member_steps = [st for st in steps if st.startswith("ServiceMeshMember:")]
    assert roll_steps[0] == "ServiceMeshMemberRoll:add-finalizer"
    assert member_steps[0] == "ServiceMeshMember:add-finalizer"
    roll = w.get(SMMRS, CP, "default")
    member = w.get(SMMS, "user1", "default")
    assert roll is not None
    assert member is not None
    assert roll["metadata"]["finalizers"] == [FINALIZER]
    assert member["metadata"]["finalizers"] == [FINALIZER]
    assert ready_of(w)[:2] == ("True", "Configured")


def test_deleting_the_roll_cleans_its_members_then_lets_it_go() -> None:
    """memberroll finalizeObject: the members it created are deleted (each member's finalizer
    takes its namespace out of the mesh), Kiali loses its namespaces, then the roll goes."""
    w, _ = world_with_a_roll()
    labelled = w.get(NAMESPACES, None, "user1")
    assert labelled is not None
    assert labelled["metadata"]["labels"][MEMBER_OF] == CP

    w.perform(Action("delete", SMMRS, CP, "default"))
    marked = w.get(SMMRS, CP, "default")
    assert marked is not None
    assert marked["metadata"]["deletionTimestamp"]
    steps = run_all(w)
    assert "ServiceMeshMemberRoll:finalize" in steps
    assert "ServiceMeshMember:finalize" in steps
    assert w.get(SMMRS, CP, "default") is None
    assert w.get(SMMS, "user1", "default") is None
    left = w.get(NAMESPACES, None, "user1")
    assert left is not None
    assert MEMBER_OF not in (left["metadata"].get("labels") or {})
    kiali = w.get(KIALIS, CP, "kiali")
    assert kiali is not None
    assert kiali["spec"]["deployment"]["accessible_namespaces"] == []


def test_without_the_operator_the_finalizer_holds_the_roll() -> None:
    w = FakeWorld()
    ns(w, CP)
    smcp(w)
    w.add(SMMRS, {"metadata": {"name": "default", "namespace": CP}, "spec": {"members": []}})
    run_all(w)
    w.perform(Action("delete", SMMRS, CP, "default"))
    held = w.get(SMMRS, CP, "default")  # no controller ran: still there, marked
    assert held is not None
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == [FINALIZER]


def test_a_member_deleted_in_a_terminating_namespace_reports_it_and_lets_go() -> None:
    """member finalizeObject: removeNamespaceFromMesh refuses a terminating namespace; the
    error goes to the member's status (reportError returns no error), the finalizer goes."""
    w, _ = world_with_a_roll()
    terminating = w.get(NAMESPACES, None, "user1")
    assert terminating is not None
    terminating["metadata"]["deletionTimestamp"] = "2025-01-01T01:00:00Z"  # held: spec.finalizers
    w.store.update(NAMESPACES, terminating)
    w.perform(Action("delete", SMMS, "user1", "default"))
    smm = w.get(SMMS, "user1", "default")
    assert smm is not None
    (finalize,) = [
        t
        for t in SmmController().transitions(("user1", "default"), w.store, FAST)
        if t.step == "finalize"
    ]
    described = [a.describe() for a in finalize.actions]
    assert described == [
        "status ServiceMeshMember user1/default",
        "patch ServiceMeshMember user1/default",
    ]
    assert finalize.actions[0].body["conditions"][0]["reason"] == "ErrorRemovingNamespace"
    assert finalize.actions[0].body["conditions"][0]["message"] == "namespace is terminating"
    w.apply(finalize)
    assert w.get(SMMS, "user1", "default") is None


def test_the_last_member_takes_the_roll_its_controller_made_with_it() -> None:
    """removeMemberRollIfNeeded: a roll created by the member controller, with no
    spec.members and no other member, is deleted when its last member goes."""
    w = world_with_a_member()
    assert w.get(SMMRS, CP, "default") is not None
    w.perform(Action("delete", SMMS, "user1", "default"))
    run_all(w)
    assert w.get(SMMS, "user1", "default") is None
    assert w.get(SMMRS, CP, "default") is None
    left = w.get(NAMESPACES, None, "user1")
    assert left is not None
    assert MEMBER_OF not in (left["metadata"].get("labels") or {})


def test_kiali_reconciles_each_generation_like_an_ansible_operator() -> None:
    w = FakeWorld()
    w.add(
        KIALIS,
        {
            "metadata": {"name": "kiali", "namespace": CP},
            "spec": {"deployment": {"accessible_namespaces": [CP]}},
        },
    )
    assert run_all(w) == ["Kiali:running", "Kiali:successful"]
    kiali = w.get(KIALIS, CP, "kiali")
    assert kiali is not None
    running = condition(kiali["status"], "Running")
    assert running is not None
    assert (running["reason"], running["message"]) == ("Successful", "Awaiting next reconciliation")
    first = running["ansibleResult"]["completion"]
    assert "observedGeneration" not in kiali["status"]
    from devcluster.sim.engine import Action

    change = {"spec": {"kubernetes_config": {"excluded_workloads": ["CronJob"]}}}
    w.perform(Action("patch", KIALIS, CP, "kiali", change))
    assert run_all(w) == ["Kiali:running", "Kiali:successful"]
    kiali = w.get(KIALIS, CP, "kiali")
    assert kiali is not None
    assert kiali["metadata"]["annotations"][RECONCILED] == "2"
    running = condition(kiali["status"], "Running")
    assert running is not None
    assert running["ansibleResult"]["completion"] >= first


def test_kiali_failure_knob() -> None:
    """Written as ansible-operator does (see test_sim_kiali.py for the whole cycle)."""
    k = knobs.build(
        [("t", {"rules": [{"user": "user1", "kind": "Kiali", "fail": "Failed: bad spec"}]})]
    )
    w = FakeWorld()
    w.add(KIALIS, {"metadata": {"name": "kiali", "namespace": CP}, "spec": {}})
    ctl = KialiController()
    for step in ("running", "failed"):
        (due,) = ctl.transitions((CP, "kiali"), w.store, k)
        assert due.step == step
        w.apply(due)
    kiali = w.get(KIALIS, CP, "kiali")
    assert kiali is not None
    assert status_of_condition(kiali["status"], "Failure") == (
        "True",
        "Failed",
        "bad spec",
    )


def test_project_request_materialises_the_template_then_goes_away() -> None:
    w = FakeWorld()
    w.add(
        PROJECTREQUESTS,
        {
            "metadata": {"name": "user1", "annotations": {"openshift.io/requester": "alice"}},
            "displayName": "User 1",
        },
    )
    ctl = ProjectRequestController(with_projects=True)
    steps = w.settle(lambda: ctl.transitions("user1", w.store, FAST))
    assert steps == ["ProjectRequest:materialize"]
    namespace = w.get(NAMESPACES, None, "user1")
    assert namespace is not None
    assert namespace["metadata"]["annotations"]["openshift.io/requester"] == "alice"
    assert namespace["metadata"]["annotations"]["openshift.io/display-name"] == "User 1"
    binding = w.get(ROLEBINDINGS, "user1", "admin")
    assert binding is not None
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
    ]
    assert w.get(LIMITRANGES, "user1", "user1-core-resource-limits") is not None
    project = w.get(PROJECTS, None, "user1")
    assert project is not None
    assert project["status"]["phase"] == "Active"
    assert w.get(PROJECTREQUESTS, None, "user1") is None


def test_project_request_admission() -> None:
    assert admission_refusal("user1", namespace_exists=False) is None
    assert admission_refusal("user1", namespace_exists=True) == (
        409,
        "AlreadyExists",
        'project.project.openshift.io "user1" already exists',
    )
    refusal = admission_refusal("openshift-foo", namespace_exists=False)
    assert refusal is not None
    assert refusal[0] == 403


def test_smcp_admission_refuses_in_the_window_then_enforces_one_mesh() -> None:
    w = FakeWorld()
    k = knobs.build([], started_at=0.0)
    k.refuse_seconds = 1e12  # the start-up window, forever
    adm = Admission(w.store, lambda: k)
    req = {
        "uid": "1",
        "namespace": CP,
        "operation": "CREATE",
        "object": {"metadata": {"name": "basic"}, "spec": {"version": "v2.4"}},
    }
    answer = adm.validate_smcp(req)["response"]
    assert answer["allowed"] is False
    assert (answer["status"]["code"], answer["status"]["message"]) == (500, NOT_READY_MESSAGE)
    k.refuse_seconds = 0
    assert adm.validate_smcp(req)["response"]["allowed"] is True
    smcp(w, "other")
    answer = adm.validate_smcp(req)["response"]
    assert (answer["allowed"], answer["status"]["message"]) == (False, ONE_MESH_MESSAGE)
    bad = {**req, "object": {"metadata": {"name": "other"}, "spec": {"version": "v1.1"}}}
    assert adm.validate_smcp(bad)["response"]["status"]["code"] == 400


def test_smcp_one_mesh_rule_reads_the_live_list_not_a_lagging_informer() -> None:
    live: list[dict[str, Any]] = []
    k = knobs.build([], started_at=0.0)
    k.refuse_seconds = 0  # outside the start-up window
    adm = Admission(FakeWorld().store, lambda: k, lambda ns: live)
    req = {
        "uid": "2",
        "namespace": CP,
        "operation": "CREATE",
        "object": {"metadata": {"name": "another"}, "spec": {"version": "v2.4"}},
    }
    assert adm.validate_smcp(req)["response"]["allowed"] is True
    live.append({"metadata": {"name": "basic", "namespace": CP}})  # the informer has not seen it
    answer = adm.validate_smcp(req)["response"]
    assert (answer["allowed"], answer["status"]["message"]) == (False, ONE_MESH_MESSAGE)


def test_project_request_mutation_stamps_the_requester() -> None:
    adm = Admission(FakeWorld().store, lambda: FAST)
    req = {
        "uid": "9",
        "userInfo": {"username": "system:serviceaccount:ns:sa"},
        "object": {"metadata": {"name": "p"}},
    }
    answer = adm.mutate_project_request(req)["response"]
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch == [
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"openshift.io/requester": "system:serviceaccount:ns:sa"},
        }
    ]
    req["object"] = {"metadata": {"name": "p", "annotations": {"a": "b"}}}
    patch = json.loads(base64.b64decode(adm.mutate_project_request(req)["response"]["patch"]))
    assert patch[0]["path"] == "/metadata/annotations/openshift.io~1requester"


RUNNER_USER = {
    "username": "system:serviceaccount:workshop-runner:workshop-runner",
    "uid": "u-1",
    "groups": ["system:serviceaccounts", "system:authenticated"],
}


def smmr_request(members: list[str], old: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "uid": "7",
        "namespace": CP,
        "operation": "CREATE" if old is None else "UPDATE",
        "userInfo": RUNNER_USER,
        "object": {
            "metadata": {"name": "default", "namespace": CP},
            "spec": {"members": members, **spec},
        },
    }
    if old is not None:
        req["oldObject"] = {"metadata": {"name": "default"}, "spec": {"members": old}}
    return req


def smmr_admission(allowed_in: set[str]) -> tuple[Admission, list[tuple[str, str]]]:
    """The member-roll validator with an authorizer that allows pod updates in `allowed_in`
    ("" = cluster-wide); also returns the reviews it was asked for."""
    asked: list[tuple[str, str]] = []

    def review(user: dict[str, Any], attributes: dict[str, str]) -> bool:
        assert (attributes["verb"], attributes["resource"]) == ("update", "pods")
        asked.append((user["username"], attributes["namespace"]))
        return attributes["namespace"] in allowed_in

    return Admission(FakeWorld().store, lambda: FAST, review_access=review), asked


def test_smmr_admission_reviews_each_newly_added_namespace() -> None:
    adm, asked = smmr_admission({"bookinfo"})
    answer = adm.validate_smmr(smmr_request(["bookinfo", "user1"], old=["bookinfo"]))["response"]
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert answer["status"]["message"] == (
        "user 'system:serviceaccount:workshop-runner:workshop-runner' does not have "
        "permission to access namespace(s): [user1]"
    )
    # cluster-wide first, then only the namespace this update adds
    assert [ns for _, ns in asked] == ["", "user1"]
    adm, asked = smmr_admission({"user1"})
    answer = adm.validate_smmr(smmr_request(["bookinfo", "user1"], old=["bookinfo"]))["response"]
    assert answer["allowed"] is True


def test_smmr_admission_create_reviews_every_member_and_names_all_refused() -> None:
    adm, _ = smmr_admission(set())
    answer = adm.validate_smmr(smmr_request(["b", "a"]))["response"]
    assert answer["status"]["message"].endswith("access namespace(s): [a b]")


def test_smmr_admission_cluster_wide_permission_passes_without_per_namespace_reviews() -> None:
    adm, asked = smmr_admission({""})
    assert adm.validate_smmr(smmr_request(["*"]))["response"]["allowed"] is True
    assert asked == [(RUNNER_USER["username"], "")]


@pytest.mark.parametrize(
    "spec",
    [
        {"members": ["*"]},
        {"members": [], "memberSelectors": [{"matchLabels": {"mesh": "yes"}}]},
    ],
)
def test_smmr_admission_dynamic_members_need_cluster_wide_pod_rights(
    spec: dict[str, Any],
) -> None:
    adm, _ = smmr_admission({"user1"})
    req = smmr_request([])
    req["object"]["spec"] = spec
    answer = adm.validate_smmr(req)["response"]
    assert answer["status"]["code"] == 403
    assert answer["status"]["message"].startswith(
        "only users that are allowed to update pods at the cluster scope"
    )


def test_smmr_mutation_drops_the_mesh_namespace_from_the_members() -> None:
    adm, _ = smmr_admission(set())
    req = smmr_request(["user1", CP, "user2"])
    answer = adm.mutate_smmr(req)["response"]
    assert (answer["allowed"], answer["patchType"]) == (True, "JSONPatch")
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch == [{"op": "replace", "path": "/spec/members", "value": ["user1", "user2"]}]
    untouched = adm.mutate_smmr(smmr_request(["user1"]))["response"]
    assert untouched == {"uid": untouched["uid"], "allowed": True}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (["User1"], ".spec.members contains invalid value 'User1'"),
        (["a", "a"], "duplicate namespace in .spec.members: a"),
        (["*", "a"], "it must contain no other entries"),
        ([CP], "mesh project/namespace cannot be listed as a member"),
        (["taken"], "already defined in another ServiceMeshMemberRoll"),
    ],
)
def test_smmr_admission_bad_requests(members: list[str], message: str) -> None:
    adm, asked = smmr_admission({""})
    other = {"metadata": {"name": "default", "namespace": "other-istio"}}
    adm.store.update(SMMRS, {**other, "spec": {"members": ["taken"]}})
    answer = adm.validate_smmr(smmr_request(members))["response"]
    assert (answer["status"]["code"], answer["allowed"]) == (400, False)
    assert message in answer["status"]["message"]
    assert asked == []  # refused before any review


def test_smmr_admission_name_and_namespace_rules() -> None:
    adm, _ = smmr_admission({""})
    req = smmr_request(["user1"])
    req["object"]["metadata"]["name"] = "mine"
    assert adm.validate_smmr(req)["response"]["status"]["message"] == (
        "ServiceMeshMemberRoll must be named 'default'"
    )
    req = smmr_request(["user1"])
    req["namespace"] = "openshift-operators"
    assert (
        "same project/namespace as the operator"
        in (adm.validate_smmr(req)["response"]["status"]["message"])
    )
    req = smmr_request(["user1"], memberSelectors=[{"matchLabels": {"a": "b"}}])
    assert adm.validate_smmr(req)["response"]["status"]["message"] == (
        "combining .spec.members and .spec.memberSelectors is not allowed"
    )


@pytest.mark.parametrize(
    ("release", "version", "refusal"),
    [
        ("2.4", "v2.4", None),
        ("2.4", "v2.1", None),
        ("2.4", "", None),  # defaulted by the mutating webhook first
        ("2.4", "v2.0", "Only '[v2.1 v2.2 v2.3 v2.4]' versions are supported"),
        ("2.4", "v1.1", "Only '[v2.1 v2.2 v2.3 v2.4]' versions are supported"),
        ("2.4", "v2.5", "invalid Version specified; supported versions are: [v2.1 v2.2 v2.3 v2.4]"),
        ("2.4", "v1.0", "invalid Version specified; supported versions are: [v2.1 v2.2 v2.3 v2.4]"),
        ("2.5", "v2.5", None),
        ("2.5", "v2.1", "Only '[v2.2 v2.3 v2.4 v2.5]' versions are supported"),
        ("2.5", "v2.6", "invalid Version specified; supported versions are: [v2.2 v2.3 v2.4 v2.5]"),
    ],
)
def test_smcp_versions_by_operator_release(release: str, version: str, refusal: str | None) -> None:
    assert version_refusal(release, version) == refusal


def test_mesh_operator_knob() -> None:
    assert knobs.build([]).mesh_operator == "2.4"
    assert knobs.build([("t", {"mesh_operator": "2.5"})]).mesh_operator == "2.5"
    with pytest.raises(knobs.KnobError, match="mesh_operator must be one of"):
        knobs.build([("t", {"mesh_operator": "3.0"})])
    k = knobs.build([("t", {"mesh_operator": "2.5"})], started_at=0.0)
    k.refuse_seconds = 0
    adm = Admission(FakeWorld().store, lambda: k)
    req = {
        "uid": "3",
        "namespace": CP,
        "operation": "CREATE",
        "object": {"metadata": {"name": "basic"}, "spec": {"version": "v2.1"}},
    }
    answer = adm.validate_smcp(req)["response"]
    assert (answer["status"]["code"], answer["status"]["message"]) == (
        400,
        "Only '[v2.2 v2.3 v2.4 v2.5]' versions are supported",
    )


def smm_request(
    name: str = "default",
    namespace: str = "user1",
    ref: tuple[str, str] = (CP, "basic"),
    old_ref: tuple[str, str] | None = None,
) -> dict[str, Any]:
    def member(r: tuple[str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"controlPlaneRef": {"namespace": r[0], "name": r[1]}},
        }

    req: dict[str, Any] = {
        "uid": "u",
        "namespace": namespace,
        "operation": "CREATE" if old_ref is None else "UPDATE",
        "userInfo": {"username": "alice", "groups": ["devs"]},
        "object": member(ref),
    }
    if old_ref is not None:
        req["oldObject"] = member(old_ref)
    return req


def smm_admission(allowed: set[tuple[str, str]]) -> tuple[Admission, list[dict[str, str]]]:
    """The member validator with an authorizer that lets alice `use` the SMCPs in `allowed`."""
    asked: list[dict[str, str]] = []

    def review(user: dict[str, Any], attributes: dict[str, str]) -> bool:
        assert user["username"] == "alice"
        asked.append(attributes)
        return (attributes["namespace"], attributes["name"]) in allowed

    return Admission(FakeWorld().store, lambda: FAST, review_access=review), asked


def test_smm_admission_reviews_use_of_the_control_plane() -> None:
    adm, asked = smm_admission({(CP, "basic")})
    assert adm.validate_smm(smm_request())["response"]["allowed"] is True
    assert asked == [
        {
            "verb": "use",
            "group": "maistra.io",
            "resource": "servicemeshcontrolplanes",
            "name": "basic",
            "namespace": CP,
        }
    ]
    refused = adm.validate_smm(smm_request(ref=(CP, "other")))["response"]
    assert refused["allowed"] is False
    assert refused["status"]["code"] == 403
    assert refused["status"]["message"] == (
        f"user 'alice' does not have permission to use ServiceMeshControlPlane {CP}/other"
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (smm_request(name="mine"), 'the ServiceMeshMember resource must be named "default"'),
        (
            smm_request(namespace="openshift-operators"),
            "namespace where operator is installed cannot be added to any mesh",
        ),
        (
            smm_request(ref=(CP, "basic"), old_ref=(CP, "previous")),
            "mutation of .spec.controlPlaneRef isn't allowed",
        ),
    ],
)
def test_smm_admission_bad_requests_before_any_review(
    request_: dict[str, Any], message: str
) -> None:
    adm, asked = smm_admission({(CP, "basic"), (CP, "previous")})
    answer = adm.validate_smm(request_)["response"]
    assert (answer["allowed"], answer["status"]["code"]) == (False, 400)
    assert answer["status"]["message"] == message
    assert asked == []


def test_smm_admission_lets_a_member_being_deleted_through() -> None:
    adm, asked = smm_admission(set())
    request_ = smm_request(name="mine", old_ref=(CP, "previous"))
    request_["object"]["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert adm.validate_smm(request_)["response"]["allowed"] is True
    assert asked == []
    same = smm_request(old_ref=(CP, "basic"))  # an UPDATE that keeps the reference is reviewed
    assert adm.validate_smm(same)["response"]["allowed"] is False
    assert len(asked) == 1
