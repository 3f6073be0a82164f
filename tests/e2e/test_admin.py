"""The workshop admin's entry points end to end on devcluster: rendered manifests applied by
kubectl, preflight, the canary launch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from devcluster.cluster import Cluster
from tests.e2e.support import IMAGE, clean_env, namespace_exists

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
KUBECTL = Path(sys.executable).parent / "kubectl"
DEPLOY = Path(__file__).resolve().parents[2] / "manifests" / "deploy"
APP = "workshop-runner"


def test_rendered_output_applied_by_kubectl_is_the_launch(
    fleet_cluster: Cluster, wr: Any, prefix: str, tmp_path: Path
) -> None:
    kubeconfig = fleet_cluster.kubeconfig
    launch_id = f"{prefix}r".replace("-", "")
    users = f"{prefix}1,{prefix}2"
    out = tmp_path / "rendered"
    common = ("--users", users, "--image", IMAGE, "--launch-id", launch_id)
    rendered = wr(kubeconfig, "launch", *common, "--render", "-o", str(out))
    assert rendered.rc == 0, rendered.stderr
    assert not namespace_exists(fleet_cluster, f"{prefix}1")  # --render applied nothing
    kubectl(fleet_cluster, "apply", "--server-side", "--field-manager", APP, "-f", str(out))
    followed = wr(kubeconfig, "status", "--launch", launch_id)
    assert followed.rc == 0, followed.stdout + followed.stderr
    assert followed.summary["counts"] == {"succeeded": 2, "failed": 0, "unfinished": 0}
    for user in followed.users().values():
        assert user["steps_done"], user
    # `launch` with the same id finds every object the rendered output made as it would
    # have made it: it only adds the ConfigMap's owner references (UIDs a render cannot know).
    again = wr(kubeconfig, "launch", *common)
    assert again.rc == 0, again.stdout + again.stderr
    made = again.stderr.split("applied: ")[1].split(" (")[0]
    assert made == f"ConfigMap workshop-runner/wr-{launch_id}", again.stderr


PACKAGE_MANIFEST_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "packagemanifests.packages.operators.coreos.com"},
    "spec": {
        "group": "packages.operators.coreos.com",
        "names": {"kind": "PackageManifest", "plural": "packagemanifests"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def checks(ran: Any) -> dict[str, str]:
    """`preflight` output -> {check: PASS|FAIL|SKIP}."""
    found = {}
    for line in ran.stdout.splitlines():
        word, _, rest = line.partition("  ")
        if word in ("PASS", "FAIL", "SKIP"):
            found[rest.split()[0]] = word
    return found


def line_of(ran: Any, check: str) -> str:
    lines = ran.stdout.splitlines()
    at = next(i for i, x in enumerate(lines) if x.split()[1:2] == [check])
    return "\n".join(lines[at : at + 2])


def until(predicate: Any, seconds: float = 60) -> Any:
    """The apiserver's admission and RBAC caches follow a change within moments."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


@pytest.fixture
def deployed(fleet_cluster: Cluster) -> Cluster:
    """The deploy base applied as the README says (kubectl, as a cluster admin). An earlier
    launch of this session may own the guard's fields (matchConstraints is atomic and
    defaulted, so kubectl's value always differs): hence --force-conflicts."""
    kubectl(fleet_cluster, "apply", "--server-side", "--force-conflicts", "-k", str(DEPLOY.parent))
    return fleet_cluster


def kubectl(cluster: Cluster, *args: str) -> None:
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr


def test_preflight_passes_on_a_ready_cluster(deployed: Cluster, wr: Any) -> None:
    kubeconfig = deployed.kubeconfig
    # just applied: RBAC and admission enforce it once the API server's caches caught up
    ran = until(lambda: _passed(wr(kubeconfig, "preflight")))
    assert ran, "preflight did not pass after the deploy base was applied"
    assert checks(ran) == {
        "apis": "PASS",
        "operators": "PASS",
        "guard": "PASS",
        "rbac": "PASS",
        "member-roll": "PASS",
        # skipped, saying why, while the guard takes no parameters
        "catalog-image": "PASS" if guard_takes_parameters() else "SKIP",
        # OLM's packageserver is not served on devcluster
        "catalog-csv": "SKIP",
    }
    assert "PackageManifest is not served" in line_of(ran, "catalog-csv")


