"""The escalation paths a review found open, each now denied, acting as the runner.

Every test acts as the deploy base's ServiceAccount (a TokenRequest token, or one bound to a
pod for the own-pod rule) against devcluster with `manifests/` applied, tries one row of the
review's table and shows the API server refuse it; the allowed form of the same request is
shown beside it where the steps need it, and the runs at the end show the normal flow intact.
The policies are in manifests/deploy/admission-policy.yaml, explained in its README.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from devcluster.cluster import Cluster
from tests.integration.test_deploy_rbac import (
    NAMESPACE,
    SERVICE_ACCOUNT,
    admin_binding,
    eventually_status,
    managed_namespace,
    message,
    run_runner,
    status_of,
    user,
)
from tests.integration.test_deploy_render import kustomize
from tests.manifests import ROOT, apply_manifests

pytestmark = [pytest.mark.integration]

DEFAULTS = yaml.safe_load((ROOT / "runner" / "defaults.yaml").read_text())
OLM = ("operators.coreos.com", "v1alpha1")


@pytest.fixture
def tenant(api_client: Any, sa: Any, unique_user: str) -> Iterator[str]:
    """A user's namespace pair made by the runner's identity; deleted by the admin after."""
    core = client.CoreV1Api(sa)
    for ns in (unique_user, f"{unique_user}-istio"):
        body = managed_namespace(ns)
        body["metadata"]["labels"]["workshop-runner.io/user"] = unique_user
        eventually_status(partial(core.create_namespace, body), 200)
    try:
        yield unique_user
    finally:
        admin = client.CoreV1Api(api_client)
        for ns in (unique_user, f"{unique_user}-istio"):
            admin.delete_namespace(ns)


def denied(call: Callable[[], object], *fragments: str) -> None:
    """403 from the guard (after policy propagation), its message naming each fragment."""
    err = eventually_status(call, 403)
    text = message(err)
    assert "ValidatingAdmissionPolicy" in text, text
    for fragment in fragments:
        assert fragment in text, text


def olm_object(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    version = "v1" if kind == "OperatorGroup" else "v1alpha1"
    return {
        "apiVersion": f"operators.coreos.com/{version}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def catalog_spec(**changes: Any) -> dict[str, Any]:
    spec = {"sourceType": "grpc", "image": DEFAULTS["catalog_image"], "displayName": "x"}
    return {**spec, **changes}


def subscription_spec(namespace: str, **changes: Any) -> dict[str, Any]:
    spec = {
        "name": DEFAULTS["sso_package"],
        "channel": DEFAULTS["sso_channel"],
        "source": DEFAULTS["catalog_source_name"],
        "sourceNamespace": namespace,
        "startingCSV": DEFAULTS["sso_starting_csv"],
        "installPlanApproval": "Manual",
    }
    return {**spec, **changes}


def create(api: Any, obj: dict[str, Any]) -> Callable[[], object]:
    group, version = obj["apiVersion"].split("/")
    plural = obj["kind"].lower() + "s"
    return partial(
        client.CustomObjectsApi(api).create_namespaced_custom_object,
        group,
        version,
        obj["metadata"]["namespace"],
        plural,
        obj,
        dry_run="All",
    )


# -- OLM pinned ------------------------------------------------------------------------------


def test_catalog_source_only_with_the_configured_image(sa: Any, tenant: str) -> None:
    name = DEFAULTS["catalog_source_name"]
    ok = olm_object("CatalogSource", name, tenant, catalog_spec())
    eventually_status(create(sa, ok), 200)
    for spec in (
        catalog_spec(image="quay.io/attacker/index:latest"),
        catalog_spec(address="10.0.0.1:50051"),
        catalog_spec(secrets=["pull-secret"]),
        catalog_spec(
            grpcPodConfig={
                "securityContextConfig": "legacy",
                "priorityClassName": "system-node-critical",
                "tolerations": [{"operator": "Exists"}],
            }
        ),
    ):
        denied(create(sa, olm_object("CatalogSource", name, tenant, spec)), "CatalogSource")
    other = olm_object("CatalogSource", "other-catalog", tenant, catalog_spec())
    denied(create(sa, other), DEFAULTS["catalog_image"])


def test_operator_group_targets_exactly_its_own_namespace(sa: Any, tenant: str) -> None:
    def og(spec: dict[str, Any]) -> Callable[[], object]:
        return create(sa, olm_object("OperatorGroup", "og", tenant, spec))

    eventually_status(og({"targetNamespaces": [tenant]}), 200)
    for spec in (
        {},  # all namespaces
        {"targetNamespaces": ["kube-system", tenant]},
        {"targetNamespaces": [f"{tenant}-istio"]},
        {"selector": {"matchLabels": {"x": "y"}}},
        {"targetNamespaces": [tenant], "serviceAccountName": "builder"},
    ):
        denied(og(spec), "targeting exactly its own namespace")


def test_subscription_fields_are_fixed(sa: Any, tenant: str) -> None:
    def sub(spec: dict[str, Any], name: str = DEFAULTS["sso_subscription_name"]) -> Any:
        return create(sa, olm_object("Subscription", name, tenant, spec))

    eventually_status(sub(subscription_spec(tenant)), 200)
    for spec in (
        subscription_spec(tenant, name="cluster-logging"),
        subscription_spec(tenant, channel="fast"),
        subscription_spec(tenant, source="redhat-operators"),
        subscription_spec(tenant, sourceNamespace="openshift-marketplace"),
        subscription_spec(tenant, startingCSV="rhsso-operator.7.6.0"),
        subscription_spec(tenant, installPlanApproval="Automatic"),
        subscription_spec(
            tenant,
            config={
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                "volumeMounts": [{"name": "root", "mountPath": "/host"}],
            },
        ),
    ):
        denied(sub(spec), "may only subscribe to")
    denied(sub(subscription_spec(tenant), name="another"), "may only subscribe to")


def install_plan(api_client: Any, namespace: str, name: str, csv: str) -> None:
    plan = olm_object(
        "InstallPlan",
        name,
        namespace,
        {"clusterServiceVersionNames": [csv], "approval": "Manual", "approved": False},
    )
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        *OLM, namespace, "installplans", plan
    )


def test_install_plan_only_approved_and_only_for_the_pinned_csv(
    api_client: Any, sa: Any, tenant: str
) -> None:
    pinned, other = DEFAULTS["sso_starting_csv"], "cluster-admin-operator.v1.0.0"
    install_plan(api_client, tenant, "install-pinned", pinned)
    install_plan(api_client, tenant, "install-other", other)
    custom = client.CustomObjectsApi(sa)

    def patch(name: str, spec: dict[str, Any]) -> Callable[[], object]:
        return partial(
            custom.patch_namespaced_custom_object,
            *OLM,
            tenant,
            "installplans",
            name,
            {"spec": spec},
            dry_run="All",
        )

    eventually_status(patch("install-pinned", {"approved": True}), 200)
    denied(patch("install-other", {"approved": True}), "only on the InstallPlan of " + pinned)
    denied(patch("install-pinned", {"clusterServiceVersionNames": [other]}), "spec.approved")
    denied(patch("install-pinned", {"approval": "Automatic", "approved": True}), "spec.approved")
    plan = olm_object("InstallPlan", "made", tenant, {"clusterServiceVersionNames": [pinned]})
    plan["spec"].update(approval="Manual", approved=True)
    assert status_of(create(sa, plan)) == 403  # RBAC: never created by the runner


# -- --project-request without admin --------------------------------------------------------


def can_i(api: Any, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    attributes = {"verb": verb, "resource": resource, "group": group, "namespace": namespace}
    review = {"spec": {"resourceAttributes": attributes}}
    answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(answer.status.allowed)


@pytest.mark.parametrize("mode", ["namespace", "project-request"])
def test_the_runner_holds_no_secrets_or_pods_in_a_users_namespaces(
    simulators: Any, api_client: Any, sa: Any, *, deployed: Path, unique_user: str, mode: str
) -> None:
    """OpenShift's project template makes the requester admin; the runner is the requester
    and drops that binding, so in both namespace modes it can neither read Secrets nor create
    pods in either of the user's namespaces - and it cannot drop the user's own binding."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    args = ["--user", unique_user, "--kubeconfig", str(deployed)]
    args += ["--steps", "namespace,rbac,istio-namespace"]
    args += ["--project-request"] if mode == "project-request" else []
    namespaces = (unique_user, f"{unique_user}-istio")
    admin = client.CoreV1Api(api_client)
    try:
        output = ""
        for _ in range(2):  # a re-run changes nothing it may not
            proc = run_runner(args, env)
            assert proc.returncode == 0, proc.stderr
            output += proc.stdout + proc.stderr
        for ns in namespaces:
            for verb, resource in (("get", "secrets"), ("list", "secrets"), ("create", "pods")):
                assert not can_i(sa, verb, resource, ns), (mode, ns, verb, resource)
            # what the steps do still works
            assert can_i(sa, "create", "rolebindings", ns, "rbac.authorization.k8s.io")
        if mode == "project-request":
            assert output.count("dropped the runner's own RoleBinding(s) admin") == 2  # 2 ns
            rbac = client.RbacAuthorizationV1Api(api_client)
            names = [b.metadata.name for b in rbac.list_namespaced_role_binding(unique_user).items]
            assert "admin" not in names
        rbac_sa = client.RbacAuthorizationV1Api(sa)
        delete_users_binding = partial(
            rbac_sa.delete_namespaced_role_binding,
            "workshop-user-admin",
            unique_user,
            dry_run="All",
        )
        denied(delete_users_binding, "grant itself alone")
    finally:
        for ns in namespaces:
            if status_of(partial(admin.read_namespace, ns)) == 200:
                admin.delete_namespace(ns)


