"""CatalogSource connection state, and the copied CSVs of cluster-wide operators.

Copied CSVs: the mesh operators are installed once, cluster-wide, in openshift-operators (an
AllNamespaces OperatorGroup). Real OLM then copies their CSVs, with status.reason Copied, into
*every* namespace. The simulator does the same for every namespace that is not a system one
(default, kube-*, openshift*, devcluster-*): so `userN` holds e.g. servicemeshoperator.v2.4.5
(Succeeded, Copied) next to the RH-SSO CSV, and "the first CSV" is the wrong one.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import CATALOGSOURCES, CSVS, NAMESPACES, OPERATORGROUPS, Resource
from devcluster.sim.objects import Obj, deleting, name_of, now_iso, ns_of, status

OPERATORS_NS = "openshift-operators"
CLUSTER_WIDE_LABEL = "devcluster.sim/cluster-wide"
GLOBAL_OG = "global-operators"
SYSTEM_NAMESPACES = ("default", "kube-*", "openshift", "openshift-*", "devcluster-*")
# name -> (display name, version): what OSSM 2.4 installs cluster-wide.
CLUSTER_WIDE_OPERATORS = {
    "servicemeshoperator.v2.4.5": ("Red Hat OpenShift Service Mesh", "2.4.5-0"),
    "kiali-operator.v1.65.11": ("Kiali Operator", "1.65.11"),
}
ALL_NAMESPACES_MODES = [
    {"type": "OwnNamespace", "supported": False},
    {"type": "SingleNamespace", "supported": False},
    {"type": "MultiNamespace", "supported": False},
    {"type": "AllNamespaces", "supported": True},
]


def catalog_transitions(cs: Obj, knobs: Knobs, now: str | None = None) -> list[Transition]:
    """ "" -> CONNECTING -> READY (or the failure knob's state, e.g. TRANSIENT_FAILURE)."""
    now = now or now_iso()
    ns, name = ns_of(cs), name_of(cs)
    state = (status(cs).get("connectionState") or {}).get("lastObservedState", "")
    failure = knobs.failure("CatalogSource", ns, name)
    if not state or (state != "CONNECTING" and not failure and state != "READY"):
        new = "CONNECTING"
    elif state == "CONNECTING":
        new = failure.reason if failure else "READY"
    else:
        return []
    body = {
        "connectionState": {
            "address": f"{name}.{ns}.svc:50051",
            "lastConnect": now,
            "lastObservedState": new,
        },
        "registryService": {
            "createdAt": now,
            "port": "50051",
            "protocol": "grpc",
            "serviceName": name,
            "serviceNamespace": ns,
        },
    }
    action = Action("status", CATALOGSOURCES, ns, name, body)
    return [Transition(f"{ns}/{name}:{new}", "CatalogSource", ns, name, new, (action,))]


class CatalogSourceController:
    name = "catalogsource"

    def watches(self) -> Iterable[Resource]:
        return (CATALOGSOURCES,)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        cs = store.get(CATALOGSOURCES, key[0], key[1])
        return [] if cs is None or deleting(cs) else catalog_transitions(cs, knobs)


def is_user_namespace(name: str, excluded: Iterable[str] = SYSTEM_NAMESPACES) -> bool:
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in excluded)


def csv_object(name: str, namespace: str, *, copied: bool) -> Obj:
    display, version = CLUSTER_WIDE_OPERATORS[name]
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "annotations": {
            "olm.operatorGroup": GLOBAL_OG,
            "olm.operatorNamespace": OPERATORS_NS,
            "olm.targetNamespaces": "",
        },
    }
    # The originals carry a marker so the per-namespace OLM simulator leaves them alone.
    meta["labels"] = {"olm.copiedFrom": OPERATORS_NS} if copied else {CLUSTER_WIDE_LABEL: "true"}
    return {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": meta,
        "spec": {
            "displayName": display,
            "version": version,
            "provider": {"name": "Red Hat"},
            "installModes": ALL_NAMESPACES_MODES,
            "install": {"strategy": "deployment", "spec": {"deployments": []}},
        },
    }


def csv_status(copied: bool, now: str) -> Obj:
    if copied:
        reason = "Copied"
        message = f"The operator is running in {OPERATORS_NS} but is managing this namespace"
    else:
        reason, message = "InstallSucceeded", "install strategy completed with no errors"
    return {
        "phase": "Succeeded",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastUpdateTime": now,
    }


def copy_transitions(
    namespace: Obj | None, csvs: dict[str, Obj], now: str | None = None
) -> list[Transition]:
    """For one namespace: create any missing copied CSV, then write its status."""
    if namespace is None or deleting(namespace) or status(namespace).get("phase") == "Terminating":
        return []
    ns = name_of(namespace)
    copied = ns != OPERATORS_NS
    out = []
    now = now or now_iso()
    for name in CLUSTER_WIDE_OPERATORS:
        current = csvs.get(name)
        acts: list[Action] = []
        if current is None:
            acts.append(
                Action(
                    "create", CSVS, ns, body=csv_object(name, ns, copied=copied), tolerate=(409,)
                )
            )
        if current is None or status(current).get("phase") != "Succeeded":
            acts.append(Action("status", CSVS, ns, name, csv_status(copied, now)))
        if acts:
            step = "copied" if copied else "installed"
            out.append(Transition(f"{ns}/{name}", "CopiedCSV", ns, name, step, tuple(acts)))
    return out


def source_transitions(store: Store) -> list[Transition]:
    """openshift-operators with its AllNamespaces OperatorGroup: where the copies come from."""
    if store.get(NAMESPACES, None, OPERATORS_NS) is None:
        body = {"metadata": {"name": OPERATORS_NS}}
        create = Action("create", NAMESPACES, None, body=body, tolerate=(409,))
        return [
            Transition(
                "source-ns",
                "CopiedCSV",
                OPERATORS_NS,
                OPERATORS_NS,
                "namespace",
                (create,),
                delayed=False,
            )
        ]
    if store.get(OPERATORGROUPS, OPERATORS_NS, GLOBAL_OG) is None:
        body = {"metadata": {"name": GLOBAL_OG, "namespace": OPERATORS_NS}, "spec": {}}
        create = Action("create", OPERATORGROUPS, OPERATORS_NS, body=body, tolerate=(409,))
        return [
            Transition(
                "source-og",
                "CopiedCSV",
                OPERATORS_NS,
                GLOBAL_OG,
                "operatorgroup",
                (create,),
                delayed=False,
            )
        ]
    return []


class CopiedCsvController:
    """Keys: namespace names; "" stands for the source namespace set-up."""

    name = "copied-csv"

    def __init__(self, excluded: Iterable[str] = SYSTEM_NAMESPACES) -> None:
        self.excluded = tuple(excluded)

    def watches(self) -> Iterable[Resource]:
        return (NAMESPACES, CSVS, OPERATORGROUPS)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        ns = name_of(obj) if res == NAMESPACES else ns_of(obj)
        if ns == OPERATORS_NS:
            return ["", ns]
        if res == OPERATORGROUPS:
            return []
        if res == CSVS and name_of(obj) not in CLUSTER_WIDE_OPERATORS:
            return []
        return [ns] if is_user_namespace(ns, self.excluded) else []

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        if key == "":
            return source_transitions(store)
        csvs = {
            name_of(c): c for c in store.list(CSVS, key) if name_of(c) in CLUSTER_WIDE_OPERATORS
        }
        if key == OPERATORS_NS and store.get(OPERATORGROUPS, OPERATORS_NS, GLOBAL_OG) is None:
            return []
        return copy_transitions(store.get(NAMESPACES, None, key), csvs)
