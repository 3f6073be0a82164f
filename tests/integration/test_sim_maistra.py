"""Simulated Maistra, Kiali and OpenShift projects against the real API server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devcluster.sim.kube import (
    CATALOGSOURCES,
    KIALIS,
    LIMITRANGES,
    NAMESPACES,
    NETWORKPOLICIES,
    PROJECTREQUESTS,
    PROJECTS,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SMCPS,
    SMMRS,
    SMMS,
    Kube,
    KubeError,
    Resource,
)
from devcluster.sim.maistra import MEMBER_OF
from devcluster.sim.objects import condition
from devcluster.sim.testkit import WORKSHOP_SMCP_SPEC, cond_is, namespaces, smcp
from devcluster.sim.waiting import wait_for, wait_list
from devcluster.sim.webhook import NOT_READY_MESSAGE, ONE_MESH_MESSAGE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def smcp_ready(obj: dict[str, Any]) -> bool:
    observed = (obj.get("status") or {}).get("observedGeneration")
    ready: bool = cond_is("Ready", "True", "ComponentsReady")(obj)
    return ready and observed == obj["metadata"].get("generation")


def create_smcp(kube: Kube, namespace: str, **kw: Any) -> dict[str, Any]:
    return kube.create(SMCPS, namespace, smcp(namespace, **kw))


@pytest.fixture(autouse=True)
def startup_window_over(simulators: Any) -> None:
    """SMCP creates are refused for a moment after the simulators start (like a freshly
    installed mesh operator); these tests start after that window."""
    simulators.wait_webhook_open("startup", timeout=60)


def test_smcp_reaches_ready_and_creates_the_kiali_cr(kube: Kube, istio: str) -> None:
    create_smcp(kube, istio)
    obj = wait_for(kube, SMCPS, istio, "workshop-install", smcp_ready, timeout=30)
    st = obj["status"]
    for ctype in ("Installed", "Reconciled"):
        cond = condition(st, ctype)
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("True", "InstallSuccessful")
    assert "istiod" in st["readiness"]["components"]["ready"]
    assert st["readiness"]["components"]["unready"] == []
    kiali = kube.get(KIALIS, istio, "kiali")
    assert kiali["metadata"]["ownerReferences"][0]["name"] == "workshop-install"


def test_smcp_update_is_reconciled_as_a_new_generation(kube: Kube, istio: str) -> None:
    create_smcp(kube, istio)
    wait_for(kube, SMCPS, istio, "workshop-install", smcp_ready, timeout=30)
    kube.patch(SMCPS, istio, "workshop-install", {"spec": {"tracing": {"sampling": 100}}})
    obj = wait_for(
        kube,
        SMCPS,
        istio,
        "workshop-install",
        lambda o: (o.get("status") or {}).get("observedGeneration") == 2,
        timeout=30,
    )
    assert cond_is("Reconciled", "True", "UpdateSuccessful")(obj)


def test_webhook_refuses_smcp_in_its_window_then_accepts(
    kube: Kube, istio: str, sim_knobs: Any
) -> None:
    sim_knobs.set({"kind": "webhook", "refuse_for": 2})
    with pytest.raises(KubeError) as refused:
        kube.create(SMCPS, istio, smcp(istio))
    assert refused.value.status == 500
    assert (
        'admission webhook "smcp.validation.maistra.io" denied the request' in refused.value.message
    )
    assert NOT_READY_MESSAGE in refused.value.message
    sim_knobs.wait_webhook_open(timeout=20)
    kube.create(SMCPS, istio, smcp(istio))
    with pytest.raises(KubeError) as second:
        kube.create(SMCPS, istio, smcp(istio, name="another"))
    assert second.value.status == 400
    assert ONE_MESH_MESSAGE in second.value.message


def test_member_roll_pending_then_configured(kube: Kube, istio: str, unique_user: str) -> None:
    apps = f"{unique_user}-apps"
    kube.create(
        SMMRS, istio, {"metadata": {"name": "default"}, "spec": {"members": [unique_user, apps]}}
    )
    wait_for(kube, SMMRS, istio, "default", cond_is("Ready", "False", "ErrSMCPMissing"), timeout=20)
    create_smcp(kube, istio)
    roll = wait_for(
        kube,
        SMMRS,
        istio,
        "default",
        lambda o: (
            cond_is("Ready", "False", "ReconcileError")(o)
            and o["status"]["pendingMembers"] == [apps]  # unique_user up to date with the mesh
        ),
        timeout=30,
    )
    assert roll["status"]["configuredMembers"] == [unique_user]
    ready = condition(roll["status"], "Ready") or {}
    assert ready["message"] == f"The following namespaces are not yet configured: [{apps}]"
    assert roll["status"]["pendingMembers"] == [apps]
    with namespaces(kube, apps):
        roll = wait_for(
            kube, SMMRS, istio, "default", cond_is("Ready", "True", "Configured"), timeout=30
        )
        assert roll["status"]["configuredMembers"] == sorted([unique_user, apps])
        assert roll["status"]["pendingMembers"] == []
        kiali = wait_for(
            kube,
            KIALIS,
            istio,
            "kiali",
            lambda o: (
                sorted(o["spec"]["deployment"]["accessible_namespaces"])
                == sorted([unique_user, apps])
            ),
            timeout=20,
        )
        assert kiali["spec"]["deployment"]["accessible_namespaces"]
        member = wait_for(
            kube,
            NAMESPACES,
            None,
            apps,
            lambda o: o["metadata"].get("labels", {}).get(MEMBER_OF) == istio,
            timeout=20,
        )
        assert member


def test_member_roll_follows_the_mesh_generation_without_waiting_for_ready(
    kube: Kube, istio: str, unique_user: str, sim_knobs: Any
) -> None:
    """2.4 has no SMCPReconciling: members are configured as soon as their ServiceMeshMember
    is reconciled, and re-reconciled when the mesh's generation moves on."""
    sim_knobs.set({"kind": "SMCP", "delay": 1.0, "jitter": 0})
    create_smcp(kube, istio)
    kube.create(SMMRS, istio, {"metadata": {"name": "default"}, "spec": {"members": [unique_user]}})
    roll = wait_for(
        kube,
        SMMRS,
        istio,
        "default",
        lambda o: cond_is("Ready", "True", "Configured")(o) and o["status"]["meshGeneration"] == 1,
        timeout=30,
    )
    assert roll["status"]["meshReconciledVersion"] == "2.4.5-0-1"
    member = kube.get(SMMS, unique_user, "default")
    assert member["status"]["meshReconciledVersion"] == "2.4.5-0-1"