# -- tenant labels and names -----------------------------------------------------------------


def test_cannot_relabel_another_users_namespace_then_bind_admin(
    sa: Any, tenant: str, unique_user: str
) -> None:
    core, rbac = client.CoreV1Api(sa), client.RbacAuthorizationV1Api(sa)
    me = f"{unique_user}x"
    relabel = {"metadata": {"labels": {"workshop-runner.io/user": me}}}
    denied(partial(core.patch_namespace, tenant, relabel), "workshop-runner.io/user")
    binding = admin_binding(tenant, user(me))
    denied(partial(rbac.create_namespaced_role_binding, tenant, binding), "only bind")


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [
        ({"openshift.io/run-level": "0"}, {}),
        ({"pod-security.kubernetes.io/enforce": "privileged"}, {}),
        ({"security.openshift.io/scc.podSecurityLabelSync": "false"}, {}),
        ({}, {"openshift.io/node-selector": "node-role.kubernetes.io/master="}),
        ({}, {"scheduler.alpha.kubernetes.io/node-selector": "kubernetes.io/hostname=n1"}),
        ({}, {"scheduler.alpha.kubernetes.io/defaultTolerations": '[{"operator":"Exists"}]'}),
    ],
)
def test_namespace_labels_and_annotations_are_an_allowlist(
    sa: Any, tenant: str, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    core = client.CoreV1Api(sa)
    body = {"metadata": {"labels": labels, "annotations": annotations}}
    denied(partial(core.patch_namespace, tenant, body, dry_run="All"), "may set only the labels")
    fresh = managed_namespace(f"{tenant}z")
    fresh["metadata"]["labels"].update(labels)
    fresh["metadata"]["annotations"] = annotations
    fresh["metadata"]["labels"]["workshop-runner.io/user"] = f"{tenant}z"
    denied(partial(core.create_namespace, fresh, dry_run="All"), "may set only the labels")


def test_cannot_remove_a_label_the_admin_set(api_client: Any, sa: Any, tenant: str) -> None:
    client.CoreV1Api(api_client).patch_namespace(
        tenant, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    body = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": None}}}
    core = client.CoreV1Api(sa)
    denied(partial(core.patch_namespace, tenant, body, dry_run="All"), "may set only the labels")


@pytest.mark.parametrize("name", ["istio-system", "istio-operator", "cert-manager", "olm"])
def test_well_known_names_cannot_be_claimed(sa: Any, name: str) -> None:
    core, custom = client.CoreV1Api(sa), client.CustomObjectsApi(sa)
    for ns in (name, f"{name}-istio"):
        body = managed_namespace(ns)
        body["metadata"]["labels"]["workshop-runner.io/user"] = name
        denied(partial(core.create_namespace, body, dry_run="All"), "well-known")
    request = {
        "apiVersion": "project.openshift.io/v1",
        "kind": "ProjectRequest",
        "metadata": {"name": name},
    }
    create_request = partial(
        custom.create_cluster_custom_object,
        "project.openshift.io",
        "v1",
        "projectrequests",
        request,
        dry_run="All",
    )
    denied(create_request, "well-known")


def test_namespace_user_label_names_its_user(sa: Any, unique_user: str) -> None:
    core = client.CoreV1Api(sa)
    body = managed_namespace(unique_user)
    body["metadata"]["labels"]["workshop-runner.io/user"] = "someone-else"
    denied(partial(core.create_namespace, body, dry_run="All"), "must name its user")


# -- mesh objects within the user ------------------------------------------------------------


def test_member_roll_names_only_the_users_namespace(api_client: Any, sa: Any, tenant: str) -> None:
    # What the member-roll step does first, so Maistra's webhook lets the namespace in.
    mesh_member = admin_binding(tenant, {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT})
    mesh_member["subjects"][0]["namespace"] = NAMESPACE
    mesh_member["metadata"]["name"] = mesh_member["roleRef"]["name"] = "workshop-runner-mesh-member"
    client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(tenant, mesh_member)
    custom = client.CustomObjectsApi(sa)

    def roll(members: list[str], **spec: Any) -> Callable[[], object]:
        body = {
            "apiVersion": "maistra.io/v1",
            "kind": "ServiceMeshMemberRoll",
            "metadata": {"name": "default", "namespace": f"{tenant}-istio"},
            "spec": {"members": members, **spec},
        }
        return partial(
            custom.create_namespaced_custom_object,
            "maistra.io",
            "v1",
            f"{tenant}-istio",
            "servicemeshmemberrolls",
            body,
            dry_run="All",
        )

    eventually_status(roll([tenant]), 200)
    denied(roll([tenant, "kube-system"]), "member roll")
    denied(roll(["another-tenant"]), "member roll")
    selector = {"memberSelectors": [{"matchLabels": {"kubernetes.io/metadata.name": "x"}}]}
    denied(roll([tenant], **selector), "member roll")


def test_kiali_update_changes_only_the_excluded_workloads(
    api_client: Any, sa: Any, tenant: str
) -> None:
    ns = f"{tenant}-istio"
    kiali = {
        "apiVersion": "kiali.io/v1alpha1",
        "kind": "Kiali",
        "metadata": {"name": "kiali", "namespace": ns},
        "spec": {
            "auth": {"strategy": "openshift"},
            "deployment": {"accessible_namespaces": [tenant]},
            "kubernetes_config": {"excluded_workloads": []},
        },
    }
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "kiali.io", "v1alpha1", ns, "kialis", kiali
    )
    custom = client.CustomObjectsApi(sa)

    def patch(spec: dict[str, Any]) -> Callable[[], object]:
        return partial(
            custom.patch_namespaced_custom_object,
            "kiali.io",
            "v1alpha1",
            ns,
            "kialis",
            "kiali",
            {"spec": spec},
            dry_run="All",
        )

    eventually_status(patch({"kubernetes_config": {"excluded_workloads": ["Job"]}}), 200)
    denied(patch({"deployment": {"accessible_namespaces": ["**"]}}), "excluded_workloads")
    denied(patch({"auth": {"strategy": "anonymous"}}), "excluded_workloads")
    denied(patch({"kubernetes_config": {"cluster_wide_access": True}}), "excluded_workloads")


def test_control_plane_is_never_cluster_wide(sa: Any, tenant: str) -> None:
    ns = f"{tenant}-istio"

    def smcp(**spec: Any) -> Callable[[], object]:
        body = {
            "apiVersion": "maistra.io/v2",
            "kind": "ServiceMeshControlPlane",
            "metadata": {"name": "basic", "namespace": ns},
            "spec": {"version": "v2.4", **spec},
        }
        return partial(
            client.CustomObjectsApi(sa).create_namespaced_custom_object,
            "maistra.io",
            "v2",
            ns,
            "servicemeshcontrolplanes",
            body,
            dry_run="All",
        )

    eventually_status(smcp(), 200)
    eventually_status(smcp(mode="MultiTenant"), 200)
    denied(smcp(mode="ClusterWide"), "not ClusterWide")


# -- own pod only in the runner's namespace --------------------------------------------------


def runner_pod(name: str) -> dict[str, Any]:
    """A pod the namespace's Pod Security `restricted` admits (it never runs here)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "workshop-runner"}},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "nodeName": "nowhere",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "runner",
                    "image": "workshop-runner:dev",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 1001,
                    },
                }
            ],
        },
    }


@pytest.fixture
def two_pods(api_client: Any, unique_user: str) -> Iterator[tuple[str, str]]:
    core = client.CoreV1Api(api_client)
    names = (f"{unique_user}-mine", f"{unique_user}-other")
    for name in names:
        core.create_namespaced_pod(NAMESPACE, runner_pod(name))
    try:
        yield names
    finally:
        for name in names:
            core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def pod_bound_client(api_client: Any, cluster: Cluster, pod: str) -> Any:
    """The runner's ServiceAccount as a token bound to `pod` (what the kubelet mounts)."""
    core = client.CoreV1Api(api_client)
    uid = core.read_namespaced_pod(pod, NAMESPACE).metadata.uid
    request = {
        "spec": {
            "audiences": [],
            "expirationSeconds": 600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid},
        }
    }
    token = core.create_namespaced_service_account_token(SERVICE_ACCOUNT, NAMESPACE, request)
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token.status.token}"}
    return client.ApiClient(cfg)


