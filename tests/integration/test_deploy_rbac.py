"""The manifests' ServiceAccount against real RBAC and admission on the devcluster apiserver.

Three layers keep the runner's identity small:
  * RBAC (clusterrole.yaml): no secrets, no namespace deletes, no ClusterRoleBindings, `bind`
    only on ClusterRole admin, so binding cluster-admin is refused by RBAC's escalation check;
  * the runner's own validation: system namespace names never reach the API (exit 2);
  * the admission guard (admission-policy.yaml): what RBAC cannot say about namespace names and
    ownership, for a runner that is buggy or given a wrong users list.
Each test shows which layer answers. The full run with this identity is at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.cluster import Cluster
from runner.events import Note, Regarding, event_body
from tests.manifests import kubectl_events

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) needed"),
]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "workshop-runner"
SERVICE_ACCOUNT = "workshop-runner"
MESH_MEMBER = "workshop-runner-mesh-member"
RUNNER = Path(sys.executable).parent / "workshop-runner"
PROPAGATION_SECONDS = 15.0  # RBAC and admission policies reach the apiserver's caches async
FULL_STEPS = [
    "namespace",
    "catalog-source",
    "rbac",
    "sso-operator",
    "install-plan",
    "csv",
    "istio-namespace",
    "limit-ranges",
    "smcp",
    "member-roll",
    "kiali",
    "extra",
]


def status_of(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiException as e:
        return int(e.status)
    return 200


def eventually_status(call: Callable[[], object], expected: int) -> ApiException | None:
    """The status `call` ends up with once RBAC/policy changes have propagated (bounded)."""
    deadline = time.monotonic() + PROPAGATION_SECONDS
    while True:
        try:
            call()
            last: ApiException | None = None
            status = 200
        except ApiException as e:
            last, status = e, int(e.status)
        if status == expected or time.monotonic() > deadline:
            assert status == expected, f"expected HTTP {expected}, got {status}: {last}"
            return last
        time.sleep(0.2)


def message(e: ApiException | None) -> str:
    assert e is not None
    return str(json.loads(e.body).get("message", ""))


def managed_namespace(name: str) -> dict[str, Any]:
    """What the runner's namespace template makes (labels the admission guard relies on)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "workshop-runner",
                "workshop-runner.io/user": name,
            },
        },
    }


def admin_binding(namespace: str, subject: dict[str, str], role: str = "admin") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"workshop-user-{role}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    }