def test_service_mesh_member_adds_its_namespace(kube: Kube, istio: str, unique_user: str) -> None:
    create_smcp(kube, istio)
    body = {
        "metadata": {"name": "default"},
        "spec": {"controlPlaneRef": {"name": "workshop-install", "namespace": istio}},
    }
    kube.create(SMMS, unique_user, body)
    wait_for(kube, SMMS, unique_user, "default", cond_is("Ready", "True"), timeout=30)
    roll = wait_for(
        kube, SMMRS, istio, "default", cond_is("Ready", "True", "Configured"), timeout=30
    )
    assert "members" not in (roll.get("spec") or {})  # 2.4: known through the member itself
    assert roll["status"]["configuredMembers"] == [unique_user]


def test_smcp_slow_and_failing_knobs(kube: Kube, istio: str, sim_knobs: Any) -> None:
    sim_knobs.set({"kind": "SMCP", "delay": 1.0, "jitter": 0})
    start = time.monotonic()
    create_smcp(kube, istio)
    wait_for(kube, SMCPS, istio, "workshop-install", smcp_ready, timeout=30)
    assert time.monotonic() - start >= 3.0  # three transitions of 1 s
    sim_knobs.set({"kind": "SMCP", "fail": "ReconcileError: simulated chart failure"})
    kube.patch(SMCPS, istio, "workshop-install", {"spec": {"tracing": {"sampling": 50}}})
    obj = wait_for(
        kube,
        SMCPS,
        istio,
        "workshop-install",
        cond_is("Reconciled", "False", "ReconcileError"),
        timeout=30,
    )
    assert "simulated chart failure" in condition(obj["status"], "Reconciled")["message"]  # type: ignore[index]
    assert obj["status"]["observedGeneration"] == 1


