"""Table-driven step tests: given objects and parameters, the actions taken or the no-op reason.
The cluster is an in-memory fake with the runner.kube surface the steps use."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runner import config, templates
from runner.context import StepContext
from runner.errors import Forbidden, TemporaryCondition
from runner.kube import Applied, Mutate, StepKube, Updated, describe, in_sync, read_modify_write
from runner.logs import get_logger
from runner.result import StepResult, perform
from runner.waits import CancelToken, Deadline, Target
from steps import catalog_source, istio_namespace, limit_ranges, namespace, rbac

Key = tuple[str, str | None, str]
ALL_APIS = {
    ("v1", "Namespace"),
    ("v1", "LimitRange"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("operators.coreos.com/v1alpha1", "CatalogSource"),
    ("project.openshift.io/v1", "ProjectRequest"),
    ("project.openshift.io/v1", "Project"),
}
NO_OPENSHIFT = {a for a in ALL_APIS if not a[0].startswith("project.")}
RUNNER = "system:serviceaccount:workshop-runner:workshop-runner"


class FakeKube:
    def __init__(
        self, objects: list[dict[str, Any]], apis: set[tuple[str, str]], dry_run: bool
    ) -> None:
        self.objects: dict[Key, dict[str, Any]] = {self.key(o): o for o in objects}
        self.apis, self.dry_run = apis, dry_run
        self.actions: list[str] = []
        self.forced: list[Key] = []  # what was applied with force
        self.fresh_namespaces: set[str] = set()  # as if this process had created them
        # Where this identity may update pods (None: everywhere, as a cluster admin).
        self.pod_updaters: set[str] | None = None
        self.username_asked = 0

    def fresh(self, namespace: str | None) -> bool:
        return not self.dry_run and namespace in self.fresh_namespaces

    def may(self, verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
        assert (verb, resource, group) == ("update", "pods", "")
        return self.pod_updaters is None or namespace in self.pod_updaters

    def username(self) -> str:
        self.username_asked += 1
        return RUNNER

    def retry_forbidden(
        self, fn: Callable[[], Any], when: Callable[[Forbidden], bool], seconds: float
    ) -> Any:
        """Kube.retry_forbidden without time: retried up to 3 times while `seconds` > 0."""
        for attempt in range(4):
            try:
                return fn()
            except Forbidden as e:
                if not when(e) or seconds <= 0 or attempt == 3:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return obj["kind"], meta.get("namespace"), meta["name"]

    def has_api(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.apis

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def apply(self, desired: dict[str, Any], *, force: bool = False) -> Applied:
        key = self.key(desired)
        if force:
            self.forced.append(key)
        what = describe(key[0], key[2], key[1])
        before = self.objects.get(key)
        if before is not None and in_sync(desired, before):
            return Applied(before, False, f"{what} exists and matches")
        self.actions.append(f"apply {what}")
        if self.dry_run:
            return Applied(desired, True, f"would create {what}")
        merged = {**(before or {}), **desired}
        if before and "status" in before:
            merged["status"] = before["status"]
        self.objects[key] = merged
        return Applied(merged, True, f"{'updated' if before else 'created'} {what}")

    def update(self, target: Target, mutate: Mutate, *, known: Any = None) -> Updated:
        absent = known is None and self.fresh(target.namespace)
        return read_modify_write(self, target, mutate, known=known, absent=absent)

    def create(self, body: dict[str, Any]) -> Any:
        kind, namespace, name = self.key(body)
        self.actions.append(f"create {describe(kind, name, namespace)}")
        if self.key(body) in self.objects:
            return None
        if body["kind"] == "ProjectRequest" and not self.dry_run:
            name = body["metadata"]["name"]
            self.objects[("Namespace", None, name)] = {
                "kind": "Namespace",
                "metadata": {"name": name},
            }
            self.objects[("Project", None, name)] = {
                "kind": "Project",
                "metadata": {"name": name, "resourceVersion": "5"},
                "status": {"phase": "Active"},
            }
            # The project template makes the requester (the runner) admin of the project.
            self.objects[("RoleBinding", name, "admin")] = {
                "kind": "RoleBinding",
                "metadata": {"name": "admin", "namespace": name},
                "roleRef": {"kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "User", "name": RUNNER}],
            }
            lr = f"{name}-core-resource-limits"
            self.objects[("LimitRange", name, lr)] = {
                "kind": "LimitRange",
                "metadata": {"name": lr, "namespace": name},
            }
        return body

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        self.actions.append(f"delete {describe(kind, name, namespace)}")
        if self.dry_run:
            return (kind, namespace, name) in self.objects
        return self.objects.pop((kind, namespace, name), None) is not None

    def merge_patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Any
    ) -> Any:
        raise AssertionError("the core steps never patch")

    def list_items(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> tuple[list[Any], str]:
        items = [o for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]
        return items, "10"

    def list_objects(self, target: Target) -> tuple[list[Any], str]:
        items, rv = self.list_items(target.api_version, target.kind, target.namespace)
        return [o for o in items if o["metadata"]["name"] == target.name], rv

    def watch_objects(self, target: Target, rv: str, timeout: int) -> Iterator[Any]:
        raise AssertionError("the fake never needs to watch")


def run_step(
    step: Any,
    objects: list[dict[str, Any]] | None = None,
    *,
    mode: str = "namespace",
    apis: set[tuple[str, str]] = ALL_APIS,
    dry_run: bool = False,
) -> tuple[StepResult, FakeKube]:
    user = config.User("user1")
    params = config.load_params(None, user, project_request=mode == "project-request")
    rendered = {n: templates.render(t, params) for n, t in templates.load_templates(None).items()}
    kube = FakeKube(objects or [], apis, dry_run)
    step_kube: StepKube = kube  # mypy checks that the fake is a StepKube
    cancel = CancelToken()
    ctx = StepContext(
        step.NAME,
        user,
        params,
        rendered,
        step_kube,
        get_logger(),
        Deadline.after(5),
        cancel,
        dry_run,
    )
    return perform(step.run, ctx), kube


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_namespace_created() -> None:
    result, kube = run_step(namespace)
    assert result == StepResult(True, "created Namespace user1")
    assert kube.actions == ["apply Namespace user1"]


def test_namespace_already_there() -> None:
    existing = run_step(namespace)[1].objects[("Namespace", None, "user1")]
    result, kube = run_step(namespace, [existing])
    assert result == StepResult(False, "Namespace user1 exists and matches")
    assert kube.actions == []


def test_namespace_being_deleted_is_a_temporary_condition() -> None:
    existing = run_step(namespace)[1].objects[("Namespace", None, "user1")]
    existing["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    with pytest.raises(TemporaryCondition, match="being deleted") as e:
        run_step(namespace, [existing])
    assert e.value.exit_code == 5


def test_namespace_labels_repaired() -> None:
    result, kube = run_step(namespace, [ns("user1", **{"app.kubernetes.io/managed-by": "someone"})])
    assert result == StepResult(True, "updated Namespace user1")
    # openshift-apiserver's annotations on a project made by someone else: taken over
    assert kube.forced == [("Namespace", None, "user1")]


def test_project_request_then_labels_then_drops_the_runners_own_admin() -> None:
    result, kube = run_step(namespace, mode="project-request")
    assert result == StepResult(
        True,
        "created project user1 via ProjectRequest; dropped the runner's own RoleBinding(s) admin",
    )
    assert kube.actions == [
        "create ProjectRequest user1",
        "apply Namespace user1",
        "delete RoleBinding user1/admin",
    ]
    # openshift-apiserver wrote the requester annotation (the runner): taken over
    assert kube.forced == [("Namespace", None, "user1")]


def test_project_request_rerun_drops_only_bindings_of_the_runner_alone() -> None:
    def binding(name: str, *subjects: dict[str, str]) -> dict[str, Any]:
        return {
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": "user1"},
            "subjects": list(subjects),
        }

    me = {"kind": "ServiceAccount", "name": "workshop-runner", "namespace": "workshop-runner"}
    user = {"kind": "User", "name": "user1"}
    mesh = binding("workshop-runner-mesh-member", me)
    mesh["roleRef"] = {"kind": "ClusterRole", "name": "workshop-runner-mesh-member"}
    kept = [binding("workshop-user-admin", user), binding("shared", me, user), binding("none")]
    kept.append(mesh)
    existing = [ns("user1"), binding("leftover", me), *kept]
    result, kube = run_step(namespace, existing, mode="project-request")
    assert kube.actions == ["apply Namespace user1", "delete RoleBinding user1/leftover"]
    assert result.changed
    assert all(("RoleBinding", "user1", b["metadata"]["name"]) in kube.objects for b in kept)


def test_project_request_not_served_falls_back_to_namespace() -> None:
    result, kube = run_step(namespace, mode="project-request", apis=NO_OPENSHIFT)
    assert result == StepResult(True, "created Namespace user1")
    assert kube.actions == ["apply Namespace user1"]


def test_project_request_skipped_when_namespace_exists() -> None:
    result, kube = run_step(namespace, [ns("user1")], mode="project-request")
    assert kube.actions == ["apply Namespace user1"]
    assert result == StepResult(True, "updated Namespace user1")


def test_project_request_dry_run() -> None:
    result, kube = run_step(namespace, mode="project-request", dry_run=True)
    # the request goes to the kube layer, which decides how a dry run checks it (Kube.create)
    assert kube.actions == ["create ProjectRequest user1"]
    assert result == StepResult(
        True, "would create project user1 via ProjectRequest; dry-run: not waiting for Active"
    )
    assert kube.objects == {}


def test_istio_namespace_and_binding() -> None:
    result, kube = run_step(istio_namespace)
    assert kube.actions == [
        "apply Namespace user1-istio",
        "apply RoleBinding user1-istio/workshop-user-admin",
    ]
    assert result.changed


def test_rbac() -> None:
    result, _ = run_step(rbac)
    assert result == StepResult(True, "created RoleBinding user1/workshop-user-admin")


def lr(name: str, namespace: str = "user1-istio") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": name, "namespace": namespace},
    }


@pytest.mark.parametrize(
    ("objects", "detail", "actions"),
    [
        ([], "no LimitRange in user1-istio", []),
        ([lr("x", "user1")], "no LimitRange in user1-istio", []),
        (
            [lr("user1-istio-core-resource-limits"), lr("another")],
            "deleted LimitRange another, user1-istio-core-resource-limits in user1-istio",
            [
                "delete LimitRange user1-istio/another",
                "delete LimitRange user1-istio/user1-istio-core-resource-limits",
            ],
        ),
    ],
)
def test_limit_ranges(objects: list[dict[str, Any]], detail: str, actions: list[str]) -> None:
    result, kube = run_step(limit_ranges, objects)
    assert result.detail == detail
    assert result.changed == bool(actions)
    assert kube.actions == actions


def test_limit_ranges_after_a_project_request() -> None:
    _, kube = run_step(istio_namespace, mode="project-request")
    leftovers = list(kube.objects.values())
    result, _ = run_step(limit_ranges, leftovers)
    assert result.detail == "deleted LimitRange user1-istio-core-resource-limits in user1-istio"


def test_catalog_source_ready_without_waiting() -> None:
    ready = {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "CatalogSource",
        "metadata": {"name": "rhsso-catalog", "namespace": "user1"},
        "status": {"connectionState": {"lastObservedState": "READY"}},
    }
    result, _ = run_step(catalog_source, [ready])
    assert result == StepResult(
        True,
        "created NetworkPolicy user1/istio-mesh-workshop-all; "
        "updated CatalogSource user1/rhsso-catalog; READY",
    )


def test_catalog_source_applies_the_workshop_network_policy_first() -> None:
    """Ingress from every namespace: OLM keeps reaching the registry pod once Maistra's own
    policies (mesh members only) are copied into the namespace."""
    result, kube = run_step(catalog_source, dry_run=True)
    assert kube.actions == [
        "apply NetworkPolicy user1/istio-mesh-workshop-all",
        "apply CatalogSource user1/rhsso-catalog",
    ]
    (policy,) = catalog_source_policy()
    assert policy["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {}}]}],
    }
    assert result.detail.endswith("dry-run: not waiting for READY")


def catalog_source_policy() -> list[dict[str, Any]]:
    params = config.load_params(None, config.User("user1"), project_request=False)
    return templates.render(templates.load_templates(None)["network-policy.yaml"], params)


def catalog(state: str) -> dict[str, Any]:
    return {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "CatalogSource",
        "metadata": {"name": "rhsso-catalog", "namespace": "user1"},
        "status": {"connectionState": {"lastObservedState": state}},
    }


def test_catalog_source_rerun_does_not_wait_once_the_pinned_csv_succeeded() -> None:
    """A re-run after Maistra cut the catalog off (TRANSIENT_FAILURE): the pinned CSV is
    installed, so the catalog is not needed any more."""
    csv = {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {"name": "rhsso-operator.7.5.2-opr-001", "namespace": "user1"},
        "status": {"phase": "Succeeded"},
    }
    (policy,) = catalog_source_policy()
    result, _ = run_step(catalog_source, [policy, catalog("TRANSIENT_FAILURE"), csv])
    assert result.detail.endswith(
        "not READY (TRANSIENT_FAILURE), but rhsso-operator.7.5.2-opr-001 has Succeeded: "
        "not waiting for the catalog"
    )


def test_catalog_source_rerun_waits_while_the_pinned_csv_is_not_there() -> None:
    (policy,) = catalog_source_policy()
    with pytest.raises(AssertionError, match="never needs to watch"):
        run_step(catalog_source, [policy, catalog("TRANSIENT_FAILURE")])