def test_only_the_progress_annotation_on_its_own_pod(
    api_client: Any, cluster: Cluster, deployed: Path, two_pods: tuple[str, str]
) -> None:
    mine, other = two_pods
    api = pod_bound_client(api_client, cluster, mine)
    try:
        core = client.CoreV1Api(api)
        step = {"metadata": {"annotations": {"workshop-runner.io/step": "smcp"}}}
        eventually_status(partial(core.patch_namespaced_pod, mine, NAMESPACE, step), 200)
        image = {"spec": {"containers": [{"name": "runner", "image": "attacker/image:1"}]}}
        for name, body in ((other, step), (other, image), (mine, image)):
            denied(partial(core.patch_namespaced_pod, name, NAMESPACE, body), "own pod")
        labels = {"metadata": {"labels": {"job-name": "x"}}}
        denied(partial(core.patch_namespaced_pod, mine, NAMESPACE, labels), "own pod")
    finally:
        api.close()
    # A token not bound to a pod (a kubeconfig) annotates no pod at all.
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(deployed)))
    step = {"metadata": {"annotations": {"workshop-runner.io/step": "x"}}}
    denied(partial(core.patch_namespaced_pod, mine, NAMESPACE, step), "own pod")


# -- the core allowlist ----------------------------------------------------------------------


