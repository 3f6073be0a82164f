"""The local control plane acts like a real cluster: SSA, CRD status, watch, RBAC, controllers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException

from devcluster import build
from devcluster.cluster import Cluster, pid_alive

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Bounded wait for a real controller to act (not a unit-test sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def dyn(api_client: Any) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api_client)


def test_version_is_stamped(cluster: Cluster) -> None:
    status, body = cluster.raw("/version")
    assert status == 200
    info = json.loads(body)
    assert info["gitVersion"] == build.KUBE_VERSION
    assert info["minor"] == build.KUBE_VERSION.split(".")[1]


def test_server_side_apply_is_idempotent(dyn: dynamic.DynamicClient, unique_user: str) -> None:
    ns = dyn.resources.get(api_version="v1", kind="Namespace")
    # With only a name, an applier owns no field: the apiserver then records no managedFields
    # and the next apply adds a "before-first-apply" entry (one write). Real manifests carry labels.
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": unique_user, "labels": {"workshop-runner.io/user": unique_user}},
    }
    first = ns.server_side_apply(body=body, field_manager="devcluster-test")
    again = ns.server_side_apply(body=body, field_manager="devcluster-test")
    assert first.metadata.resourceVersion == again.metadata.resourceVersion
    body["metadata"]["labels"]["changed"] = "yes"
    changed = ns.server_side_apply(body=body, field_manager="devcluster-test")
    assert changed.metadata.resourceVersion != first.metadata.resourceVersion


def test_custom_resource_round_trip_with_status(
    dyn: dynamic.DynamicClient, api_client: Any, unique_user: str
) -> None:
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": unique_user}})
    smcp = dyn.resources.get(api_version="maistra.io/v2", kind="ServiceMeshControlPlane")
    created = smcp.create(
        namespace=unique_user,
        body={
            "apiVersion": "maistra.io/v2",
            "kind": "ServiceMeshControlPlane",
            "metadata": {"name": "basic"},
            "spec": {"version": "v2.4", "tracing": {"type": "Jaeger", "sampling": 10000}},
        },
    )
    assert created.metadata.generation == 1
    # The status subresource: a status write does not bump generation, a spec write via
    # /status is ignored.
    status_body = created.to_dict()
    status_body["status"] = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True"}],
        "readiness": {"components": {}},  # required in maistra/api 2.4's v2 status
    }
    status_body["spec"]["version"] = "v9.9"
    updated = smcp.status.replace(namespace=unique_user, body=status_body)
    assert updated.status.conditions[0].status == "True"
    assert updated.spec.version == "v2.4"
    assert updated.metadata.generation == 1
    with pytest.raises(ApiException) as bad:
        smcp.create(
            namespace=unique_user,
            body={
                "apiVersion": "maistra.io/v2",
                "kind": "ServiceMeshControlPlane",
                "metadata": {"name": "bad"},
                "spec": {"tracing": {"sampling": "all"}},  # int32 in maistra/api
            },
        )
    assert bad.value.status == 422


def test_watch_sees_an_update(api_client: Any, unique_user: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": unique_user}})
    cm = core.create_namespaced_config_map(
        unique_user, {"metadata": {"name": "probe"}, "data": {"v": "1"}}
    )
    core.patch_namespaced_config_map("probe", unique_user, {"data": {"v": "2"}})
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map,
        unique_user,
        resource_version=cm.metadata.resource_version,
        timeout_seconds=10,
    ):
        seen.append((event["type"], event["object"].data.get("v")))
        if seen[-1] == ("MODIFIED", "2"):
            break
    assert ("MODIFIED", "2") in seen


def test_service_account_needs_rbac(cluster: Cluster, api_client: Any, unique_user: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": unique_user}})
    core.create_namespaced_service_account(unique_user, {"metadata": {"name": "bot"}})
    sa_config = client.Configuration()
    config.load_kube_config(
        str(cluster.sa_kubeconfig(unique_user, "bot")), client_configuration=sa_config
    )
    target = {"metadata": {"name": f"{unique_user}-made"}}
    with client.ApiClient(sa_config) as sa_api:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(sa_api).create_namespace(target)
        assert denied.value.status == 403
        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_cluster_role(
            {
                "metadata": {"name": f"{unique_user}-ns"},
                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}],
            }
        )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": f"{unique_user}-ns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"{unique_user}-ns",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": unique_user}],
            }
        )

        def create_once_allowed() -> Any:
            # The authorizer sees the new binding through an informer: allowed within moments.
            try:
                return client.CoreV1Api(sa_api).create_namespace(target)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return None

        made = eventually(create_once_allowed, what="the ClusterRoleBinding to take effect")
    assert made.metadata.name == f"{unique_user}-made"


def test_in_cluster_environment(
    cluster: Cluster, api_client: Any, unique_user: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": unique_user}})
    core.create_namespaced_service_account(unique_user, {"metadata": {"name": "bot"}})
    env = cluster.in_cluster_env(unique_user, "bot", tmp_path / "sa")
    sa_dir = Path(env["WORKSHOP_RUNNER_SERVICEACCOUNT_DIR"])
    loader = config.incluster_config.InClusterConfigLoader(
        token_filename=str(sa_dir / "token"), cert_filename=str(sa_dir / "ca.crt"), environ=env
    )
    cfg = client.Configuration()
    loader.load_and_set(cfg)
    with client.ApiClient(cfg) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review({})
    assert review.status.user_info.username == f"system:serviceaccount:{unique_user}:bot"
    assert (sa_dir / "namespace").read_text() == unique_user


def test_deleted_namespace_goes_away(api_client: Any, unique_user: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": unique_user}})
    core.create_namespaced_config_map(unique_user, {"metadata": {"name": "x"}})
    core.delete_namespace(unique_user)

    def gone() -> bool:
        try:
            core.read_namespace(unique_user)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    eventually(gone, what=f"namespace {unique_user} to be deleted by the namespace controller")


def test_job_controller_creates_a_pod(api_client: Any, unique_user: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": unique_user}})
    client.BatchV1Api(api_client).create_namespaced_job(
        unique_user,
        {
            "metadata": {"name": "hello"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                    }
                }
            },
        },
    )
    pods = eventually(
        lambda: core.list_namespaced_pod(unique_user, label_selector="job-name=hello").items,
        what="the job controller to create a pod",
    )
    assert pods[0].metadata.owner_references[0].kind == "Job"
    # The serviceaccount controller made the default SA the pod runs as.
    assert core.read_namespaced_service_account("default", unique_user)


def test_cli_up_status_down(tmp_path: Path) -> None:
    """`python -m devcluster up` prints a kubeconfig that kubectl can use; `down` stops it all."""
    env = {**os.environ, "DEVCLUSTER_STATE": str(tmp_path / "state")}
    cli = [sys.executable, "-m", "devcluster"]
    up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    kubeconfig = up.stdout.strip()
    assert Path(kubeconfig).is_file()
    again = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() == kubeconfig
    assert "already running" in again.stderr
    kubectl = Path(sys.executable).with_name("kubectl")
    readyz = subprocess.run(
        [
            str(kubectl) if kubectl.exists() else "kubectl",
            "--kubeconfig",
            kubeconfig,
            "get",
            "--raw",
            "/readyz",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert readyz.stdout.strip() == "ok", readyz.stderr
    running = Cluster.load(tmp_path / "state")
    assert running is not None
    pids = dict(running.pids)
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not (tmp_path / "state").exists()