def completion(obj: dict[str, Any]) -> str:
    running = condition(obj.get("status") or {}, "Running") or {}
    return str((running.get("ansibleResult") or {}).get("completion", ""))


def test_kiali_reconciles_a_spec_change(kube: Kube, istio: str) -> None:
    kube.create(
        KIALIS,
        istio,
        {"metadata": {"name": "kiali"}, "spec": {"deployment": {"accessible_namespaces": [istio]}}},
    )
    first = wait_for(kube, KIALIS, istio, "kiali", cond_is("Successful", "True"), timeout=20)
    before = completion(first)
    change = {"spec": {"kubernetes_config": {"excluded_workloads": ["CronJob", "Job"]}}}
    kube.patch(KIALIS, istio, "kiali", change)
    after = wait_for(
        kube,
        KIALIS,
        istio,
        "kiali",
        lambda o: cond_is("Successful", "True")(o) and completion(o) > before,
        timeout=20,
    )
    running = condition(after["status"], "Running")
    assert running is not None
    assert (running["reason"], running["message"]) == ("Successful", "Awaiting next reconciliation")


def test_kiali_failure_knob(kube: Kube, istio: str, sim_knobs: Any) -> None:
    sim_knobs.set({"kind": "Kiali", "fail": "Failed: simulated ansible task failure"})
    kube.create(KIALIS, istio, {"metadata": {"name": "kiali"}, "spec": {}})
    obj = wait_for(kube, KIALIS, istio, "kiali", cond_is("Failure", "True", "Failed"), timeout=20)
    assert condition(obj["status"], "Failure")["message"] == "simulated ansible task failure"  # type: ignore[index]


def test_project_request_becomes_a_project(kube: Kube, unique_user: str) -> None:
    name = f"{unique_user}-proj"
    kube.create(PROJECTREQUESTS, None, {"metadata": {"name": name}, "displayName": "Workshop"})
    try:
        ns = wait_for(kube, NAMESPACES, None, name, lambda o: True, timeout=20)
        assert ns["metadata"]["annotations"]["openshift.io/requester"] == "devcluster-admin"
        assert ns["metadata"]["annotations"]["openshift.io/display-name"] == "Workshop"
        wait_for(
            kube, LIMITRANGES, name, f"{name}-core-resource-limits", lambda o: True, timeout=20
        )
        binding = wait_for(kube, ROLEBINDINGS, name, "admin", lambda o: True, timeout=20)
        assert binding["subjects"][0]["name"] == "devcluster-admin"
        wait_for(
            kube,
            PROJECTS,
            None,
            name,
            lambda o: (o.get("status") or {}).get("phase") == "Active",
            timeout=20,
        )
        # Create-only, as on OpenShift: the request itself does not stay, and a re-run conflicts.
        wait_list(
            kube,
            PROJECTREQUESTS,
            None,
            lambda items: True if all(i["metadata"]["name"] != name for i in items) else None,
            timeout=20,
        )
        with pytest.raises(KubeError) as again:
            kube.create(PROJECTREQUESTS, None, {"metadata": {"name": name}})
        assert again.value.status == 409
        assert f'project.project.openshift.io "{name}" already exists' in again.value.message
    finally:
        kube.delete(NAMESPACES, None, name)
        kube.delete(PROJECTS, None, name)


def writer_client(
    kube: Kube, cluster: Any, namespace: str, writer: str, rules: list[dict[str, Any]]
) -> Any:
    """A ServiceAccount `writer` in `namespace`, allowed `rules` there: its API client."""
    from kubernetes import config

    kube.create(SERVICEACCOUNTS, namespace, {"metadata": {"name": writer}})
    sa = {"kind": "ServiceAccount", "name": writer, "namespace": namespace}
    kube.create(ROLES, namespace, {"metadata": {"name": writer}, "rules": rules})
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": writer}
    binding = {"metadata": {"name": writer}, "roleRef": ref, "subjects": [sa]}
    kube.create(ROLEBINDINGS, namespace, binding)
    return config.new_client_from_config(config_file=str(cluster.sa_kubeconfig(namespace, writer)))


