"""Simulated Maistra (OpenShift Service Mesh 2.x) operator: the ServiceMeshControlPlane.

ServiceMeshControlPlane (maistra.io/v2), per generation G:
  begin      Installed/Reconciled/Ready False, reason ResourceCreated ("Installing mesh
             generation G") or, on a spec change, Reconciled False SpecUpdated; readiness:
             every component pending
  paused     at once (the same reconcile; the mesh namespace labelled maistra.io/member-of=
             itself first, when missing): Reconciled False PausingInstall (PausingUpdate on a
             spec change) "Paused until the following components become ready: [istiod]" -
             the first chart group applied, its component not ready yet
  installed  observedGeneration G, Installed/Reconciled True (InstallSuccessful or
             UpdateSuccessful), Ready False ComponentsNotReady; the Kiali CR is created when
             spec.addons.kiali.enabled  -- or, by knob, Reconciled False ReconcileError (and
             observedGeneration stays behind)
  ready      Ready True ComponentsReady, readiness: every component ready
Finalizer (controller.go, deleter.go): the first reconcile only adds maistra.io/istio-operator;
  deleted: Reconciled/Ready False Deleting "Deleting service mesh", then the mesh's Kiali CR
  and NetworkPolicies are pruned, the namespace's member-of label removed, the finalizer too.
Member roll and members: memberroll.py. The admission webhook: webhook.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import KIALIS, NAMESPACES, NETWORKPOLICIES, SMCPS, Resource
from devcluster.sim.objects import (
    Obj,
    condition,
    deleting,
    generation,
    labels,
    name_of,
    now_iso,
    ns_of,
    owner_ref,
    set_condition,
    spec,
    status,
)

CHART_VERSION = "2.4.5"  # the default release's (knob mesh_operator, see RELEASES)
OWNER = "maistra.io/owner"
OWNER_NAME = "maistra.io/owner-name"
OPERATOR_VERSION = "2.4.5-0"
MEMBER_OF = "maistra.io/member-of"
FINALIZER = "maistra.io/istio-operator"  # common.FinalizerName


@dataclass(frozen=True)
class Release:
    """What one operator release knows (pkg/controller/versions/versions.go: the Ver constants)
    and supports (those >= its build's MinimumSupportedVersion)."""

    operator_version: str
    chart_version: str
    known: tuple[str, ...]
    supported: tuple[str, ...]


RELEASES = {
    "2.4": Release(
        OPERATOR_VERSION,
        CHART_VERSION,
        ("v1.1", "v2.0", "v2.1", "v2.2", "v2.3", "v2.4"),
        ("v2.1", "v2.2", "v2.3", "v2.4"),
    ),
    "2.5": Release(
        "2.5.2-0",
        "2.5.2",
        ("v1.1", "v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "v2.5"),
        ("v2.2", "v2.3", "v2.4", "v2.5"),
    ),
}


def version_refusal(release: str, version: str) -> str | None:
    """The SMCP validator's 400 message for spec.version, or None when it is accepted (an empty
    version is defaulted by the mutating webhook before validation)."""
    if not version:
        return None
    found = RELEASES[release]
    listed = " ".join(found.supported)
    if version not in found.known:
        return f"invalid Version specified; supported versions are: [{listed}]"
    if version not in found.supported:
        return f"Only '[{listed}]' versions are supported"
    return None


_GENERATION = re.compile(r"generation (\d+)\b")
PAUSING = ("PausingInstall", "PausingUpdate")
# The components of the first chart group (v2_4ChartOrder: istio-discovery), which the install
# waits for before it applies the next group.
FIRST_GROUP = ("istiod",)


def pause_message(waiting: list[str]) -> str:
    """controlplane/reconciler.go pauseReconciliation: Go's %v of the sorted component list."""
    return f"Paused until the following components become ready: [{' '.join(sorted(waiting))}]"


def _enabled(addon: Any, default: bool = False) -> bool:
    if not isinstance(addon, dict) or "enabled" not in addon:
        return default
    return addon.get("enabled") is True


def components(smcp_spec: Obj) -> list[str]:
    addons = smcp_spec.get("addons") or {}
    out = ["istio-egressgateway", "istio-ingressgateway", "istiod"]
    if _enabled(addons.get("grafana")):
        out.append("grafana")
    if _enabled(addons.get("prometheus"), default=True):
        out.append("prometheus")
    if _enabled(addons.get("kiali")):
        out.append("kiali")
    if (smcp_spec.get("tracing") or {}).get("type") == "Jaeger":
        out.append("jaeger")
    return sorted(out)


def kiali_name(smcp_spec: Obj) -> str | None:
    addon = (smcp_spec.get("addons") or {}).get("kiali")
    if not _enabled(addon):
        return None
    return str(addon.get("name") or "kiali")


def _marked(cond: Obj | None, reasons: tuple[str, ...], gen: int) -> bool:
    if cond is None or cond.get("reason") not in reasons:
        return False
    found = _GENERATION.findall(str(cond.get("message", "")))
    return bool(found) and int(found[-1]) == gen


def kiali_body(smcp: Obj, name: str) -> Obj:
    ns = ns_of(smcp)
    return {
        "apiVersion": "kiali.io/v1alpha1",
        "kind": "Kiali",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "maistra.io/owner": ns,
                "app.kubernetes.io/managed-by": "maistra-istio-operator",
            },
            "ownerReferences": [
                owner_ref(smcp, "maistra.io/v2", "ServiceMeshControlPlane", controller=True)
            ],
        },
        "spec": {
            "auth": {"strategy": "openshift"},
            "deployment": {"accessible_namespaces": [ns], "namespace": ns},
            "istio_namespace": ns,
            "installation_tag": f"Kiali [{ns}]",
            "version": "v1.65",
        },
    }


