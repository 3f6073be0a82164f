"""The issue-4 steps against the real control plane (devcluster) with the simulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.test_runner_support import Objects

pytestmark = pytest.mark.integration
CORE = ["namespace", "catalog-source", "rbac", "istio-namespace", "limit-ranges"]
CORE_ARG = ",".join(CORE)


def core(statuses: dict[str, str]) -> dict[str, str]:
    """The issue-4 steps' statuses; every other step must have been left out of the run."""
    others = {name: status for name, status in statuses.items() if name not in CORE}
    assert set(others.values()) <= {"skipped"}, others
    return {name: status for name, status in statuses.items() if name in CORE}


def test_full_run_then_rerun_changes_nothing(
    simulators: Any, runner: Any, objects: Objects, unique_user: str
) -> None:
    first = runner("--user", unique_user, "--steps", CORE_ARG)
    assert first.code == 0, first.stderr
    assert first.result["outcome"] == "succeeded"
    assert core(first.statuses) == {
        "namespace": "changed",
        "catalog-source": "changed",
        "rbac": "changed",
        "istio-namespace": "changed",
        "limit-ranges": "unchanged",
    }
    assert "READY" in first.detail("catalog-source")
    ns = objects.namespace(unique_user)
    assert ns is not None
    assert ns.metadata.labels["app.kubernetes.io/managed-by"] == "workshop-runner"
    assert ns.metadata.labels["workshop-runner.io/user"] == unique_user
    for namespace in (unique_user, f"{unique_user}-istio"):
        binding = objects.rbac.read_namespaced_role_binding("workshop-user-admin", namespace)
        assert binding.role_ref.name == "admin"
        assert [(s.kind, s.name) for s in binding.subjects] == [("User", unique_user)]
    catalog = objects.catalogs.get(name="rhsso-catalog", namespace=unique_user)
    assert catalog.status.connectionState.lastObservedState == "READY"

    before = objects.resource_versions(unique_user)
    second = runner("--user", unique_user, "--steps", CORE_ARG)
    assert second.code == 0, second.stderr
    assert set(core(second.statuses).values()) == {"unchanged"}
    assert objects.resource_versions(unique_user) == before


def test_dry_run_creates_nothing(runner: Any, objects: Objects, unique_user: str) -> None:
    out = runner("--user", unique_user, "--dry-run", "--steps", CORE_ARG)
    assert out.code == 0, out.stderr
    assert out.statuses["namespace"] == "changed"
    assert out.detail("namespace") == f"would create Namespace {unique_user}"
    assert "dry-run: not waiting for READY" in out.detail("catalog-source")
    assert objects.exists(unique_user) == {"namespace": False, "istio": False}


def test_steps_skip_and_from(runner: Any, objects: Objects, unique_user: str) -> None:
    only = runner("--user", unique_user, "--steps", "namespace,rbac")
    assert only.code == 0, only.stderr
    assert core(only.statuses) == {
        "namespace": "changed",
        "catalog-source": "skipped",
        "rbac": "changed",
        "istio-namespace": "skipped",
        "limit-ranges": "skipped",
    }
    assert objects.exists(unique_user) == {"namespace": True, "istio": False}
    assert objects.catalogs.get(namespace=unique_user).items == []

    skipped = runner("--user", unique_user, "--skip", "catalog-source", "--steps", CORE_ARG)
    assert skipped.code == 0, skipped.stderr
    assert skipped.statuses["catalog-source"] == "skipped"
    assert skipped.statuses["namespace"] == "unchanged"
    assert skipped.statuses["istio-namespace"] == "changed"
    assert objects.exists(unique_user) == {"namespace": True, "istio": True}

    started = runner("--user", unique_user, "--from", "istio-namespace", "--steps", CORE_ARG)
    assert started.code == 0, started.stderr
    assert [n for n, s in started.statuses.items() if s != "skipped"] == [
        "istio-namespace",
        "limit-ranges",
    ]


