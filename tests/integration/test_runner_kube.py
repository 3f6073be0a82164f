"""runner.kube against the real API server: discovery count, SSA change detection, and a
wait whose open watch is woken by cancellation."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner import errors
from runner.kube import FIELD_MANAGER, Cluster, Kube, load_configuration
from runner.logs import get_logger
from runner.waits import CancelToken, Deadline, Target, pending, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def shared(kubeconfig: Path) -> Cluster:
    cfg, _ = load_configuration(kubeconfig, None, {})
    return Cluster(cfg)


def view(cluster: Cluster, seconds: float = 30, cancel: CancelToken | None = None) -> Kube:
    return Kube(
        cluster, log=get_logger(), deadline=Deadline.after(seconds), cancel=cancel or CancelToken()
    )


def test_discovery_is_two_requests_at_most(shared: Cluster) -> None:
    kube = view(shared)
    for api_version, kind in [
        ("v1", "Namespace"),
        ("v1", "LimitRange"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("operators.coreos.com/v1alpha1", "CatalogSource"),
        ("maistra.io/v2", "ServiceMeshControlPlane"),
        ("kiali.io/v1alpha1", "Kiali"),
        ("v1", "Pod"),
    ]:
        kube.resource(api_version, kind)
    assert shared.discovery.requests == 2
    with pytest.raises(errors.ApiMissing, match="Widget"):
        kube.resource("example.com/v1", "Widget")


def test_apply_observes_then_acts(shared: Cluster, unique_user: str) -> None:
    kube = view(shared)
    desired: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": unique_user,
            "labels": {"app.kubernetes.io/managed-by": "workshop-runner"},
        },
    }
    first = kube.apply(desired)
    assert (first.changed, first.detail) == (True, f"created Namespace {unique_user}")
    second = kube.apply(desired)
    assert (second.changed, second.detail) == (False, f"Namespace {unique_user} exists and matches")
    desired["metadata"]["labels"]["extra"] = "1"
    third = kube.apply(desired)
    assert (third.changed, third.detail) == (True, f"updated Namespace {unique_user}")
    assert third.obj["metadata"]["resourceVersion"] != first.obj["metadata"]["resourceVersion"]
    managers = {m["manager"] for m in third.obj["metadata"]["managedFields"]}
    assert "workshop-runner" in managers
    assert kube.delete("v1", "Namespace", unique_user, None) is True


def test_a_field_dropped_from_the_template_is_pruned(shared: Cluster, unique_user: str) -> None:
    kube = view(shared)

    def config_map(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"prune-{unique_user}", "namespace": "default", "labels": labels},
            "data": {"k": "v"},
        }

    what = f"ConfigMap default/prune-{unique_user}"
    first = kube.apply(config_map({"a": "1", "b": "2"}))
    assert (first.changed, first.detail) == (True, f"created {what}")
    pruned = kube.apply(config_map({"a": "1"}))
    assert (pruned.changed, pruned.detail) == (True, f"updated {what}")
    assert pruned.obj["metadata"]["labels"] == {"a": "1"}
    live = kube.get("v1", "ConfigMap", f"prune-{unique_user}", "default")
    assert live is not None
    assert live["metadata"]["labels"] == {"a": "1"}
    again = kube.apply(config_map({"a": "1"}))
    assert (again.changed, again.detail) == (False, f"{what} exists and matches")
    assert again.obj["metadata"]["resourceVersion"] == pruned.obj["metadata"]["resourceVersion"]
    assert kube.delete("v1", "ConfigMap", f"prune-{unique_user}", "default") is True


def test_a_field_another_manager_owns_is_a_conflict_unless_forced(
    shared: Cluster, unique_user: str
) -> None:
    kube = view(shared)
    name = f"owned-{unique_user}"

    def config_map(tier: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"tier": tier}},
        }

    theirs, ours = config_map("theirs"), config_map("ours")
    # another tool applied it first, with its own field manager
    kube.cluster.request(
        "PATCH",
        f"/api/v1/namespaces/default/configmaps/{name}",
        body=theirs,
        content_type="application/apply-patch+yaml",
        query={"fieldManager": "earlier-tool"},
    )
    with pytest.raises(errors.FieldConflict) as conflict:
        kube.apply(ours)
    assert conflict.value.exit_code == 3
    assert str(conflict.value).startswith(
        f"apply ConfigMap default/{name}: field(s) set to another value by another field "
        'manager: .metadata.labels.tier owned by "earlier-tool"'
    )
    live = kube.get("v1", "ConfigMap", name, "default")
    assert live is not None
    assert live["metadata"]["labels"] == {"tier": "theirs"}
    taken = kube.apply(ours, force=True)
    assert (taken.changed, taken.obj["metadata"]["labels"]) == (True, {"tier": "ours"})
    owners = {m["manager"] for m in taken.obj["metadata"]["managedFields"]}
    assert owners == {FIELD_MANAGER}  # the field moved to us; they own nothing any more
    assert kube.delete("v1", "ConfigMap", name, "default") is True


def test_update_reads_again_after_a_conflict(shared: Cluster, unique_user: str) -> None:
    kube = view(shared)
    target = Target("v1", "ConfigMap", "default", f"rmw-{unique_user}")
    first = kube.update(target, lambda live: {**target_object(target), "data": {"seen": "none"}})
    assert (first.before, first.changed) == (None, True)
    assert first.obj is not None
    # someone else writes after our read: the update computed from the stale copy gets a 409
    kube.merge_patch("v1", "ConfigMap", target.name or "", "default", {"data": {"other": "1"}})
    calls: list[dict[str, str]] = []

    def count(live: dict[str, Any] | None) -> dict[str, Any] | None:
        assert live is not None
        calls.append(dict(live["data"]))
        live["data"]["seen"] = str(len(live["data"]))
        return live

    second = kube.update(target, count, known=first.obj)
    assert calls == [{"seen": "none"}, {"seen": "none", "other": "1"}]
    assert second.obj is not None
    assert second.obj["data"] == {"seen": "2", "other": "1"}
    unchanged = kube.update(target, lambda live: None)
    assert (unchanged.changed, unchanged.obj) == (False, second.obj)
    assert kube.delete("v1", "ConfigMap", target.name or "", "default") is True


def target_object(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": target.api_version,
        "kind": target.kind,
        "metadata": {"name": target.name, "namespace": target.namespace},
    }


def test_cancel_wakes_an_open_watch(shared: Cluster, unique_user: str) -> None:
    cancel = CancelToken()
    kube = view(shared, seconds=120, cancel=cancel)
    target = Target("v1", "ConfigMap", "default", f"never-{unique_user}")
    raised: list[BaseException] = []

    def waiter() -> None:
        try:
            wait_for(
                kube,
                target,
                lambda obj: pending("absent"),
                deadline=kube.deadline,
                cancel=cancel,
                what="exists",
            )
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)  # let the waiter reach its watch (held open by the server up to 60 s)
    started = time.monotonic()
    cancel.cancel("step x failed")
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert len(raised) == 1
    assert isinstance(raised[0], errors.Cancelled)


def test_apply_into_a_namespace_this_process_created_skips_the_read(
    shared: Cluster, unique_user: str
) -> None:
    kube = view(shared)

    def config_map(ns: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns},
            "data": {"a": "1"},
        }

    def requests_for(desired: dict[str, Any]) -> tuple[int, str]:
        before = shared.requests
        applied = kube.apply(desired)
        return shared.requests - before, applied.detail

    ours = kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": unique_user}})
    assert ours.detail == f"created Namespace {unique_user}"
    assert requests_for(config_map(unique_user)) == (
        1,
        f"created ConfigMap {unique_user}/settings",
    )
    # A second process finds the namespace there: it observes before it writes.
    other = view(Cluster(shared.configuration))
    other.resource("v1", "ConfigMap")  # its own discovery, not counted below
    before = other.cluster.requests
    again = other.apply(config_map(unique_user))
    assert (other.cluster.requests - before, again.changed) == (1, False)  # read; nothing to do
    assert again.detail == f"ConfigMap {unique_user}/settings exists and matches"
    assert kube.delete("v1", "Namespace", unique_user, None) is True
