"""Object builders and small helpers for tests that drive the simulators through the API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from devcluster.sim.kube import NAMESPACES, SERVICEACCOUNTS, Kube, KubeError, Obj
from devcluster.sim.objects import condition
from devcluster.sim.waiting import wait_for

RHSSO_CSV = "rhsso-operator.7.5.2-opr-001"
WORKSHOP_SMCP_SPEC: dict[str, Any] = {
    "version": "v2.4",
    "proxy": {"networking": {"trafficControl": {"outbound": {"policy": "REGISTRY_ONLY"}}}},
    "tracing": {"type": "Jaeger", "sampling": 10000},
    "addons": {
        "grafana": {"enabled": True},
        "kiali": {"enabled": True},
        "prometheus": {"enabled": True},
    },
}


@contextlib.contextmanager
def namespaces(kube: Kube, *names: str) -> Iterator[list[str]]:
    """Create namespaces for a test and delete them afterwards."""
    created = []
    try:
        for name in names:
            kube.create(NAMESPACES, None, {"metadata": {"name": name}})
            created.append(name)
        yield created
    finally:
        for name in created:
            with contextlib.suppress(KubeError):
                kube.delete(NAMESPACES, None, name)


def wait_service_account(kube: Kube, namespace: str, name: str = "default") -> None:
    wait_for(kube, SERVICEACCOUNTS, namespace, name, lambda _: True, timeout=30)


def subscription(namespace: str, name: str = "rhsso-operator", **spec: Any) -> Obj:
    body = {
        "name": name,
        "channel": "stable",
        "source": "redhat-operators-snapshot",
        "sourceNamespace": namespace,
        "installPlanApproval": "Manual",
        "startingCSV": RHSSO_CSV,
    }
    body.update(spec)
    return {"metadata": {"name": name, "namespace": namespace}, "spec": body}


def operator_group(
    namespace: str, name: str = "workshop-og", targets: list[str] | None = None
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetNamespaces": [namespace] if targets is None else targets},
    }


def smcp(namespace: str, name: str = "workshop-install", spec: dict[str, Any] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec or WORKSHOP_SMCP_SPEC),
    }


def phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def cond_is(ctype: str, status: str = "True", reason: str | None = None) -> Any:
    """Predicate: condition `ctype` has this status (and reason)."""

    def check(obj: Obj) -> bool:
        cond = condition(obj.get("status") or {}, ctype)
        if cond is None or cond.get("status") != status:
            return False
        return reason is None or cond.get("reason") == reason

    return check