def manages_network_policy(smcp_spec: Obj) -> bool:
    """spec.security.manageNetworkPolicy, true unless set to false."""
    return (smcp_spec.get("security") or {}).get("manageNetworkPolicy") is not False


def mesh_network_policies(smcp: Obj) -> list[Obj]:
    """The mesh-config chart's two policies in the control plane namespace (maistra 2.4
    resources/helm/v2.4/mesh-config/templates/networkpolicy.yaml), with the owner labels the
    operator adds: ingress to every pod only from member namespaces; ingress from the router
    (namespaces labelled network.openshift.io/policy-group=ingress) to pods labelled
    maistra.io/expose-route=true. Neither carries maistra.io/internal, so both are copied into
    every member namespace (memberroll.py)."""
    ns, name = ns_of(smcp), name_of(smcp)
    meta_labels = {
        "maistra-version": CHART_VERSION,
        "app": "istio",
        "release": name,
        OWNER: ns,
        OWNER_NAME: name,
    }
    mesh = {
        "metadata": {"name": "istio-mesh-default", "namespace": ns, "labels": dict(meta_labels)},
        "spec": {
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {MEMBER_OF: ns}}}]}],
        },
    }
    router = {"matchLabels": {"network.openshift.io/policy-group": "ingress"}}
    route = {
        "metadata": {
            "name": "istio-expose-route-default",
            "namespace": ns,
            "labels": dict(meta_labels),
        },
        "spec": {
            "podSelector": {"matchLabels": {"maistra.io/expose-route": "true"}},
            "ingress": [{"from": [{"namespaceSelector": router}]}],
        },
    }
    return [mesh, route]


def _pause(conds: list[Obj], initial: bool, comps: list[str], now: str) -> list[Obj]:
    """Reconciled False PausingInstall/PausingUpdate, waiting for the first chart group."""
    reason = "PausingInstall" if initial else "PausingUpdate"
    waiting = [c for c in FIRST_GROUP if c in comps] or comps[:1]
    pause = {"type": "Reconciled", "status": "False", "reason": reason}
    return set_condition(conds, {**pause, "message": pause_message(waiting)}, now)