def test_limit_ranges_listed_and_deleted(
    runner: Any, objects: Objects, api_client: Any, unique_user: str
) -> None:
    assert runner("--user", unique_user, "--steps", "namespace,istio-namespace").code == 0
    istio = f"{unique_user}-istio"
    for name in (f"{istio}-core-resource-limits", "some-other-name"):
        objects.core.create_namespaced_limit_range(
            istio,
            client.V1LimitRange(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1LimitRangeSpec(
                    limits=[client.V1LimitRangeItem(type="Container", default={"cpu": "500m"})]
                ),
            ),
        )
    dry = runner("--user", unique_user, "--steps", "limit-ranges", "--dry-run")
    assert dry.code == 0
    assert dry.detail("limit-ranges").startswith("would delete LimitRange")
    assert len(objects.core.list_namespaced_limit_range(istio).items) == 2

    out = runner("--user", unique_user, "--steps", "limit-ranges")
    assert out.code == 0, out.stderr
    assert out.statuses["limit-ranges"] == "changed"
    assert out.detail("limit-ranges") == (
        f"deleted LimitRange some-other-name, {istio}-core-resource-limits in {istio}"
    )
    assert objects.core.list_namespaced_limit_range(istio).items == []
    again = runner("--user", unique_user, "--steps", "limit-ranges")
    assert again.detail("limit-ranges") == f"no LimitRange in {istio}"


def test_openshift_project_request_limit_range_is_gone(
    simulators: Any, runner: Any, objects: Objects, unique_user: str
) -> None:
    out = runner("--user", unique_user, "--project-request", "--steps", CORE_ARG)
    assert out.code == 0, out.stderr
    assert "ProjectRequest" in out.detail("namespace")
    # the project's Namespace named the runner as requester; the forced apply took it over
    made = objects.namespace(unique_user)
    assert made is not None
    assert made.metadata.annotations["openshift.io/requester"] == unique_user
    istio = f"{unique_user}-istio"
    assert objects.namespace(istio) is not None
    assert objects.core.list_namespaced_limit_range(istio).items == []
    again = runner("--user", unique_user, "--project-request", "--steps", CORE_ARG)
    assert again.code == 0, again.stderr
    assert set(core(again.statuses).values()) == {"unchanged"}


def test_a_field_another_manager_set_is_reported_not_taken_over(
    simulators: Any, runner: Any, objects: Objects, unique_user: str
) -> None:
    assert runner("--user", unique_user, "--steps", "namespace").code == 0
    theirs = {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "CatalogSource",
        "metadata": {"name": "rhsso-catalog", "namespace": unique_user},
        "spec": {"sourceType": "grpc", "displayName": "Someone else's"},
    }
    objects.dyn.server_side_apply(objects.catalogs, body=theirs, field_manager="earlier-tool")
    out = runner("--user", unique_user, "--steps", "namespace,catalog-source")
    assert out.code == 3, out.stderr
    assert out.result["failed_step"] == "catalog-source"
    assert out.result["reason"].startswith(
        f"apply CatalogSource {unique_user}/rhsso-catalog: field(s) set to another value by "
        'another field manager: .spec.displayName owned by "earlier-tool"'
    )
    assert "Traceback" not in out.stderr
    live = objects.catalogs.get(name="rhsso-catalog", namespace=unique_user)
    assert live.spec.displayName == "Someone else's"


def test_free_text_param_with_yaml_stays_a_string(
    simulators: Any, runner: Any, objects: Objects, unique_user: str, tmp_path: Path
) -> None:
    evil = "Catalog\nkind: Secret\nmetadata: {name: stolen}"
    params = tmp_path / "params.yaml"
    params.write_text('catalog_display_name: "Catalog\\nkind: Secret\\nmetadata: {name: stolen}"\n')
    out = runner(
        "--user", unique_user, "--params", str(params), "--steps", "namespace,catalog-source"
    )
    assert out.code == 0, out.stderr
    catalog = objects.catalogs.get(name="rhsso-catalog", namespace=unique_user)
    assert catalog.spec.displayName == evil
    assert objects.core.list_namespaced_secret(unique_user).items == []