def test_writes_only_the_kinds_the_steps_write(api_client: Any, sa: Any, tenant: str) -> None:
    """Where RBAC would allow more (the member-roll permission binds `update pods` in the
    user's namespaces for Maistra's access check; another helper's Role; a wider ClusterRole),
    the guard still allows only what the steps write: no pod writes outside its own namespace,
    no kind off the allowlist."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = {
        "metadata": {"name": "too-much"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["patch", "create"]}
        ],
    }
    rbac.create_namespaced_role(tenant, role)
    binding = {
        "metadata": {"name": "too-much"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "too-much"},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
    }
    rbac.create_namespaced_role_binding(tenant, binding)
    admin = client.CoreV1Api(api_client)
    pod = runner_pod("victim")
    pod["spec"]["serviceAccountName"] = "default"
    admin.create_namespaced_pod(tenant, pod)
    core = client.CoreV1Api(sa)
    image = {"spec": {"containers": [{"name": "runner", "image": "attacker/image:1"}]}}
    denied(
        partial(core.patch_namespaced_pod, "victim", tenant, image, dry_run="All"),
        "may not write pods outside its own namespace; " + tenant,
    )
    cm = {"metadata": {"name": "x"}, "data": {"a": "b"}}
    denied(
        partial(core.create_namespaced_config_map, tenant, cm, dry_run="All"),
        "may not CREATE /configmaps",
    )


# -- the guard follows the deploy base -------------------------------------------------------


def overlay(tmp_path: Path, namespace: str) -> list[dict[str, Any]]:
    """`namespace: <namespace>` over manifests/deploy; the objects kustomize renders."""
    base = os.path.relpath(ROOT / "manifests" / "deploy", tmp_path)  # kustomize: relative
    (tmp_path / "kustomization.yaml").write_text(
        f"namespace: {namespace}\nresources:\n  - {base}\n"
    )
    return kustomize(tmp_path)


def test_a_namespace_overlay_keeps_every_rule_in_force(
    api_client: Any, cluster: Cluster, deployed: Path, tmp_path: Path, unique_user: str
) -> None:
    moved = f"wr-{unique_user}"
    docs = overlay(tmp_path, moved)
    (binding,) = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicyBinding" and "paramRef" in d["spec"]
    ]
    assert binding["spec"]["paramRef"]["namespace"] == moved
    admin = client.CoreV1Api(api_client)
    try:
        apply_manifests(cluster.kubeconfig, "workshop-runner-tests", tmp_path)
        api = config.new_client_from_config(
            config_file=str(cluster.sa_kubeconfig(moved, SERVICE_ACCOUNT))
        )
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        denied(partial(core.create_namespace, managed_namespace("kube-x"), dry_run="All"))
        ns = managed_namespace(unique_user)
        eventually_status(partial(core.create_namespace, ns), 200)
        everyone = {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": "system:authenticated",
        }
        binding_body = admin_binding(unique_user, everyone)
        denied(partial(rbac.create_namespaced_role_binding, unique_user, binding_body), "bind")
        bad = olm_object(
            "CatalogSource",
            DEFAULTS["catalog_source_name"],
            unique_user,
            catalog_spec(image="quay.io/attacker/index:latest"),
        )
        denied(create(api, bad), "CatalogSource")
        good = olm_object(
            "CatalogSource", DEFAULTS["catalog_source_name"], unique_user, catalog_spec()
        )
        eventually_status(create(api, good), 200)  # the parameters are found where they moved
        api.close()
    finally:
        # Put the shared cluster-scoped objects back as the base has them.
        apply_manifests(cluster.kubeconfig, "workshop-runner-tests")
        for ns_name in (unique_user, moved):
            if status_of(partial(admin.read_namespace, ns_name)) == 200:
                admin.delete_namespace(ns_name)


# -- no token in any output ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["kubeconfig", "service-account directory"])
def test_a_token_with_a_trailing_newline_works_and_never_shows(
    api_client: Any,
    cluster: Cluster,
    deployed: Path,
    *,
    tmp_path: Path,
    unique_user: str,
    source: str,
) -> None:
    """A token file or kubeconfig written with a trailing newline used to print the whole
    bearer token on stderr (the HTTP library quotes the header it refuses)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    if source == "kubeconfig":
        kubeconfig = yaml.safe_load(deployed.read_text())
        token = kubeconfig["users"][0]["user"]["token"]
        kubeconfig["users"][0]["user"]["token"] = token + "\n"
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        where = ["--kubeconfig", str(path)]
    else:
        env.update(cluster.in_cluster_env(NAMESPACE, SERVICE_ACCOUNT, tmp_path / "sa"))
        token = (tmp_path / "sa" / "token").read_text().strip()
        (tmp_path / "sa" / "token").write_text(token + "\n")
        where = []
    result = tmp_path / "result.json"
    args = ["--user", unique_user, *where, "--steps", "namespace", "--log-level", "debug"]
    proc = run_runner([*args, "--termination-log", str(result)], env)
    try:
        assert proc.returncode == 0, proc.stderr
        for text in (proc.stdout, proc.stderr, result.read_text()):
            assert token[-20:] not in text
    finally:
        admin = client.CoreV1Api(api_client)
        if status_of(partial(admin.read_namespace, unique_user)) == 200:
            admin.delete_namespace(unique_user)