def finalizers_of(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def finalizer_patch(obj: Obj, *, add: bool) -> Obj:
    """common.AddFinalizer / RemoveFinalizer: the set of finalizers with ours in or out. Adding
    is written at the resourceVersion read (an Update upstream: a concurrent change is a 409
    and a retry); removing follows the finalize's own writes (upstream updates the object those
    writes returned), so it carries no resourceVersion: the other finalizers read are kept."""
    keep = {f for f in finalizers_of(obj) if f != FINALIZER} | ({FINALIZER} if add else set())
    meta: Obj = {"finalizers": sorted(keep) or None}
    if add:
        meta["resourceVersion"] = (obj.get("metadata") or {}).get("resourceVersion")
    return {"metadata": meta}


def finalizer_transition(kind: str, res: Resource, obj: Obj, *acts: Action) -> Transition:
    """Add the finalizer, or perform `acts` and remove it. Adding is a reconcile of its own that
    does nothing else (it ends the pass) and costs next to nothing: no knob delay or service
    time, which model the real work (charts, member configuration)."""
    ns, name = ns_of(obj), name_of(obj)
    adding = not deleting(obj)
    step = "add-finalizer" if adding else "finalize"
    patch = finalizer_patch(obj, add=adding)
    done = Action("patch", res, ns, name, patch, tolerate=(404, 409))
    return Transition(
        f"{ns}/{name}:{step}",
        kind,
        ns,
        name,
        step,
        (*acts, done),
        delayed=not adding,
        ends_pass=adding,
    )


def _label_mesh_namespace(ns: str, labelled: bool) -> list[Action]:
    """reconciler.go addNamespaceLabels, before the first chart group: the mesh namespace is
    labelled maistra.io/member-of=<itself> (v2.4 and later: that label only)."""
    if labelled:
        return []
    return [Action("patch", NAMESPACES, None, ns, {"metadata": {"labels": {MEMBER_OF: ns}}})]


def smcp_transitions(
    smcp: Obj,
    kiali_exists: bool,
    knobs: Knobs,
    now: str | None = None,
    *,
    mesh_labelled: bool = True,
) -> list[Transition]:
    now = now or now_iso()
    ns, name = ns_of(smcp), name_of(smcp)
    st = status(smcp)
    gen, observed = generation(smcp), int(st.get("observedGeneration") or 0)
    conds = list(st.get("conditions") or [])
    rec, ready = condition(st, "Reconciled"), condition(st, "Ready")
    comps = components(spec(smcp))
    started = _marked(rec, ("ResourceCreated", "SpecUpdated"), gen)
    failed = _marked(rec, ("ReconcileError",), gen)
    initial = observed == 0
    # Paused between chart groups (the pause message names no generation: any pause while
    # observedGeneration is behind is this generation's install).
    paused = (
        rec is not None
        and rec.get("status") == "False"
        and rec.get("reason") in PAUSING
        and observed != gen
    )

    def step(label: str, body: Obj, *extra: Action, delayed: bool = True) -> list[Transition]:
        act = Action("status", SMCPS, ns, name, body)
        return [
            Transition(
                f"{ns}/{name}:{label}:{gen}",
                "ServiceMeshControlPlane",
                ns,
                name,
                label,
                (*extra, act),
                delayed,
            )
        ]

    if observed != gen and not started and not failed and not paused:
        reason = "ResourceCreated" if initial else "SpecUpdated"
        msg = (
            f"Installing mesh generation {gen}"
            if initial
            else f"Updating mesh from generation {observed} to generation {gen}"
        )
        for ctype in ("Installed", "Reconciled", "Ready") if initial else ("Reconciled",):
            conds = set_condition(
                conds, {"type": ctype, "status": "False", "reason": reason, "message": msg}, now
            )
        body: Obj = {"conditions": conds}
        if initial:
            body["readiness"] = {"components": {"pending": comps, "ready": [], "unready": []}}
            body["annotations"] = {"readyComponentCount": f"0/{len(comps)}"}
        return step("begin", body)
    if started:
        # Rendered: the mesh namespace is labelled, the first chart group applied, then a pause.
        pause = {"conditions": _pause(conds, initial, comps, now)}
        return step("paused", pause, *_label_mesh_namespace(ns, mesh_labelled), delayed=False)
    if paused:
        failure = knobs.failure("ServiceMeshControlPlane", ns, name)
        if failure:
            msg = f"Error processing component istiod for mesh generation {gen}: {failure.message}"
            conds = set_condition(
                conds,
                {"type": "Reconciled", "status": "False", "reason": failure.reason, "message": msg},
                now,
            )
            conds = set_condition(
                conds,
                {"type": "Ready", "status": "False", "reason": failure.reason, "message": msg},
                now,
            )
            if initial:
                conds = set_condition(
                    conds,
                    {
                        "type": "Installed",
                        "status": "False",
                        "reason": "InstallError",
                        "message": msg,
                    },
                    now,
                )
            return step("failed", {"conditions": conds})
        done = "InstallSuccessful" if initial else "UpdateSuccessful"
        conds = set_condition(
            conds,
            {
                "type": "Installed",
                "status": "True",
                "reason": done,
                "message": f"Successfully installed version {spec(smcp).get('version', 'v2.4')}",
            },
            now,
        )
        conds = set_condition(
            conds,
            {
                "type": "Reconciled",
                "status": "True",
                "reason": done,
                "message": "Successfully installed all mesh components",
            },
            now,
        )
        body = {
            "observedGeneration": gen,
            "conditions": conds,
            "appliedSpec": spec(smcp),
            "chartVersion": RELEASES[knobs.mesh_operator].chart_version,
            "operatorVersion": RELEASES[knobs.mesh_operator].operator_version,
        }
        if ready is None or ready.get("status") != "True":
            waiting = f"The following components are not fully available: [{' '.join(comps)}]"
            body["conditions"] = set_condition(
                conds,
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ComponentsNotReady",
                    "message": waiting,
                },
                now,
            )
            body["readiness"] = {"components": {"pending": [], "ready": [], "unready": comps}}
        extra = []
        if manages_network_policy(spec(smcp)):
            extra += [
                Action("create", NETWORKPOLICIES, ns, body=body, tolerate=(409,))
                for body in mesh_network_policies(smcp)
            ]
        kname = kiali_name(spec(smcp))
        if kname and not kiali_exists:
            extra.append(
                Action("create", KIALIS, ns, body=kiali_body(smcp, kname), tolerate=(409,))
            )
        return step("installed", body, *extra)
    if (
        observed == gen
        and rec
        and rec.get("status") == "True"
        and (ready is None or ready.get("status") != "True")
    ):
        conds = set_condition(
            conds,
            {
                "type": "Ready",
                "status": "True",
                "reason": "ComponentsReady",
                "message": "All component deployments are Available",
            },
            now,
        )
        body = {
            "conditions": conds,
            "readiness": {"components": {"pending": [], "ready": comps, "unready": []}},
            "annotations": {"readyComponentCount": f"{len(comps)}/{len(comps)}"},
        }
        return step("ready", body)
    return []


