"""Simulated Maistra member-roll and member controllers (ServiceMeshMemberRoll/Member v1).

ServiceMeshMemberRoll, as maistra's memberroll controller: Ready False ErrSMCPMissing /
ErrMultipleSMCPs, SMCPReconciling until the SMCP has an observedGeneration and Reconciled True
(the real controller waits on Reconciled, not Ready), then members whose namespace exists are
configured (namespace label maistra.io/member-of) and the others stay in pendingMembers
(ErrNamespaceMissing) until their namespace appears; Configured once all are. The Kiali CR's
spec.deployment.accessible_namespaces follows the configured members (a merge patch of that one
field, as the member-roll controller does; the control plane namespace when there are none).
ServiceMeshMember `default` adds its namespace to the SMMR `default` of its controlPlaneRef
(creating the roll if needed) and reports Ready once the roll has configured it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import KIALIS, NAMESPACES, NETWORKPOLICIES, SMCPS, SMMRS, SMMS, Resource
from devcluster.sim.maistra import MEMBER_OF, OWNER, OWNER_NAME, kiali_name
from devcluster.sim.objects import (
    Obj,
    condition,
    deleting,
    generation,
    labels,
    name_of,
    now_iso,
    ns_of,
    set_condition,
    spec,
    status,
    strip_times,
)

INTERNAL = "maistra.io/internal"
PRUNER_LABELS = (OWNER, OWNER_NAME, "app.kubernetes.io/version")


def _ready(reason: str, message: str, ok: bool = False) -> Obj:
    return {
        "type": "Ready",
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def desired_smmr_status(
    smmr: Obj, smcps: list[Obj], namespaces: dict[str, Obj], knobs: Knobs
) -> Obj:
    """What maistra's memberroll controller would write, from the objects it looks at."""
    ns = ns_of(smmr)
    members = list(dict.fromkeys(spec(smmr).get("members") or []))
    previous = list(status(smmr).get("configuredMembers") or [])
    configured = previous
    if name_of(smmr) != "default":
        cond = _ready("ErrInvalidName", "the ServiceMeshMemberRoll must be named 'default'")
    elif not smcps:
        configured = []
        cond = _ready("ErrSMCPMissing", "No ServiceMeshControlPlane exists in the namespace")
    elif len(smcps) > 1:
        cond = _ready(
            "ErrMultipleSMCPs", "Multiple ServiceMeshControlPlane resources exist in the namespace"
        )
    elif not status(smcps[0]).get("observedGeneration"):
        cond = _ready("SMCPReconciling", "Initial service mesh installation has not completed")
    elif (condition(status(smcps[0]), "Reconciled") or {}).get("status") != "True":
        cond = _ready("SMCPReconciling", "Service mesh installation is not in a known good state")
    elif failure := knobs.failure("ServiceMeshMemberRoll", ns, name_of(smmr)):
        cond = _ready(failure.reason, failure.message)
    else:
        alive = {n for n, o in namespaces.items() if not deleting(o)}
        configured = sorted(m for m in members if m in alive and m != ns)
        wanted = sorted(m for m in members if m != ns)
        if configured == wanted:
            cond = _ready("Configured", "All namespaces have been configured successfully", ok=True)
        else:
            cond = _ready(
                "ErrNamespaceMissing", "A namespace listed in .spec.members does not exist"
            )
    pending = [m for m in members if m not in configured and m != ns]
    member_statuses = [
        {
            "namespace": m,
            "conditions": [
                {
                    "type": "Reconciled",
                    "status": "True" if m in configured else "False",
                    **(
                        {}
                        if m in configured
                        else {"reason": "NamespaceNotFound" if m not in namespaces else "Pending"}
                    ),
                }
            ],
        }
        for m in members
        if m != ns
    ]
    return {
        "members": members,
        "configuredMembers": configured,
        "pendingMembers": pending,
        "terminatingMembers": [],
        "memberStatuses": member_statuses,
        "conditions": [cond],
        "observedGeneration": generation(smmr),
        "annotations": {"configuredMemberCount": f"{len(configured)}/{len(members)}"},
    }