def test_preflight_fails_apis_operators_rbac_with_what_to_do(
    fleet_cluster: Cluster, wr: Any, tmp_path: Path
) -> None:
    kubeconfig = fleet_cluster.kubeconfig
    # apis: a template of a kind nobody serves
    extra = tmp_path / "templates"
    extra.mkdir()
    (extra / "widget.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n"
        "  name: w\n  namespace: '{{ user_namespace }}'\n"
    )
    ran = wr(kubeconfig, "preflight", "--templates", str(extra))
    assert ran.rc == 13, ran.stdout + ran.stderr
    assert checks(ran)["apis"] == "FAIL"
    assert "Widget (example.com/v1, step extra)" in line_of(ran, "apis")
    assert "-> install the operators" in line_of(ran, "apis")
    # operators: none installed where we look
    ran = wr(kubeconfig, "preflight", "--operators-namespace", "kube-public")
    assert (ran.rc, checks(ran)["operators"]) == (13, "FAIL"), ran.stdout
    assert "no CSV servicemeshoperator.*" in line_of(ran, "operators")
    # rbac: a Jobs namespace whose ServiceAccount nothing is bound to
    ran = wr(kubeconfig, "preflight", "--namespace", "elsewhere")
    assert (ran.rc, checks(ran)["rbac"]) == (13, "FAIL"), ran.stdout
    assert "system:serviceaccount:elsewhere:workshop-runner may not" in line_of(ran, "rbac")


def test_preflight_catalog_csv_where_package_manifests_are_served(
    fleet_cluster: Cluster, wr: Any, tmp_path: Path
) -> None:
    """A catalog that lacks the pinned CSV fails; one that lists it passes."""
    kubeconfig = fleet_cluster.kubeconfig
    params = tmp_path / "params.yaml"
    params.write_text("sso_starting_csv: rhsso-operator.7.6.0-opr-001\n")
    with fleet_cluster.api_client() as api:
        from kubernetes import client, dynamic

        crds = client.ApiextensionsV1Api(api)
        crds.create_custom_resource_definition(PACKAGE_MANIFEST_CRD)
        try:
            dyn = dynamic.DynamicClient(api)
            manifests = until(lambda: _resource(dyn, "packages.operators.coreos.com/v1"))
            manifests.create(
                namespace="default",
                body={
                    "apiVersion": "packages.operators.coreos.com/v1",
                    "kind": "PackageManifest",
                    "metadata": {"name": "rhsso-operator", "namespace": "default"},
                    "status": {
                        "catalogSource": "redhat-operators",
                        "channels": [
                            {
                                "name": "stable",
                                "currentCSV": "rhsso-operator.7.6.1-opr-001",
                                "entries": [{"name": "rhsso-operator.7.5.2-opr-001"}],
                            }
                        ],
                    },
                },
            )
            ran = wr(kubeconfig, "preflight", "--params", str(params))
            assert (ran.rc, checks(ran)["catalog-csv"]) == (13, "FAIL"), ran.stdout
            assert "no catalog offers rhsso-operator.7.6.0-opr-001" in line_of(ran, "catalog-csv")
            ran = wr(kubeconfig, "preflight")
            assert checks(ran)["catalog-csv"] == "PASS", ran.stdout
        finally:
            crds.delete_custom_resource_definition(PACKAGE_MANIFEST_CRD["metadata"]["name"])


def test_preflight_fails_member_roll_and_guard_when_removed(deployed: Cluster, wr: Any) -> None:
    fleet_cluster = deployed
    kubeconfig = fleet_cluster.kubeconfig
    # member-roll: the ClusterRole Maistra's review needs removed, then put back
    (role,) = yaml.safe_load_all((DEPLOY / "clusterrole-mesh-member.yaml").read_text())
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        rbac = client.RbacAuthorizationV1Api(api)
        rbac.delete_cluster_role(role["metadata"]["name"])
        try:
            ran = wr(kubeconfig, "preflight")
            assert (ran.rc, checks(ran)["member-roll"]) == (13, "FAIL"), ran.stdout
            assert "ClusterRole workshop-runner-mesh-member is missing" in line_of(
                ran, "member-roll"
            )
        finally:
            rbac.create_cluster_role(role)
    # guard: the policies' bindings removed, then put back
    bindings = [d for d in guard_documents() if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        admission = client.AdmissionregistrationV1Api(api)
        for binding in bindings:
            admission.delete_validating_admission_policy_binding(binding["metadata"]["name"])
        try:
            ran = until(lambda: _failed(wr(kubeconfig, "preflight"), "guard"))
            assert ran, "the guard check never failed without the bindings"
            assert "the admission guard workshop-runner-guard is not live" in line_of(ran, "guard")
        finally:
            for binding in bindings:
                admission.create_validating_admission_policy_binding(binding)
    assert until(lambda: checks(wr(kubeconfig, "preflight")).get("guard") == "PASS")


def guard_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "admission-policy.yaml").read_text()) if d]