def test_catalog_never_ready_times_out_and_stops_the_run(
    sim_knobs: Any, runner: Any, objects: Objects, unique_user: str
) -> None:
    sim_knobs.set({"kind": "CatalogSource", "delay": 3600})
    out = runner("--user", unique_user, "--steps", CORE_ARG, "--timeout", "catalog-source=2")
    assert out.code == 5, out.stderr
    assert out.result["failed_step"] == "catalog-source"
    assert out.result["reason"] == (
        f"wait CatalogSource {unique_user}/rhsso-catalog READY: timed out, still queued: the "
        "operator has not reconciled it yet; last observed: "
        "connectionState.lastObservedState=(none)"
    )
    assert out.statuses["catalog-source"] == "failed"
    assert out.stderr.splitlines() == [
        f"workshop-runner: error: step catalog-source: {out.result['reason']}"
    ]


def test_failure_in_one_step_cancels_a_running_wait(
    sim_knobs: Any, runner: Any, objects: Objects, unique_user: str, tmp_path: Path
) -> None:
    sim_knobs.set({"kind": "CatalogSource", "delay": 3600})
    # rbac fails at the server (422: roleRef kind must be Role or ClusterRole) while
    # catalog-source is inside its watch; the run must stop at once, not at the 300 s deadline.
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "rbac.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
        "metadata:\n  name: broken\n  namespace: ${user_namespace}\n"
        "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: '${user}'}]\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Bogus, name: admin}\n"
    )
    out = runner(
        "--user",
        unique_user,
        "--templates",
        str(directory),
        "--steps",
        "namespace,catalog-source,rbac",
    )
    assert out.code == 3, out.stderr
    assert out.result["failed_step"] == "rbac"
    assert "apply RoleBinding" in out.result["reason"]
    assert out.statuses["catalog-source"] == "skipped"
    assert out.detail("catalog-source") == "cancelled: step rbac failed"
    step_ms = {s["name"]: s["ms"] for s in out.result["steps"]}
    assert step_ms["catalog-source"] < 10_000


def test_terminating_namespace_is_a_retryable_failure(
    runner: Any, objects: Objects, unique_user: str
) -> None:
    assert runner("--user", unique_user, "--steps", "namespace").code == 0
    # A pod-less namespace with a finalizer of ours stays Terminating until we remove it.
    objects.core.patch_namespace(unique_user, {"metadata": {"finalizers": ["example.com/hold"]}})
    objects.core.delete_namespace(unique_user)
    try:
        out = runner("--user", unique_user, "--steps", "namespace,rbac")
        assert out.code == 5, out.stderr
        assert out.result["failed_step"] == "namespace"
        assert f"Namespace {unique_user} is being deleted" in out.result["reason"]
        assert out.statuses["rbac"] == "skipped"
    finally:
        objects.core.patch_namespace(unique_user, {"metadata": {"finalizers": None}})


def test_catalog_transient_failure_is_waited_on_then_reported(
    sim_knobs: Any, runner: Any, unique_user: str
) -> None:
    # TRANSIENT_FAILURE is not terminal for OLM (it keeps reconnecting): keep waiting, and at
    # the deadline report the state last seen.
    sim_knobs.set({"kind": "CatalogSource", "fail": True})
    out = runner(
        "--user",
        unique_user,
        "--steps",
        "namespace,catalog-source",
        "--timeout",
        "catalog-source=3",
    )
    assert out.code == 5, out.stderr
    assert out.result["reason"].endswith(
        "last observed: connectionState.lastObservedState=TRANSIENT_FAILURE"
    )