def user(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


@pytest.fixture
def user_ns(api_client: Any, sa: Any, unique_user: str) -> Iterator[str]:
    """A user namespace made by the runner's identity, deleted by the admin afterwards."""
    core = client.CoreV1Api(sa)
    eventually_status(lambda: core.create_namespace(managed_namespace(unique_user)), 200)
    try:
        yield unique_user
    finally:
        client.CoreV1Api(api_client).delete_namespace(unique_user)


def test_cannot_read_secrets(sa: Any, user_ns: str) -> None:
    core = client.CoreV1Api(sa)
    eventually_status(lambda: core.list_namespaced_secret(NAMESPACE), 403)
    for call in (
        lambda: core.list_namespaced_secret("kube-system"),
        core.list_secret_for_all_namespaces,
        lambda: core.read_namespaced_secret("anything", user_ns),
        lambda: core.create_namespaced_secret(user_ns, {"metadata": {"name": "s"}}),
    ):
        assert status_of(call) == 403


def test_cannot_delete_namespaces(sa: Any, user_ns: str) -> None:
    core = client.CoreV1Api(sa)
    eventually_status(lambda: core.delete_namespace("default"), 403)
    # Not even one it made: teardown runs with the admin's identity.
    assert status_of(lambda: core.delete_namespace(user_ns)) == 403


def test_cannot_bind_cluster_admin_or_grow_its_own_role(sa: Any, user_ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(sa)
    crb = {
        "metadata": {"name": f"{user_ns}-cluster-admin"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [user(user_ns)],
    }
    err = eventually_status(lambda: rbac.create_cluster_role_binding(crb), 403)
    assert "cannot create resource" in message(err)
    # A RoleBinding it may create, but RBAC's escalation check refuses cluster-admin: the
    # runner holds neither those permissions nor `bind` on that role.
    binding = admin_binding(user_ns, user(user_ns), role="cluster-admin")
    err = eventually_status(lambda: rbac.create_namespaced_role_binding(user_ns, binding), 403)
    assert "not currently held" in message(err)
    # No `escalate`, no writes to roles: it cannot widen its own ClusterRole.
    patch = {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    assert status_of(lambda: rbac.patch_cluster_role("workshop-runner", patch)) == 403


def test_binds_admin_to_the_namespace_user_via_bind_on_admin(sa: Any, user_ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(sa)
    binding = admin_binding(user_ns, user(user_ns))
    eventually_status(lambda: rbac.create_namespaced_role_binding(user_ns, binding), 200)


def test_system_namespace_names_rbac_allows_runner_and_guard_refuse(
    api_client: Any, sa: Any, deployed: Path, unique_user: str
) -> None:
    name = f"kube-{unique_user}"
    # Layer 0, RBAC: cannot name namespaces, so it allows creating any namespace at all.
    review = client.AuthorizationV1Api(sa).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": "create", "resource": "namespaces", "name": name}}}
    )
    assert review.status.allowed is True
    # Layer 1, the runner: refuses system names before any API call, exit 2; in a pod it also
    # knows its own namespace (POD_NAMESPACE) and refuses that.
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    in_pod = {**env, "POD_NAMESPACE": NAMESPACE}
    for bad in (name, "kube-system", "openshift-monitoring", "default", NAMESPACE):
        proc = run_runner(["--user", bad, "--kubeconfig", str(deployed)], in_pod)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert "namespace" in proc.stderr, proc.stderr
    # Outside a pod nothing tells the runner its identity's namespace: the guard refuses it.
    proc = run_runner(["--user", NAMESPACE, "--kubeconfig", str(deployed)], env)
    assert proc.returncode == 4, proc.stderr
    assert "workshop-runner-guard" in proc.stderr
    admin_core = client.CoreV1Api(api_client)
    assert status_of(lambda: admin_core.read_namespace(name)) == 404
    # Layer 2, admission: the same identity calling the API directly is refused too.
    core = client.CoreV1Api(sa)
    err = eventually_status(lambda: core.create_namespace(managed_namespace(name)), 403)
    assert "system namespace" in message(err)
    assert status_of(lambda: admin_core.read_namespace(name)) == 404


def test_guard_keeps_the_runner_out_of_namespaces_it_did_not_make(
    api_client: Any, sa: Any, unique_user: str
) -> None:
    """A user name that collides with an existing namespace must not hand it over."""
    admin_core = client.CoreV1Api(api_client)
    admin_core.create_namespace({"metadata": {"name": unique_user}})
    try:
        core, rbac = client.CoreV1Api(sa), client.RbacAuthorizationV1Api(sa)
        err = eventually_status(
            lambda: core.patch_namespace(unique_user, managed_namespace(unique_user)), 403
        )
        assert "namespaces it created" in message(err) or "change only those" in message(err)
        binding = admin_binding(unique_user, user(unique_user))
        err = eventually_status(
            lambda: rbac.create_namespaced_role_binding(unique_user, binding), 403
        )
        assert "namespaces it created" in message(err)
        # A namespace it creates must carry the runner's label (the templates set it).
        unlabelled = {"metadata": {"name": f"{unique_user}-x"}}
        assert status_of(lambda: core.create_namespace(unlabelled)) == 403
    finally:
        admin_core.delete_namespace(unique_user)
    assert status_of(lambda: admin_core.read_namespace(f"{unique_user}-x")) == 404


def test_guard_binds_admin_only_to_the_namespace_user(sa: Any, user_ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(sa)
    itself = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    group = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Group",
        "name": "system:authenticated",
    }
    for subject in (itself, group, user("someone-else")):
        binding = admin_binding(user_ns, subject)
        err = eventually_status(partial(rbac.create_namespaced_role_binding, user_ns, binding), 403)
        assert "only bind ClusterRole admin" in message(err)


def mesh_member_binding(namespace: str, subject: dict[str, str]) -> dict[str, Any]:
    binding = admin_binding(namespace, subject, role=MESH_MEMBER)
    binding["metadata"]["name"] = MESH_MEMBER
    return binding


def test_guard_binds_the_mesh_member_role_only_to_itself(sa: Any, user_ns: str) -> None:
    """The binding Maistra's member-roll review needs: to the runner's own ServiceAccount, in
    a user's namespace; to anyone else (or under another name) it is refused."""
    rbac = client.RbacAuthorizationV1Api(sa)
    itself = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    other_sa = {"kind": "ServiceAccount", "name": "default", "namespace": user_ns}
    for subject in (other_sa, user(user_ns), user(f"system:serviceaccount:{NAMESPACE}:x")):
        binding = mesh_member_binding(user_ns, subject)
        err = eventually_status(partial(rbac.create_namespaced_role_binding, user_ns, binding), 403)
        assert "workshop-runner-mesh-member, to itself" in message(err)
    renamed = mesh_member_binding(user_ns, itself)
    renamed["metadata"]["name"] = "something-else"
    assert status_of(partial(rbac.create_namespaced_role_binding, user_ns, renamed)) == 403
    binding = mesh_member_binding(user_ns, itself)
    eventually_status(partial(rbac.create_namespaced_role_binding, user_ns, binding), 200)


def test_mesh_member_binding_passes_the_review_but_writes_no_pod(
    api_client: Any, sa: Any, user_ns: str
) -> None:
    """With the binding, RBAC says yes to `update pods` (what the webhook asks); the guard still
    refuses every real pod write there, so no pod (and none of its secrets) can be touched."""
    rbac, core, auth = (
        client.RbacAuthorizationV1Api(sa),
        client.CoreV1Api(sa),
        client.AuthorizationV1Api(sa),
    )
    itself = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    binding = mesh_member_binding(user_ns, itself)
    eventually_status(partial(rbac.create_namespaced_role_binding, user_ns, binding), 200)
    review = {
        "spec": {"resourceAttributes": {"verb": "update", "resource": "pods", "namespace": user_ns}}
    }
    deadline = time.monotonic() + PROPAGATION_SECONDS
    while not auth.create_self_subject_access_review(review).status.allowed:
        assert time.monotonic() < deadline, "RBAC never allowed update pods with the binding"
        time.sleep(0.2)
    pod = {
        "metadata": {"name": "victim"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]},
    }
    admin = client.CoreV1Api(api_client)
    admin.create_namespaced_pod(user_ns, pod)

    def tamper() -> None:
        # From a fresh read each time: the process kubelet binds and updates the pod meanwhile,
        # and a stale copy is refused (409, or 422 for an unset nodeName) before the guard is asked.
        current = admin.read_namespaced_pod("victim", user_ns)
        current.spec.containers[0].image = "registry.example/evil:1"
        current.metadata.managed_fields = None
        core.replace_namespaced_pod("victim", user_ns, current)

    err = eventually_status(tamper, 403)
    assert "may not write pods outside its own namespace" in message(err)
    assert status_of(lambda: core.read_namespaced_secret("anything", user_ns)) == 403


def test_only_its_own_pods_in_its_own_namespace(sa: Any) -> None:
    core = client.CoreV1Api(sa)
    assert status_of(lambda: core.list_namespaced_pod(NAMESPACE)) == 403  # get + patch only
    cm = {"metadata": {"name": "x"}, "data": {"a": "b"}}
    assert status_of(lambda: core.create_namespaced_config_map(NAMESPACE, cm)) == 403


def run_measured(
    argv: list[str], env: dict[str, str], workdir: Path, timeout: float
) -> tuple[int, str, str, int | None]:
    """Run a command; return exit code, stdout, stderr and its peak RSS in bytes.

    GNU time measures it: a child forked from this (large) pytest process would report
    pytest's RSS as its own high-water mark (the kernel keeps it across exec), while
    /usr/bin/time is a few hundred KiB. Without it the peak is not measured (None)."""
    rss_file = workdir / "maxrss"
    timer = shutil.which("time", path="/usr/bin:/bin")
    measured = [timer, "-f", "%M", "-o", str(rss_file), *argv] if timer else argv
    proc = subprocess.run(
        measured, capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    peak = int(rss_file.read_text().split()[-1]) * 1024 if timer else None
    return proc.returncode, proc.stdout, proc.stderr, peak


def run_runner(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNNER), "run", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def job_memory_limit_bytes() -> int:
    job = yaml.safe_load((ROOT / "manifests/deploy/jobs/per-user/job.yaml").read_text())
    limit = str(job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])
    assert limit.endswith("Mi")
    return int(limit[:-2]) * 1024 * 1024


@pytest.mark.parametrize("mode", ["namespace", "project-request"])
def test_full_run_as_the_service_account(  # noqa: PLR0917 (fixtures)
    request: pytest.FixtureRequest,
    deployed: Path,
    api_client: Any,
    unique_user: str,
    tmp_path: Path,
    mode: str,
) -> None:
    """All steps for one user with the manifests' identity, against the simulated operators
    (Maistra's member-roll webhook included), in both namespace modes. Also measures the
    runner's peak RSS, which the Job's memory limit is sized from."""
    try:
        request.getfixturevalue("simulators")
    except pytest.FixtureLookupError:
        pytest.skip(
            "the simulated operators (devcluster.sim `simulators` fixture) are not there yet"
        )
    result = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    argv = [str(RUNNER), "run", "--user", unique_user, "--kubeconfig", str(deployed)]
    argv += ["--log-format", "json", "--termination-log", str(result)]
    argv += ["--project-request"] if mode == "project-request" else []
    code, out, err, peak = run_measured(argv, env, tmp_path, timeout=240)
    try:
        summary = json.loads(result.read_text())
        assert code == 0, f"{err}\n{out[-4000:]}"
        assert summary["outcome"] == "succeeded"
        assert [s["name"] for s in summary["steps"]] == FULL_STEPS
        # Maistra's member-roll webhook reviewed `update pods` in the user's namespace. The
        # runner holds nothing there in either mode (the project template's admin binding for
        # the requester is dropped by the namespace step): it bound the mesh-member role to
        # itself first.
        member_roll = next(s for s in summary["steps"] if s["name"] == "member-roll")
        assert member_roll["detail"].startswith(
            f"bound workshop-runner-mesh-member in {unique_user}; "
        ), member_roll
        if peak is not None:
            print(f"workshop-runner peak RSS for one user: {peak / 2**20:.1f} MiB")
            assert peak * 2 < job_memory_limit_bytes(), "the Job's memory limit: < 2x headroom"
    finally:
        core = client.CoreV1Api(api_client)
        for ns in (unique_user, f"{unique_user}-istio"):
            if status_of(partial(core.read_namespace, ns)) == 200:
                core.delete_namespace(ns)


def test_guard_lets_the_runner_label_a_project_it_requested(
    simulators: Any, sa: Any, api_client: Any, unique_user: str
) -> None:
    """namespace_mode=project-request: the project template makes the Namespace without the
    runner's label but with `openshift.io/requester` = the runner (stamped by OpenShift, and by
    the simulator from the request's identity); the guard lets the runner label it then."""
    custom = client.CustomObjectsApi(sa)
    request = {
        "apiVersion": "project.openshift.io/v1",
        "kind": "ProjectRequest",
        "metadata": {"name": unique_user},
        "displayName": unique_user,
    }
    core, admin_core = client.CoreV1Api(sa), client.CoreV1Api(api_client)
    try:
        eventually_status(
            lambda: custom.create_cluster_custom_object(
                "project.openshift.io", "v1", "projectrequests", request
            ),
            200,
        )
        eventually_status(partial(admin_core.read_namespace, unique_user), 200)
        made = admin_core.read_namespace(unique_user).metadata
        assert (made.annotations or {})["openshift.io/requester"] == (
            f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
        )
        assert "app.kubernetes.io/managed-by" not in (made.labels or {})
        eventually_status(
            lambda: core.patch_namespace(unique_user, managed_namespace(unique_user)), 200
        )
    finally:
        if status_of(partial(admin_core.read_namespace, unique_user)) == 200:
            admin_core.delete_namespace(unique_user)


def test_project_request_mode_run_as_the_service_account(
    simulators: Any, deployed: Path, api_client: Any, unique_user: str
) -> None:
    """The runner's own project-request path with this identity: ProjectRequest allowed, the
    wait on the Project allowed (without it the template's LimitRange can appear after the
    limit-ranges step looked), both namespaces end up labelled as the runner's."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    args = ["--user", unique_user, "--kubeconfig", str(deployed), "--project-request"]
    args += ["--steps", "namespace,rbac,istio-namespace,limit-ranges"]
    core = client.CoreV1Api(api_client)
    try:
        for _ in range(2):  # a re-run finds the projects and changes nothing it may not
            proc = run_runner(args, env)
            assert proc.returncode == 0, proc.stderr
        for ns in (unique_user, f"{unique_user}-istio"):
            labels = core.read_namespace(ns).metadata.labels or {}
            assert labels["app.kubernetes.io/managed-by"] == "workshop-runner"
        assert core.list_namespaced_limit_range(f"{unique_user}-istio").items == []
        assert "cannot watch Projects" not in proc.stdout + proc.stderr
    finally:
        for ns in (unique_user, f"{unique_user}-istio"):
            if status_of(partial(core.read_namespace, ns)) == 200:
                core.delete_namespace(ns)


def test_dry_run_as_the_service_account_asks_what_the_api_can_answer(
    simulators: Any, deployed: Path, api_client: Any, unique_user: str, tmp_path: Path
) -> None:
    """A dry run sends no ProjectRequest (openshift-apiserver ignores dryRun there and would
    make the project) but asks whether it may create one; it does send the member roll's
    write, and Maistra's webhook refuses it without the mesh-member binding that the dry run
    did not make: reported as such, exit 0, nothing created."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    result = tmp_path / "result.json"
    base = ["--user", unique_user, "--kubeconfig", str(deployed)]
    base += ["--termination-log", str(result)]
    core = client.CoreV1Api(api_client)

    def detail(step: str) -> str:
        steps = json.loads(result.read_text())["steps"]
        return str(next(s["detail"] for s in steps if s["name"] == step))

    try:
        dry = run_runner([*base, "--project-request", "--dry-run", "--steps", "namespace"], env)
        assert dry.returncode == 0, dry.stderr
        assert detail("namespace") == (
            f"would create project {unique_user} via ProjectRequest; "
            "dry-run: not waiting for Active"
        )
        assert status_of(partial(core.read_namespace, unique_user)) == 404
        made = run_runner([*base, "--steps", "namespace,istio-namespace"], env)
        assert made.returncode == 0, made.stderr
        roll = run_runner([*base, "--dry-run", "--steps", "member-roll"], env)
        assert roll.returncode == 0, roll.stderr
        assert detail("member-roll").startswith(
            f"would bind workshop-runner-mesh-member in {unique_user}; dry-run: refused as "
            "expected without the grant it did not make (create ServiceMeshMemberRoll "
            f"{unique_user}-istio/default: admission webhook"
        )
        assert "does not have permission to access namespace" in detail("member-roll")
        rbac = client.RbacAuthorizationV1Api(api_client)
        assert rbac.list_namespaced_role_binding(unique_user).items == []
    finally:
        for ns in (unique_user, f"{unique_user}-istio"):
            if status_of(partial(core.read_namespace, ns)) == 200:
                core.delete_namespace(ns)


# -- Events: one per run, where `kubectl get events` shows them ------------------------------


def test_each_run_records_one_event_on_the_user_namespace(
    deployed: Path, cluster: Cluster, api_client: Any, unique_user: str, tmp_path: Path
) -> None:
    """With a kubeconfig: `Provisioned`, then (a refused binding) `StepFailed`, both in the
    user's namespace about that Namespace, as the manifests' ServiceAccount."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    base = ["--user", unique_user, "--kubeconfig", str(deployed)]
    try:
        ok = run_runner([*base, "--steps", "namespace"], env)
        assert ok.returncode == 0, ok.stderr
        (tmp_path / "params.yaml").write_text("user_cluster_role: edit\n")
        bad = [*base, "--steps", "namespace,rbac", "--params", str(tmp_path / "params.yaml")]
        failed = run_runner(bad, env)
        assert failed.returncode == 4, failed.stderr
        assert "could not record" not in failed.stdout, failed.stdout[-3000:]
        events = kubectl_events(cluster.kubeconfig, unique_user)
        assert [(e["type"], e["reason"]) for e in events] == [
            ("Normal", "Provisioned"),
            ("Warning", "StepFailed"),
        ]
        for event in events:
            assert event["regarding"]["kind"] == "Namespace"
            assert event["regarding"]["name"] == unique_user
            assert event["reportingController"] == "workshop-runner"
            assert "eyJ" not in event["note"]
            assert "bearer" not in event["note"].lower()
        assert (
            events[0]["note"] == f"user {unique_user}: 1 step(s) changed (namespace), 0 unchanged"
        )
        assert events[1]["note"].startswith(
            f"user {unique_user}: step rbac failed with exit code 4: "
        )
    finally:
        client.CoreV1Api(api_client).delete_namespace(unique_user)


def test_in_a_pod_the_event_is_on_its_own_pod(
    deployed: Path, cluster: Cluster, api_client: Any, unique_user: str
) -> None:
    """The Event names the Pod from the downward API (POD_NAME, POD_NAMESPACE, POD_UID); the
    Pod itself need not exist for it (the progress annotation then only logs a warning)."""
    pod, uid = f"runner-{unique_user}", str(uuid.uuid4())
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}
    env.update(POD_NAME=pod, POD_NAMESPACE=NAMESPACE, POD_UID=uid)
    argv = ["--user", unique_user, "--kubeconfig", str(deployed), "--steps", "namespace"]
    try:
        ran = run_runner(argv, env)
        assert ran.returncode == 0, ran.stderr
        assert "could not record" not in ran.stdout, ran.stdout[-3000:]
        events = [
            e
            for e in kubectl_events(cluster.kubeconfig, NAMESPACE)
            if e["regarding"]["name"] == pod
        ]
        assert [(e["reason"], e["regarding"]["kind"], e["regarding"]["uid"]) for e in events] == [
            ("Provisioned", "Pod", uid)
        ]
        assert kubectl_events(cluster.kubeconfig, unique_user) == []
    finally:
        client.CoreV1Api(api_client).delete_namespace(unique_user)


def test_guard_keeps_events_to_the_runners_own(sa: Any, user_ns: str) -> None:
    """RBAC grants events.k8s.io create; admission narrows it to the runner's own Events
    about its Pod or the user's Namespace, in that object's namespace."""
    events = client.EventsV1Api(sa)
    note = Note("Normal", "Provisioned", "Provision", "x")
    own = Regarding("v1", "Namespace", user_ns, user_ns)
    eventually_status(
        lambda: events.create_namespaced_event(user_ns, event_body(own, note, "t")), 200
    )
    for regarding, controller in (
        (Regarding("v1", "ConfigMap", "x", user_ns), "workshop-runner"),
        (Regarding("v1", "Namespace", "other", user_ns), "workshop-runner"),
        (own, "kubelet"),
        (Regarding("v1", "Namespace", NAMESPACE, NAMESPACE), "workshop-runner"),
    ):
        body = {**event_body(regarding, note, "t"), "reportingController": controller}
        err = eventually_status(
            partial(events.create_namespaced_event, regarding.namespace, body), 403
        )
        assert "Events" in message(err), message(err)