def guard_takes_parameters() -> bool:
    return any((d.get("spec") or {}).get("paramKind") for d in guard_documents())


def test_preflight_catalog_image_against_the_guard(
    deployed: Cluster, wr: Any, tmp_path: Path
) -> None:
    """Where the guard pins the catalog image by a parameter object, another image fails;
    a guard without parameters allows any image, and the check says so."""
    params = tmp_path / "params.yaml"
    params.write_text("catalog_image: registry.example.com/other-index:v1\n")
    ran = wr(deployed.kubeconfig, "preflight", "--params", str(params))
    if guard_takes_parameters():
        assert (ran.rc, checks(ran)["catalog-image"]) == (13, "FAIL"), ran.stdout
        assert "registry.example.com/other-index:v1" in line_of(ran, "catalog-image")
    else:
        assert checks(ran)["catalog-image"] == "SKIP", ran.stdout
        assert "takes no parameters" in line_of(ran, "catalog-image")


def _passed(ran: Any) -> Any:
    return ran if ran.rc == 0 else None


def _failed(ran: Any, check: str) -> Any:
    return ran if ran.rc == 13 and checks(ran).get(check) == "FAIL" else None


def _resource(dyn: Any, api_version: str) -> Any:
    try:
        dyn.resources.invalidate_cache()
        return dyn.resources.get(api_version=api_version, kind="PackageManifest")
    except ResourceNotFoundError:  # not served yet
        return None


def test_canary_failure_starts_nobody_else(
    fleet_cluster: Cluster, wr: Any, prefix: str, tmp_path: Path
) -> None:
    """The second canary user's namespace exists and is not the runner's: the guard refuses
    it (exit 4, no retry), so the canary fails and users 3-4 are never started."""
    victim = f"{prefix}2"
    launch_id = f"{prefix}k".replace("-", "")
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        client.CoreV1Api(api).create_namespace({"metadata": {"name": victim}})
    ran = wr(
        fleet_cluster.kubeconfig,
        *("launch", "--count", "4", "--prefix", prefix, "--image", IMAGE),
        *("--canary", "2", "--launch-id", launch_id, "--skip-preflight"),
    )
    assert ran.rc == 14, ran.stdout + ran.stderr
    assert f"canary {victim} failed: step namespace: " in ran.stderr
    assert f"2 other user(s) not started ({prefix}3, {prefix}4)" in ran.stderr
    assert ran.summary is not None
    assert ran.summary["canary"] == {
        "outcome": "failed",
        "not_started": [f"{prefix}3", f"{prefix}4"],
    }
    assert ran.users()[f"{prefix}1"]["outcome"] == "succeeded"
    with fleet_cluster.api_client() as api:
        from kubernetes import client

        jobs = client.BatchV1Api(api).list_namespaced_job(
            "workshop-runner",
            label_selector=f"workshop-runner.io/launch in ({launch_id},{launch_id}-c)",
        )
    assert [j.metadata.name for j in jobs.items] == [f"wr-{launch_id}-c"]
    assert not namespace_exists(fleet_cluster, f"{prefix}3")


def test_canary_success_then_the_rest(fleet_cluster: Cluster, wr: Any, prefix: str) -> None:
    ran = wr(
        fleet_cluster.kubeconfig,
        *("launch", "--count", "3", "--prefix", prefix, "--image", IMAGE, "--canary", "1"),
    )
    assert ran.rc == 0, ran.stdout + ran.stderr
    assert ran.summary["counts"] == {"succeeded": 3, "failed": 0, "unfinished": 0}
    assert [u["user"] for u in ran.summary["users"]] == [f"{prefix}{n}" for n in (1, 2, 3)]
    canary = ran.summary["canary"]
    assert (canary["launch"], canary["users"]) == (f"{ran.summary['launch']}-c", [f"{prefix}1"])
    assert f"canary {canary['launch']}: 1 user(s) succeeded; launching the other 2" in ran.stderr
    assert [x["event"] for x in ran.lines() if "summary" in x["event"]] == [
        "canary-summary",
        "summary",
    ]