def smmr_transitions(
    smmr: Obj,
    smcps: list[Obj],
    namespaces: dict[str, Obj],
    kiali: Obj | None,
    knobs: Knobs,
    *,
    now: str | None = None,
) -> list[Transition]:
    now = now or now_iso()
    ns, name = ns_of(smmr), name_of(smmr)
    out: list[Transition] = []
    desired = desired_smmr_status(smmr, smcps, namespaces, knobs)
    current = status(smmr)
    old_ready = condition(current, "Ready")
    desired["conditions"] = set_condition(
        current.get("conditions") or [], desired["conditions"][0], now
    )
    if any(strip_times(current.get(k)) != strip_times(v) for k, v in desired.items()):
        new = condition(desired, "Ready") or {}
        step = str(new.get("reason"))
        members = f"{','.join(desired['configuredMembers'])}|{','.join(desired['pendingMembers'])}"
        act = Action("status", SMMRS, ns, name, desired)
        tid = f"{ns}/{name}:{step}:{members}:{generation(smmr)}"
        out.append(Transition(tid, "ServiceMeshMemberRoll", ns, name, step, (act,)))
    ready = old_ready or {}
    if ready.get("reason") not in ("Configured", "ErrNamespaceMissing"):
        return out
    configured = list(current.get("configuredMembers") or [])
    for member in configured:
        obj = namespaces.get(member)
        if obj is not None and labels(obj).get(MEMBER_OF) != ns:
            act = Action(
                "patch", NAMESPACES, None, member, {"metadata": {"labels": {MEMBER_OF: ns}}}
            )
            out.append(
                Transition(
                    f"{ns}/{name}:label:{member}",
                    "ServiceMeshMemberRoll",
                    ns,
                    name,
                    f"label:{member}",
                    (act,),
                )
            )
    for other, obj in namespaces.items():
        if labels(obj).get(MEMBER_OF) == ns and other not in configured and not deleting(obj):
            act = Action(
                "patch", NAMESPACES, None, other, {"metadata": {"labels": {MEMBER_OF: None}}}
            )
            out.append(
                Transition(
                    f"{ns}/{name}:unlabel:{other}",
                    "ServiceMeshMemberRoll",
                    ns,
                    name,
                    f"unlabel:{other}",
                    (act,),
                )
            )
    if kiali is not None and smcps and kiali_name(spec(smcps[0])) == name_of(kiali):
        accessible = sorted(configured) or [ns]
        current_list = ((spec(kiali).get("deployment") or {}).get("accessible_namespaces")) or []
        if sorted(current_list) != accessible:
            # A merge patch: only this field, as the member-roll controller does.
            body = {"spec": {"deployment": {"accessible_namespaces": accessible}}}
            act = Action("patch", KIALIS, ns, name_of(kiali), body)
            step = "kiali:" + ",".join(accessible)
            out.append(
                Transition(f"{ns}/{name}:{step}", "ServiceMeshMemberRoll", ns, name, step, (act,))
            )
    return out


def member_policy_copy(policy: Obj, member: str, mesh_ns: str) -> Obj:
    """A mesh policy as the member controller copies it: same spec, labels and annotations,
    in the member namespace, labelled maistra.io/member-of, without the pruner's labels."""
    copied_labels = {k: v for k, v in labels(policy).items() if k not in PRUNER_LABELS}
    copied_labels[MEMBER_OF] = mesh_ns
    meta: Obj = {"name": name_of(policy), "namespace": member, "labels": copied_labels}
    notes = (policy.get("metadata") or {}).get("annotations")
    if notes:
        meta["annotations"] = dict(notes)
    return {"metadata": meta, "spec": spec(policy)}


def policy_transitions(
    smmr: Obj,
    configured: list[str],
    mesh_policies: list[Obj],
    member_policies: dict[str, list[Obj]],
) -> list[Transition]:
    """Maistra's network-policy strategy (member/ovs_networkpolicy.go): every policy the mesh
    owns in its namespace that is not maistra.io/internal is created in each configured member
    namespace, and a copy the mesh no longer requires, or in a namespace that left, goes."""
    ns, name = ns_of(smmr), name_of(smmr)
    required = {
        name_of(p): p
        for p in mesh_policies
        if labels(p).get(OWNER) == ns
        and INTERNAL not in ((p.get("metadata") or {}).get("annotations") or {})
    }
    out: list[Transition] = []

    def t(step: str, act: Action) -> None:
        out.append(
            Transition(f"{ns}/{name}:{step}", "ServiceMeshMemberRoll", ns, name, step, (act,))
        )

    for member, present in member_policies.items():
        have = {name_of(p) for p in present}
        if member in configured:
            for pname, policy in sorted(required.items()):
                if pname not in have:
                    body = member_policy_copy(policy, member, ns)
                    t(
                        f"netpol:{member}:{pname}",
                        Action("create", NETWORKPOLICIES, member, body=body, tolerate=(409,)),
                    )
            gone = have - set(required)
        else:
            gone = have
        for pname in sorted(gone):
            t(f"netpol-delete:{member}:{pname}", Action("delete", NETWORKPOLICIES, member, pname))
    return out