def reconciled_and_ready(
    conds: list[Obj], ok: bool, reason: str, message: str, now: str
) -> list[Obj]:
    """Reconciled and Ready set alike, as Maistra's controllers report most outcomes."""
    for ctype in ("Reconciled", "Ready"):
        cond = {"type": ctype, "status": "True" if ok else "False", "reason": reason}
        conds = set_condition(conds, {**cond, "message": message}, now)
    return conds


def smcp_delete_transitions(
    smcp: Obj, kiali: Obj | None, policies: list[Obj], mesh_ns: Obj | None, now: str | None = None
) -> list[Transition]:
    """controlplane/deleter.go: first Reconciled and Ready False `Deleting` "Deleting service
    mesh" (that reconcile ends there); on the next, the mesh's resources are pruned (its Kiali
    CR, its NetworkPolicies), the namespace's member-of label removed, the finalizer too."""
    ns, name = ns_of(smcp), name_of(smcp)
    rec = condition(status(smcp), "Reconciled") or {}
    if (rec.get("status"), rec.get("reason")) != ("False", "Deleting"):
        conds = list(status(smcp).get("conditions") or [])
        conds = reconciled_and_ready(
            conds, False, "Deleting", "Deleting service mesh", now or now_iso()
        )
        act = Action("status", SMCPS, ns, name, {"conditions": conds})
        kind = "ServiceMeshControlPlane"
        return [
            Transition(f"{ns}/{name}:deleting", kind, ns, name, "deleting", (act,), ends_pass=True)
        ]
    acts = []
    if kiali is not None:
        acts.append(Action("delete", KIALIS, ns, name_of(kiali), tolerate=(404,)))
    acts += [
        Action("delete", NETWORKPOLICIES, ns, name_of(p), tolerate=(404,))
        for p in policies
        if (p.get("metadata") or {}).get("labels", {}).get(OWNER) == ns
    ]
    if mesh_ns is not None and MEMBER_OF in ((mesh_ns.get("metadata") or {}).get("labels") or {}):
        unlabel = {"metadata": {"labels": {MEMBER_OF: None}}}
        acts.append(Action("patch", NAMESPACES, None, ns, unlabel, tolerate=(404,)))
    return [finalizer_transition("ServiceMeshControlPlane", SMCPS, smcp, *acts)]


class SmcpController:
    name = "smcp"

    def watches(self) -> Iterable[Resource]:
        return (SMCPS, KIALIS)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        if res == KIALIS:
            return [(ns_of(obj), "")] if event == "DELETED" else []
        return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        ns, name = key
        if not name:  # a Kiali CR went away: re-check every SMCP of the namespace
            return [
                t
                for s in store.list(SMCPS, ns)
                for t in self.transitions((ns, name_of(s)), store, knobs)
            ]
        smcp = store.get(SMCPS, ns, name)
        if smcp is None:
            return []
        if deleting(smcp):
            if FINALIZER not in finalizers_of(smcp):
                return []
            owned = kiali_name(spec(smcp))
            return smcp_delete_transitions(
                smcp,
                store.get(KIALIS, ns, owned) if owned else None,
                store.list(NETWORKPOLICIES, ns),
                store.get(NAMESPACES, None, ns),
            )
        if FINALIZER not in finalizers_of(smcp):
            return [finalizer_transition("ServiceMeshControlPlane", SMCPS, smcp)]
        kname = kiali_name(spec(smcp))
        exists = kname is not None and store.get(KIALIS, ns, kname) is not None
        mesh_ns = store.get(NAMESPACES, None, ns)
        labelled = mesh_ns is None or labels(mesh_ns).get(MEMBER_OF) == ns
        return smcp_transitions(smcp, exists, knobs, mesh_labelled=labelled)
