"""The mesh chain (smcp, member-roll, kiali): table-driven against a scripted cluster,
predicates from YAML fixtures of real objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runner.apierrors import translate
from runner.errors import (
    Forbidden,
    OperatorFailed,
    TemplateError,
    TransientError,
    WaitTimeout,
)
from runner.result import perform
from steps import kiali, member_roll, smcp
from tests.unit.stepkit import ScriptedKube, context, load, run, status_only, with_
from tests.unit.test_kube import api_error

Obj = dict[str, Any]


# -- smcp ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "state", "summary"),
    [
        ("smcp-ready.yaml", "done", "Ready (ComponentsReady)"),
        ("smcp-ready-stale.yaml", "pending", "observedGeneration 1 of generation 2"),
        (
            "smcp-installing.yaml",
            "pending",
            "observedGeneration (none) of generation 1; components ready 0/7",
        ),
        (
            "smcp-components-not-ready.yaml",
            "pending",
            "Ready=False (ComponentsNotReady: The following",
        ),
    ],
)
def test_smcp_ready(fixture: str, state: str, summary: str) -> None:
    verdict = smcp.ready(load(fixture))
    assert verdict.state == state
    assert summary in verdict.summary


def test_smcp_spec_from_parameters() -> None:
    states = [status_only(load("smcp-installing.yaml")), status_only(load("smcp-ready.yaml"))]
    result, kube = run(smcp, [], states)
    assert result.detail == "created ServiceMeshControlPlane user1-istio/workshop-install; Ready"
    spec = kube.objects[("ServiceMeshControlPlane", "user1-istio", "workshop-install")]["spec"]
    assert spec["version"] == "v2.4"
    assert spec["proxy"]["networking"]["trafficControl"]["outbound"]["policy"] == "REGISTRY_ONLY"
    assert spec["tracing"] == {"type": "Jaeger", "sampling": 10000}
    assert spec["addons"] == {
        "grafana": {"enabled": True},
        "kiali": {"enabled": True, "name": "kiali"},
        "prometheus": {"enabled": True},
    }


def test_smcp_ready_before_waiting_is_unchanged_on_rerun() -> None:
    _, first = run(smcp, [], [status_only(load("smcp-ready.yaml"))])
    live = first.objects[("ServiceMeshControlPlane", "user1-istio", "workshop-install")]
    result, again = run(smcp, [live])
    assert again.actions == []
    assert not result.changed


def test_smcp_timeout_names_the_last_conditions() -> None:
    with pytest.raises(WaitTimeout) as e:
        run(smcp, [], [status_only(load("smcp-components-not-ready.yaml"))], seconds=60)
    message = str(e.value)
    assert e.value.exit_code == 5
    assert "ServiceMeshControlPlane user1-istio/workshop-install" in message
    assert "components ready 3/7" in message
    assert "Ready=False (ComponentsNotReady: The following components" in message


@pytest.mark.parametrize(
    "message",
    [  # the apiserver's answers while the mesh operator's admission webhook is not serving
        'admission webhook "smcp.validation.maistra.io" denied the request: failed to call '
        'webhook: Post "https://maistra-admission-controller.openshift-operators.svc:443/'
        'validate-smcp?timeout=10s": no endpoints available for service',
        'Internal error occurred: failed calling webhook "smcp.validation.maistra.io": failed to '
        'call webhook: Post "https://maistra-admission-controller...": dial tcp: connect: '
        "connection refused",
    ],
)
def test_smcp_webhook_refusal_is_retried_by_the_kube_layer(message: str) -> None:
    error = translate(api_error(500, message), "apply", "ServiceMeshControlPlane a/b")
    assert isinstance(error, TransientError)


@pytest.mark.parametrize(
    "message",
    [  # maistra 2.4's SMCP validator: known but below the minimum / not known at all
        "Only '[v2.1 v2.2 v2.3 v2.4]' versions are supported",
        "invalid Version specified; supported versions are: [v2.1 v2.2 v2.3 v2.4]",
    ],
)
def test_smcp_version_refused_by_the_webhook_is_a_parameter_error(message: str) -> None:
    kube = ScriptedKube([], [])
    refusal = 'admission webhook "smcp.validation.maistra.io" denied the request: ' + message

    def refuse(desired: Obj, *, force: bool = False) -> Any:
        raise translate(api_error(400, refusal), "apply", "ServiceMeshControlPlane user1-istio/x")

    kube.apply = refuse  # type: ignore[method-assign]
    with pytest.raises(TemplateError, match=r"smcp_version 'v2\.4' is refused") as e:
        smcp.run(context(smcp, kube))
    assert message in str(e.value)
    assert "set smcp_version" in str(e.value)
    assert e.value.exit_code == 3


# -- member-roll --------------------------------------------------------------------------
CONFIGURED = load("smmr-configured.yaml")
READY = status_only(CONFIGURED)  # configured: bookinfo and user1


def smmr(members: list[str], **status: Any) -> Obj:
    obj = copy.deepcopy(CONFIGURED)
    obj["spec"]["members"] = members
    obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("fixture", "state", "summary"),
    [
        ("smmr-configured.yaml", "done", "configured user1"),
        (
            "smmr-pending.yaml",
            "pending",
            "Ready=False (ReconcileError: The following namespaces are not yet configured: [user1]",
        ),
        ("smmr-stale.yaml", "pending", "observedGeneration 1 of generation 2"),
    ],
)
def test_member_roll_configured(fixture: str, state: str, summary: str) -> None:
    verdict = member_roll.configured(["user1"])(load(fixture))
    assert (verdict.state, summary in verdict.summary) == (state, True), verdict.summary


@pytest.mark.parametrize(
    ("existing", "actions", "members", "detail"),
    [
        (
            [],
            ["create ServiceMeshMemberRoll user1-istio/default"],
            ["user1"],
            "created ServiceMeshMemberRoll user1-istio/default with user1",
        ),
        (
            [smmr(["bookinfo"])],
            ["patch ServiceMeshMemberRoll user1-istio/default"],
            ["bookinfo", "user1"],
            "added user1 to ServiceMeshMemberRoll user1-istio/default; kept bookinfo",
        ),
        ([smmr(["user1", "bookinfo"])], [], ["user1", "bookinfo"], "user1 already in"),
    ],
)
def test_member_roll_merges(
    existing: list[Obj], actions: list[str], members: list[str], detail: str
) -> None:
    result, kube = run(member_roll, existing, [READY])
    assert kube.actions == actions
    live = kube.objects[("ServiceMeshMemberRoll", "user1-istio", "default")]
    assert live["spec"]["members"] == members
    assert result.detail.startswith(detail)
    assert result.detail.endswith("; configured")


def test_member_roll_conflict_keeps_a_member_added_meanwhile() -> None:
    kube = ScriptedKube([smmr(["bookinfo"])], [READY])
    what = "ServiceMeshMemberRoll user1-istio/default"

    def someone_adds_a_member(_: str, live: Obj, patch: Obj) -> None:
        if live["spec"]["members"] == ["bookinfo"]:  # between our read and our write
            live["spec"]["members"] = ["bookinfo", "travel"]
            live["metadata"]["resourceVersion"] = "999"

    kube.on_patch = someone_adds_a_member
    kube.conflicts[what] = 0
    result = member_roll.run(context(member_roll, kube))
    assert [p["spec"]["members"] for _, p in kube.patches] == [
        ["bookinfo", "user1"],
        ["bookinfo", "travel", "user1"],
    ]
    assert kube.objects[("ServiceMeshMemberRoll", "user1-istio", "default")]["spec"]["members"] == [
        "bookinfo",
        "travel",
        "user1",
    ]
    assert "kept bookinfo, travel" in result.detail


def test_member_roll_created_by_someone_else_meanwhile_is_merged_into() -> None:
    kube = ScriptedKube([], [READY])
    theirs = smmr(["bookinfo"])
    original_create = kube.create

    def create_loses_the_race(body: Obj) -> Any:
        kube.objects[kube.key(theirs)] = copy.deepcopy(theirs)
        return original_create(body)

    kube.create = create_loses_the_race  # type: ignore[method-assign]
    result = member_roll.run(context(member_roll, kube))
    assert "added user1" in result.detail
    assert "kept bookinfo" in result.detail


@pytest.mark.parametrize(
    ("existing", "actions", "reads", "members"),
    [
        ([], ["create ServiceMeshMemberRoll user1-istio/default"], 0, ["user1"]),
        (  # someone was quicker: the create's 409 sends it to the read-merge-write
            [smmr(["bookinfo"])],
            [
                "create ServiceMeshMemberRoll user1-istio/default",
                "patch ServiceMeshMemberRoll user1-istio/default",
            ],
            1,
            ["bookinfo", "user1"],
        ),
    ],
)
def test_member_roll_in_a_namespace_this_run_created_creates_without_reading(
    existing: list[Obj], actions: list[str], reads: int, members: list[str]
) -> None:
    kube = ScriptedKube(copy.deepcopy(existing), [READY])
    kube.fresh_namespaces.add("user1-istio")
    gets: list[str] = []
    original_get = kube.get

    def counting_get(api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        gets.append(kind)
        return original_get(api_version, kind, name, namespace)

    kube.get = counting_get  # type: ignore[method-assign]
    result = member_roll.run(context(member_roll, kube))
    assert kube.actions == actions
    assert gets.count("ServiceMeshMemberRoll") == reads
    live = kube.objects[("ServiceMeshMemberRoll", "user1-istio", "default")]
    assert live["spec"]["members"] == members
    assert result.detail.endswith("; configured")


def test_member_roll_timeout_reports_status() -> None:
    with pytest.raises(
        WaitTimeout, match="configuredMembers=\\[\\]; Ready=False \\(ReconcileError"
    ):
        run(member_roll, [], [load("smmr-pending.yaml")], seconds=60)


def test_member_roll_undo_removes_only_the_user() -> None:
    kube = ScriptedKube([smmr(["bookinfo", "user1", "travel"])], [])
    result = member_roll.undo(context(member_roll, kube))
    assert kube.objects[("ServiceMeshMemberRoll", "user1-istio", "default")]["spec"]["members"] == [
        "bookinfo",
        "travel",
    ]
    assert result.changed
    assert not member_roll.undo(context(member_roll, kube)).changed


def test_member_roll_dry_run_creates_nothing() -> None:
    result, kube = run(member_roll, [], [], dry_run=True)
    assert kube.objects == {}
    assert result.detail.startswith("would create ServiceMeshMemberRoll user1-istio/default")


WEBHOOK_403 = (
    "create ServiceMeshMemberRoll user1-istio/default: admission webhook "
    '"smmr.validation.maistra.io" denied the request: user '
    "'system:serviceaccount:workshop-runner:workshop-runner' does not have permission to "
    "access namespace(s): [user1]"
)
MESH_MEMBER = ("RoleBinding", "user1", "workshop-runner-mesh-member")
RUNNER_SA = "system:serviceaccount:workshop-runner:workshop-runner"


def refusing_kube(refusals: int, objects: list[Obj] | None = None) -> ScriptedKube:
    """An identity without pod rights in user1, whose roll writes Maistra's webhook refuses
    `refusals` times (RBAC caches behind the binding)."""
    kube = ScriptedKube(copy.deepcopy(objects or []), [READY])
    kube.pod_updaters = set()
    original_create = kube.create
    left = [refusals]

    def create(body: Obj) -> Any:
        if body["kind"] == "ServiceMeshMemberRoll" and left[0] > 0:
            left[0] -= 1
            raise Forbidden(WEBHOOK_403)
        return original_create(body)

    kube.create = create  # type: ignore[method-assign]
    return kube


def test_member_roll_binds_the_mesh_member_role_to_itself_where_it_may_not_update_pods() -> None:
    kube = refusing_kube(refusals=1)  # the first write races the RBAC cache: retried
    result = member_roll.run(context(member_roll, kube))
    binding = kube.objects[MESH_MEMBER]
    assert binding["roleRef"]["name"] == "workshop-runner-mesh-member"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "workshop-runner", "namespace": "workshop-runner"}
    ]
    assert kube.actions == [
        "apply RoleBinding user1/workshop-runner-mesh-member",
        "create ServiceMeshMemberRoll user1-istio/default",
    ]
    assert result.detail.startswith("bound workshop-runner-mesh-member in user1; created")
    assert result.changed


def test_member_roll_binds_nothing_where_the_identity_may_update_pods() -> None:
    result, kube = run(member_roll, [], [READY])  # the fake's default: a cluster admin
    assert MESH_MEMBER not in kube.objects
    assert kube.username_asked == 0
    assert result.detail.startswith("created ServiceMeshMemberRoll")


def test_member_roll_refused_without_a_new_binding_is_exit_4_with_a_hint() -> None:
    existing = load_template_binding()
    existing["subjects"] = [member_roll.rbac_subject(RUNNER_SA)]
    kube = refusing_kube(refusals=5, objects=[existing])  # e.g. the ClusterRole is missing
    with pytest.raises(Forbidden, match=r"access namespace\(s\): \[user1\] .*is that ClusterRole"):
        member_roll.run(context(member_roll, kube))
    assert Forbidden.exit_code == 4


def test_member_roll_dry_run_asks_the_webhook_and_expects_its_refusal_without_the_binding() -> None:
    kube = refusing_kube(refusals=5)
    kube.dry_run = True
    refusing, asked = kube.create, []

    def create(body: Obj) -> Any:
        asked.append(body["kind"])
        return refusing(body)

    kube.create = create  # type: ignore[method-assign]
    result = perform(member_roll.run, context(member_roll, kube))
    assert kube.objects == {}
    # the roll's write was sent (dry-run) and the webhook asked once: no retry in a dry run
    assert asked == ["ServiceMeshMemberRoll"]
    assert result.detail == (
        "would bind workshop-runner-mesh-member in user1; dry-run: refused as expected "
        f"without the grant it did not make ({WEBHOOK_403})"
    )
    assert result.changed


def test_member_roll_dry_run_refused_for_another_reason_is_an_error() -> None:
    kube = refusing_kube(refusals=0)
    kube.dry_run = True

    def refuse(body: Obj) -> Any:
        raise Forbidden("create ServiceMeshMemberRoll user1-istio/default: forbidden by RBAC")

    kube.create = refuse  # type: ignore[method-assign]
    with pytest.raises(Forbidden, match="forbidden by RBAC"):
        perform(member_roll.run, context(member_roll, kube))


@pytest.mark.parametrize(
    ("username", "subject"),
    [
        (
            "system:serviceaccount:ns1:sa1",
            {"kind": "ServiceAccount", "name": "sa1", "namespace": "ns1"},
        ),
        ("alice", {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}),
        (
            "system:admin",
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:admin"},
        ),
    ],
)
def test_rbac_subject(username: str, subject: Obj) -> None:
    assert member_roll.rbac_subject(username) == subject


def test_member_roll_undo_also_deletes_the_mesh_member_binding() -> None:
    kube = ScriptedKube([smmr(["user1"]), load_template_binding()], [])
    result = member_roll.undo(context(member_roll, kube))
    assert MESH_MEMBER not in kube.objects
    assert result.detail == (
        "removed user1 from ServiceMeshMemberRoll user1-istio/default; "
        "deleted RoleBinding user1/workshop-runner-mesh-member"
    )


def load_template_binding() -> Obj:
    kube = ScriptedKube([], [])
    binding: Obj = context(member_roll, kube).object(member_roll.ACCESS_TEMPLATE)
    return binding


# -- kiali --------------------------------------------------------------------------------
SUCCESSFUL = load("kiali-successful.yaml")
RUNNING = load("kiali-running.yaml")
FAILED = load("kiali-failed.yaml")
RETRYING = load("kiali-retrying.yaml")
AD_HOC_IMAGE = "The operator is forbidden from accepting a Kiali CR that defines an ad hoc"
# The patch's answer: our change (generation 3) with the status at the time of the write.
IDLE = with_(SUCCESSFUL, metadata={"generation": 3})
BUSY = with_(RUNNING, metadata={"generation": 3})
AFTER_FAILURE = with_(FAILED, metadata={"generation": 3})


def succeeded_at(stamp: str, obj: Obj = SUCCESSFUL) -> Obj:
    """A run that ended with another record (ansibleResult.completion is part of it)."""
    out = copy.deepcopy(obj)
    out["status"]["conditions"][0]["ansibleResult"]["completion"] = stamp
    return out


def failed_at(stamp: str) -> Obj:
    out = copy.deepcopy(FAILED)
    out["status"]["conditions"][1]["ansibleResult"]["completion"] = stamp
    return out


NEXT_SUCCESS = succeeded_at("2024-03-05T10:18:03.2")
NEXT_FAILURE = failed_at("2024-03-05T10:18:40.5")
LATER_SUCCESS = succeeded_at("2024-03-05T10:19:12.7")
LATER_FAILURE = failed_at("2024-03-05T10:19:30.1")


@pytest.mark.parametrize(
    ("written", "current", "expected"),
    [
        # no change of ours: the last run must have succeeded (and not be running)
        (None, SUCCESSFUL, "done"),
        (None, RUNNING, "pending"),
        (None, FAILED, "failed"),
        (None, RETRYING, "pending"),  # ansible-operator's retry of a failed run, in progress
        (None, None, "pending"),
        # after our change, with no run going at the write: only a run that ended since counts
        (IDLE, IDLE, "pending"),  # the patch's own answer
        (IDLE, SUCCESSFUL, "pending"),  # the same end record: the run before our change
        (IDLE, RUNNING, "pending"),
        (IDLE, NEXT_SUCCESS, "done"),
        (IDLE, FAILED, "failed"),  # Running's record was the last; a failure since is new
        # a failure keeps Running's reason "Running" (status False): failed, not in progress
        (AFTER_FAILURE, FAILED, "pending"),  # the failure from before our change
        (AFTER_FAILURE, RETRYING, "pending"),
        (AFTER_FAILURE, NEXT_FAILURE, "failed"),
        (AFTER_FAILURE, NEXT_SUCCESS, "done"),
        # a run that shows only in the patch's answer may have started after a first
        # attempt whose answer was lost: its end counts
        (BUSY, RUNNING, "pending"),
        (BUSY, NEXT_SUCCESS, "done"),
        (BUSY, FAILED, "failed"),
        # an operator that writes observedGeneration is followed by it
        (IDLE, with_(NEXT_SUCCESS, status={"observedGeneration": 2}), "pending"),
        (IDLE, with_(SUCCESSFUL, status={"observedGeneration": 3}), "done"),
        (IDLE, with_(RUNNING, status={"observedGeneration": 3}), "pending"),
    ],
)
def test_kiali_reconciled(written: Obj | None, current: Obj | None, expected: str) -> None:
    assert kiali.reconciled(written, current).state == expected


@pytest.mark.parametrize(
    ("ended", "current", "expected"),
    [
        (NEXT_SUCCESS, NEXT_SUCCESS, "pending"),  # the end of the run going at the write
        (NEXT_SUCCESS, RUNNING, "pending"),  # the run after it, going
        (NEXT_SUCCESS, LATER_SUCCESS, "done"),  # ... and ended
        (NEXT_SUCCESS, LATER_FAILURE, "failed"),
        (NEXT_FAILURE, LATER_SUCCESS, "done"),  # the run going at the write had failed
    ],
)
def test_kiali_reconciled_after_a_run_going_at_the_write(
    ended: Any, current: Obj, expected: str
) -> None:
    # read before the patch, the same run was already going: it read the object before it
    verdict = kiali.reconciled(BUSY, current, kiali.last_run(ended), before=RUNNING)
    assert verdict.state == expected


@pytest.mark.parametrize("current", [NEXT_SUCCESS, FAILED])
def test_kiali_the_end_of_a_run_going_since_before_the_write_does_not_count(
    current: Obj,
) -> None:
    assert kiali.reconciled(BUSY, current, before=RUNNING).state == "pending"


def test_kiali_wait_needs_the_run_after_the_one_going_at_the_write() -> None:
    # what the wait sees after a patch made while a run was going: that run ends, the work
    # queue runs the key once more, and only that run's end is the reconcile of our change
    predicate = kiali.reconciliation_of(BUSY, RUNNING)
    seen = [BUSY, NEXT_SUCCESS, RUNNING, LATER_SUCCESS]
    assert [predicate(obj).state for obj in seen] == ["pending", "pending", "pending", "done"]
    # the same answer after reading an idle CR: that run started after our (first) write
    predicate = kiali.reconciliation_of(BUSY, SUCCESSFUL)
    assert [predicate(obj).state for obj in seen[:2]] == ["pending", "done"]


def test_kiali_reconciled_is_a_function_of_its_arguments_alone() -> None:
    # the same pair, asked again and in another order, gives the same answer (no state, no clock)
    pairs = [(IDLE, NEXT_SUCCESS), (IDLE, SUCCESSFUL), (IDLE, FAILED), (None, RUNNING)]
    first = [kiali.reconciled(w, c) for w, c in pairs]
    again = [kiali.reconciled(w, c) for w, c in reversed(pairs)]
    assert first == list(reversed(again))
    assert [v.state for v in first] == ["done", "pending", "failed", "pending"]


def test_kiali_failure_message() -> None:
    verdict = kiali.reconciled(None, FAILED)
    assert verdict.summary.startswith(f"reconciliation failed: {AD_HOC_IMAGE} Kiali image [")


@pytest.mark.parametrize(
    ("fixture", "state"),
    [(SUCCESSFUL, "successful"), (RUNNING, "running"), (FAILED, "failed"), (RETRYING, "running")],
)
def test_kiali_run_state_of_ansible_operator_conditions(fixture: Obj, state: str) -> None:
    assert kiali.run_state(fixture) == state


def test_kiali_sets_only_excluded_workloads_once_the_smcp_made_the_cr() -> None:
    patched_running = with_(RUNNING, metadata={"generation": 3})
    done = copy.deepcopy(NEXT_SUCCESS)  # a run's end after our patch: a new end record
    done["spec"]["kubernetes_config"] = {
        "excluded_workloads": ["CronJob", "Job", "ReplicationController"]
    }
    kube = ScriptedKube([], [SUCCESSFUL])  # the SMCP creates the CR while we wait
    ctx = context(kiali, kube)
    # after our patch: the operator starts a run, then ends it
    kube.on_patch = lambda *_: kube.script.extend([patched_running, done])
    result = kiali.run(ctx)
    assert kube.patches == [
        (
            "Kiali user1-istio/kiali",
            {
                "spec": {
                    "kubernetes_config": {
                        "excluded_workloads": ["CronJob", "Job", "ReplicationController"]
                    }
                }
            },
        )
    ]
    live = kube.objects[("Kiali", "user1-istio", "kiali")]
    assert live["spec"]["deployment"]["accessible_namespaces"] == ["user1"]
    assert result.changed
    assert result.detail.endswith("; reconciled")


def test_kiali_rerun_is_unchanged() -> None:
    done = copy.deepcopy(SUCCESSFUL)
    done["spec"]["kubernetes_config"] = {
        "excluded_workloads": ["CronJob", "Job", "ReplicationController"]
    }
    result, kube = run(kiali, [done])
    assert kube.patches == []
    assert not result.changed


def test_kiali_refuses_to_exclude_deploymentconfig() -> None:
    with pytest.raises(TemplateError, match="DeploymentConfig"):
        run(kiali, [SUCCESSFUL], params={"kiali_excluded_workloads": ["DeploymentConfig"]})


def test_kiali_failed_reconcile_after_the_change_is_exit_6() -> None:
    kube = ScriptedKube([copy.deepcopy(SUCCESSFUL)], [])
    kube.on_patch = lambda *_: kube.script.extend([RUNNING, FAILED])
    with pytest.raises(OperatorFailed, match=AD_HOC_IMAGE) as e:
        kiali.run(context(kiali, kube))
    assert e.value.exit_code == 6


def test_kiali_missing_cr_times_out() -> None:
    with pytest.raises(WaitTimeout, match="not created by the SMCP yet"):
        run(kiali, [], [], seconds=60)


def test_smcp_undo_deletes_and_waits_until_gone() -> None:
    live = load("smcp-ready.yaml")
    kube = ScriptedKube([live], [])
    result = smcp.undo(context(smcp, kube))
    assert kube.actions == ["delete ServiceMeshControlPlane user1-istio/workshop-install"]
    assert result.changed
    assert not smcp.undo(context(smcp, kube)).changed
    assert smcp.gone([live]).summary == "deleting; finalizers maistra.io/istio-operator"
