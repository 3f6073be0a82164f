"""CatalogSource connection state, and the copied CSVs of cluster-wide operators.

Connection state: "" -> CONNECTING -> READY, as OLM's catalog-operator reports its gRPC
connection to the registry pod (labels olm.catalogSource=<name>, port 50051 `grpc`, in the
CatalogSource's namespace). The catalog-operator runs in openshift-operator-lifecycle-manager:
when the NetworkPolicies of the catalog's namespace isolate the registry pod and none admits
that namespace (netpol.py), the connection fails and the state goes TRANSIENT_FAILURE (from
READY too), and back through CONNECTING to READY once a policy admits it again - what Maistra's
istio-mesh-default does to a member namespace without a workshop policy admitting OLM.

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
from devcluster.sim.kube import (
    CATALOGSOURCES,
    CSVS,
    NAMESPACES,
    NETWORKPOLICIES,
    OPERATORGROUPS,
    Resource,
)
from devcluster.sim.netpol import ingress_admitted, namespace_peer
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
OLM_NAMESPACE = "openshift-operator-lifecycle-manager"
CATALOG_OPERATOR_LABELS = {"app": "catalog-operator"}
REGISTRY_PORT, REGISTRY_PORT_NAME = 50051, "grpc"
UNREACHABLE = "TRANSIENT_FAILURE"
ALL_NAMESPACES_MODES = [
    {"type": "OwnNamespace", "supported": False},
    {"type": "SingleNamespace", "supported": False},
    {"type": "MultiNamespace", "supported": False},
    {"type": "AllNamespaces", "supported": True},
]


def catalog_transitions(
    cs: Obj, knobs: Knobs, now: str | None = None, *, reachable: bool = True
) -> list[Transition]:
    """ "" -> CONNECTING -> READY (or the failure knob's state, e.g. TRANSIENT_FAILURE); an
    unreachable registry pod: TRANSIENT_FAILURE, also from READY, until it is reachable."""
    now = now or now_iso()
    ns, name = ns_of(cs), name_of(cs)
    state = (status(cs).get("connectionState") or {}).get("lastObservedState", "")
    failure = knobs.failure("CatalogSource", ns, name)
    failing = failure.reason if failure else (None if reachable else UNREACHABLE)
    if not state or (state not in ("CONNECTING", "READY") and not failing):
        new = "CONNECTING"
    elif state == "CONNECTING":
        new = failing or "READY"
    elif state == "READY" and not reachable:
        new = UNREACHABLE
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


def registry_reachable(cs: Obj, store: Store) -> bool:
    """Whether the catalog-operator may connect to the CatalogSource's registry pod."""
    ns = ns_of(cs)
    source = namespace_peer(
        store.get(NAMESPACES, None, OLM_NAMESPACE), OLM_NAMESPACE, CATALOG_OPERATOR_LABELS
    )
    return ingress_admitted(
        store.list(NETWORKPOLICIES, ns),
        ns,
        {"olm.catalogSource": name_of(cs)},
        source,
        port=REGISTRY_PORT,
        port_name=REGISTRY_PORT_NAME,
    )


class CatalogSourceController:
    name = "catalogsource"

    def __init__(self) -> None:
        self._store: Store | None = None

    def bind(self, store: Store) -> None:
        self._store = store

    def watches(self) -> Iterable[Resource]:
        return (CATALOGSOURCES, NETWORKPOLICIES)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        if res == NETWORKPOLICIES:
            store = self._store
            return (
                []
                if store is None
                else [(ns_of(c), name_of(c)) for c in store.list(CATALOGSOURCES, ns_of(obj))]
            )
        return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        cs = store.get(CATALOGSOURCES, key[0], key[1])
        if cs is None or deleting(cs):
            return []
        return catalog_transitions(cs, knobs, reachable=registry_reachable(cs, store))


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