class SmmrController:
    name = "smmr"

    def watches(self) -> Iterable[Resource]:
        return (SMMRS, SMCPS, NAMESPACES, KIALIS, NETWORKPOLICIES)

    def __init__(self) -> None:
        self._store: Store | None = None

    def bind(self, store: Store) -> None:
        self._store = store

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        if res == SMMRS:
            return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]
        store = self._store
        if store is None:
            return []
        if res == NAMESPACES:
            ns = name_of(obj)
            return [
                (ns_of(r), name_of(r))
                for r in store.list(SMMRS)
                if ns in (spec(r).get("members") or []) or labels(obj).get(MEMBER_OF) == ns_of(r)
            ]
        if res == NETWORKPOLICIES:  # the mesh's own policy, or a copy in a member namespace
            mesh = labels(obj).get(OWNER) or labels(obj).get(MEMBER_OF)
            return [(ns_of(r), name_of(r)) for r in store.list(SMMRS, mesh)] if mesh else []
        return [(ns_of(r), name_of(r)) for r in store.list(SMMRS, ns_of(obj))]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        ns, name = key
        smmr = store.get(SMMRS, ns, name)
        if smmr is None or deleting(smmr):
            return []
        smcps = [s for s in store.list(SMCPS, ns) if not deleting(s)]
        namespaces = {name_of(n): n for n in store.list(NAMESPACES)}
        kname = kiali_name(spec(smcps[0])) if len(smcps) == 1 else None
        kiali = store.get(KIALIS, ns, kname) if kname else None
        configured = list(status(smmr).get("configuredMembers") or [])
        copies: dict[str, list[Obj]] = {m: [] for m in configured if m in namespaces}
        for policy in store.list(NETWORKPOLICIES):
            if labels(policy).get(MEMBER_OF) == ns:
                copies.setdefault(ns_of(policy), []).append(policy)
        mesh_policies = store.list(NETWORKPOLICIES, ns)
        return smmr_transitions(smmr, smcps, namespaces, kiali, knobs) + policy_transitions(
            smmr, configured, mesh_policies, copies
        )


def smm_transitions(
    smm: Obj, smmr: Obj | None, cp_namespace_exists: bool, knobs: Knobs, now: str | None = None
) -> list[Transition]:
    now = now or now_iso()
    ns, name = ns_of(smm), name_of(smm)
    ref = spec(smm).get("controlPlaneRef") or {}
    cp_ns = str(ref.get("namespace", ""))
    out: list[Transition] = []

    def t(step: str, *acts: Action) -> Transition:
        return Transition(f"{ns}/{name}:{step}", "ServiceMeshMember", ns, name, step, acts)

    if smmr is None:
        if cp_namespace_exists and name == "default":
            body = {"metadata": {"name": "default", "namespace": cp_ns}, "spec": {"members": [ns]}}
            out.append(t("create-smmr", Action("create", SMMRS, cp_ns, body=body, tolerate=(409,))))
    elif name == "default" and ns not in (spec(smmr).get("members") or []):
        members = [*(spec(smmr).get("members") or []), ns]
        out.append(
            t(
                "add-member",
                Action("patch", SMMRS, cp_ns, "default", {"spec": {"members": members}}),
            )
        )
    configured = smmr is not None and ns in (status(smmr).get("configuredMembers") or [])
    failure = knobs.failure("ServiceMeshMember", ns, name)
    if name != "default":
        reason, message, ok = (
            "ErrInvalidName",
            "the ServiceMeshMember must be named 'default'",
            False,
        )
    elif failure:
        reason, message, ok = failure.reason, failure.message, False
    elif configured:
        reason, message, ok = (
            "Configured",
            "The namespace has been configured for use with control plane "
            f"{cp_ns}/{ref.get('name', '')}",
            True,
        )
    elif smmr is None:
        reason, message, ok = (
            "ErrSMMRMissing",
            f"No ServiceMeshMemberRoll exists in namespace {cp_ns}",
            False,
        )
    else:
        reason, message, ok = (
            "NamespaceNotConfigured",
            "The namespace is not yet configured by the member roll",
            False,
        )
    conds = status(smm).get("conditions") or []
    for ctype in ("Reconciled", "Ready"):
        conds = set_condition(
            conds,
            {
                "type": ctype,
                "status": "True" if ok else "False",
                "reason": reason,
                "message": message,
            },
            now,
        )
    desired = {"conditions": conds, "observedGeneration": generation(smm)}
    if strip_times(desired) != strip_times({k: status(smm).get(k) for k in desired}):
        out.append(t(f"status:{reason}", Action("status", SMMS, ns, name, desired)))
    return out


class SmmController:
    name = "smm"

    def __init__(self) -> None:
        self._store: Store | None = None

    def bind(self, store: Store) -> None:
        self._store = store

    def watches(self) -> Iterable[Resource]:
        return (SMMS, SMMRS, NAMESPACES)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        if res == SMMS:
            return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]
        store = self._store
        if store is None:
            return []
        cp_ns = name_of(obj) if res == NAMESPACES else ns_of(obj)
        return [
            (ns_of(m), name_of(m))
            for m in store.list(SMMS)
            if (spec(m).get("controlPlaneRef") or {}).get("namespace") == cp_ns
        ]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        ns, name = key
        smm = store.get(SMMS, ns, name)
        if smm is None or deleting(smm):
            return []
        cp_ns = str((spec(smm).get("controlPlaneRef") or {}).get("namespace", ""))
        smmr = store.get(SMMRS, cp_ns, "default")
        exists = store.get(NAMESPACES, None, cp_ns) is not None
        return smm_transitions(smm, smmr, exists, knobs)