def create_as(api: Any, namespace: str, plural: str, body: dict[str, Any]) -> tuple[int, str]:
    """(HTTP status, the refusal's message) of a create through `api`."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "maistra.io", "v1", namespace, plural, body
        )
    except ApiException as e:
        return int(e.status), str(json.loads(e.body).get("message"))
    return 201, ""


def until(attempt: Any, wanted: tuple[int, str], meanwhile: tuple[int, str] | None) -> None:
    """RBAC reaches the authorizer's cache asynchronously: retry `attempt` until it answers
    `wanted`, accepting only `meanwhile` (None: any 403) before that."""
    deadline = time.monotonic() + 15
    while (answer := attempt()) != wanted and time.monotonic() < deadline:
        assert answer == meanwhile if meanwhile else answer[0] == 403, answer
        time.sleep(0.2)
    assert answer == wanted


def test_member_roll_webhook_reviews_the_writer_s_pod_rights(
    kube: Kube, istio: str, unique_user: str, cluster: Any
) -> None:
    """smmr.validation.maistra.io makes a real SubjectAccessReview (update pods) for the
    identity writing the roll, in each namespace it adds: refused, with Maistra's message,
    until that identity may update pods there."""
    writer = "mesh-writer"
    rules = [
        {
            "apiGroups": ["maistra.io"],
            "resources": ["servicemeshmemberrolls"],
            "verbs": ["create", "get"],
        }
    ]
    api = writer_client(kube, cluster, istio, writer, rules)
    roll = {
        "apiVersion": "maistra.io/v1",
        "kind": "ServiceMeshMemberRoll",
        "metadata": {"name": "default"},
        "spec": {"members": [unique_user]},
    }
    username = f"system:serviceaccount:{istio}:{writer}"
    expected = (
        403,
        'admission webhook "smmr.validation.maistra.io" denied the request: '
        f"user '{username}' does not have permission to access namespace(s): [{unique_user}]",
    )
    try:
        until(lambda: create_as(api, istio, "servicemeshmemberrolls", roll), expected, None)
        edit = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
        sa = {"kind": "ServiceAccount", "name": writer, "namespace": istio}
        pods = {"metadata": {"name": "may-update-pods"}, "roleRef": edit, "subjects": [sa]}
        kube.create(ROLEBINDINGS, unique_user, pods)
        until(lambda: create_as(api, istio, "servicemeshmemberrolls", roll), (201, ""), expected)
    finally:
        api.close()
    assert kube.get(SMMRS, istio, "default")["spec"]["members"] == [unique_user]


def test_member_webhook_reviews_use_of_the_control_plane(
    kube: Kube, istio: str, unique_user: str, cluster: Any
) -> None:
    """smm.validation.maistra.io makes a real SubjectAccessReview (`use` on the
    ServiceMeshControlPlane the member names) for the identity creating the member; its
    controlPlaneRef may not change afterwards."""
    writer = "member-writer"
    rules = [
        {"apiGroups": ["maistra.io"], "resources": ["servicemeshmembers"], "verbs": ["create"]}
    ]
    api = writer_client(kube, cluster, unique_user, writer, rules)
    member = {
        "apiVersion": "maistra.io/v1",
        "kind": "ServiceMeshMember",
        "metadata": {"name": "default"},
        "spec": {"controlPlaneRef": {"name": "workshop-install", "namespace": istio}},
    }
    username = f"system:serviceaccount:{unique_user}:{writer}"
    expected = (
        403,
        'admission webhook "smm.validation.maistra.io" denied the request: '
        f"user '{username}' does not have permission to use ServiceMeshControlPlane "
        f"{istio}/workshop-install",
    )
    try:
        until(lambda: create_as(api, unique_user, "servicemeshmembers", member), expected, None)
        use = [
            {
                "apiGroups": ["maistra.io"],
                "resources": ["servicemeshcontrolplanes"],
                "resourceNames": ["workshop-install"],
                "verbs": ["use"],
            }
        ]
        kube.create(ROLES, istio, {"metadata": {"name": "mesh-user"}, "rules": use})
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mesh-user"}
        sa = {"kind": "ServiceAccount", "name": writer, "namespace": unique_user}
        binding = {"metadata": {"name": "mesh-user"}, "roleRef": ref, "subjects": [sa]}
        kube.create(ROLEBINDINGS, istio, binding)
        until(
            lambda: create_as(api, unique_user, "servicemeshmembers", member), (201, ""), expected
        )
    finally:
        api.close()
    with pytest.raises(KubeError) as refused:
        kube.patch(SMMS, unique_user, "default", {"spec": {"controlPlaneRef": {"name": "other"}}})
    assert refused.value.status == 400
    assert "mutation of .spec.controlPlaneRef isn't allowed" in str(refused.value)


def catalog_state(state: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        found = ((obj.get("status") or {}).get("connectionState") or {}).get("lastObservedState")
        return bool(found == state)

    return check


def test_mesh_policies_copied_into_a_member_cut_its_catalog_off(
    kube: Kube, istio: str, unique_user: str
) -> None:
    """Maistra puts istio-mesh-default / istio-expose-route-default into the control plane
    namespace and copies them into each member namespace; there they isolate every pod, and
    OLM's catalog-operator (not a mesh member) can no longer reach a catalog's registry pod:
    TRANSIENT_FAILURE, until a policy admits it (the workshop's: every namespace)."""
    member = unique_user
    kube.create(
        CATALOGSOURCES,
        member,
        {"metadata": {"name": "cat"}, "spec": {"sourceType": "grpc", "image": "x"}},
    )
    wait_for(kube, CATALOGSOURCES, member, "cat", catalog_state("READY"), timeout=30)
    create_smcp(kube, istio)
    kube.create(SMMRS, istio, {"metadata": {"name": "default"}, "spec": {"members": [member]}})
    names = {"istio-mesh-default", "istio-expose-route-default"}

    def copied(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        found = [p for p in items if p["metadata"]["name"] in names]
        return found if len(found) == len(names) else None

    copies = wait_list(kube, NETWORKPOLICIES, member, copied, timeout=30)
    for policy in copies:
        assert policy["metadata"]["labels"][MEMBER_OF] == istio
        assert "maistra.io/owner" not in policy["metadata"]["labels"]
    originals = {p["metadata"]["name"]: p for p in kube.list(NETWORKPOLICIES, istio)[0]}
    assert originals["istio-mesh-default"]["metadata"]["labels"]["maistra.io/owner"] == istio
    wait_for(kube, CATALOGSOURCES, member, "cat", catalog_state("TRANSIENT_FAILURE"), timeout=30)
    allow_all = {
        "metadata": {"name": "istio-mesh-workshop-all"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]},
    }
    kube.create(NETWORKPOLICIES, member, allow_all)
    wait_for(kube, CATALOGSOURCES, member, "cat", catalog_state("READY"), timeout=30)
    # Out of the mesh: the copies go again.
    kube.patch(SMMRS, istio, "default", {"spec": {"members": []}})
    wait_list(
        kube,
        NETWORKPOLICIES,
        member,
        lambda items: (
            items if {p["metadata"]["name"] for p in items} == {"istio-mesh-workshop-all"} else None
        ),
        timeout=30,
    )


def test_smcp_versions_follow_the_operator_release(kube: Kube, istio: str, sim_knobs: Any) -> None:
    """OSSM 2.4 accepts v2.1-v2.4, 2.5 accepts v2.2-v2.5 (knob mesh_operator)."""

    def refusal(version: str) -> str:
        try:
            body = smcp(istio, spec={**WORKSHOP_SMCP_SPEC, "version": version})
            kube.create(SMCPS, istio, body, dryRun="All")
        except KubeError as exc:
            return f"{exc.status} " + exc.message.split("denied the request: ", 1)[-1]
        return ""

    assert refusal("v2.4") == ""
    assert refusal("v2.0") == "400 Only '[v2.1 v2.2 v2.3 v2.4]' versions are supported"
    assert refusal("v2.5") == (
        "400 invalid Version specified; supported versions are: [v2.1 v2.2 v2.3 v2.4]"
    )
    sim_knobs.set(mesh_operator="2.5")
    assert refusal("v2.5") == ""
    assert refusal("v2.1") == "400 Only '[v2.2 v2.3 v2.4 v2.5]' versions are supported"


def test_finalizers_hold_the_roll_and_member_until_the_operator_cleans_up(
    kube: Kube, istio: str, unique_user: str, sim_knobs: Any
) -> None:
    """The roll and the member it makes carry maistra.io/istio-operator. Deleting the roll
    takes the member and the namespace's mesh label with it; while the operator does not act
    (here: its member-roll controller held back), the roll stays, marked for deletion, until
    someone removes the finalizer by hand (docs/runbook.md)."""
    create_smcp(kube, istio)
    kube.create(SMMRS, istio, {"metadata": {"name": "default"}, "spec": {"members": [unique_user]}})
    roll = wait_for(
        kube, SMMRS, istio, "default", cond_is("Ready", "True", "Configured"), timeout=30
    )
    assert roll["metadata"]["finalizers"] == ["maistra.io/istio-operator"]
    member = kube.get(SMMS, unique_user, "default")
    assert member["metadata"]["finalizers"] == ["maistra.io/istio-operator"]

    kube.delete(SMMRS, istio, "default")
    wait_list(kube, SMMRS, istio, lambda items: not items, timeout=30)
    wait_list(kube, SMMS, unique_user, lambda items: not items, timeout=30)
    wait_for(
        kube,
        NAMESPACES,
        None,
        unique_user,
        lambda o: MEMBER_OF not in (o["metadata"].get("labels") or {}),
        timeout=20,
    )

    kube.create(SMMRS, istio, {"metadata": {"name": "default"}, "spec": {"members": []}})
    wait_for(
        kube,
        SMMRS,
        istio,
        "default",
        lambda o: "maistra.io/istio-operator" in (o["metadata"].get("finalizers") or []),
        timeout=30,
    )
    sim_knobs.set({"kind": "SMMR", "delay": 600})  # the operator is gone, for the roll
    kube.delete(SMMRS, istio, "default")
    held = kube.get(SMMRS, istio, "default")
    assert held["metadata"]["deletionTimestamp"]
    kube.patch(SMMRS, istio, "default", {"metadata": {"finalizers": None}})
    wait_list(kube, SMMRS, istio, lambda items: not items, timeout=10)


def test_an_smcp_read_as_v1_is_not_converted(kube: Kube, istio: str) -> None:
    """docs/fidelity.md, "Not simulated (Maistra)": without Maistra's conversion webhook the
    apiserver's None conversion only rewrites apiVersion, and the v1 schema prunes what it does
    not declare - no `istio` HelmValues are made from the v2 fields."""
    create_smcp(kube, istio)
    v1 = Resource("maistra.io", "v1", "servicemeshcontrolplanes", "ServiceMeshControlPlane")
    read = kube.get(v1, istio, "workshop-install")
    assert read["apiVersion"] == "maistra.io/v1"
    assert read["spec"] == {"version": WORKSHOP_SMCP_SPEC["version"]}


def test_the_member_roll_mutator_drops_the_mesh_namespace(
    kube: Kube, istio: str, unique_user: str
) -> None:
    """smmr.mutation.maistra.io runs before the validator: a roll that lists its own
    namespace is stored without it, not refused."""
    body = {"metadata": {"name": "default"}, "spec": {"members": [unique_user, istio]}}
    stored = kube.create(SMMRS, istio, body)
    assert stored["spec"]["members"] == [unique_user]
