"""Simulated Maistra 2.4 member-roll and member controllers (ServiceMeshMemberRoll/Member v1).

ServiceMeshMemberRoll (maistra 2.4 memberroll/controller.go):
- not named `default`: Ready False ErrInvalidName; more than one SMCP: ErrMultipleSMCPs;
- with the (one) SMCP, a ServiceMeshMember `default` is created in each required namespace
  (spec.members, `*` and memberSelectors against the namespaces; annotated created-by this
  controller, controlPlaneRef = the SMCP); a missing namespace gets member condition Reconciled
  False NamespaceNotExists; members it created that are no longer required are deleted;
- the known members are the required namespaces plus every namespace whose SMM refers to this
  mesh. A member is configured when its SMM is Reconciled True for this SMCP, up to date when
  its meshReconciledVersion is the SMCP's (`<operatorVersion>-<observedGeneration>`);
  pendingMembers = known - up to date - terminating;
- Ready: ErrSMCPMissing without SMCP; ReconcileError "The following namespaces are not yet
  configured: [a b]" while any is pending; Configured otherwise. There is no wait for the SMCP
  to be Ready and no per-namespace "missing" reason;
- once the SMCP's appliedSpec enables Kiali, its CR gets deployment.accessible_namespaces = all
  known members and api.namespaces.exclude = [] (one merge patch, only when they differ).
ServiceMeshMember `default` (member/controller.go): with its SMCP present, creates the roll when
there is none (created-by the member controller, no spec.members), labels the namespace
maistra.io/member-of, copies the mesh's NetworkPolicies into it, and reports Reconciled/Ready
True with meshGeneration/meshReconciledVersion; otherwise Reconciled/Ready False with the
reason (InvalidName, ErrorControlPlaneMissing).
Finalizers (common/finalizers.go): both controllers first add `maistra.io/istio-operator` to an
object that lacks it, and do nothing else in that reconcile. A roll being deleted deletes the
members it created and empties its Kiali CR's accessible_namespaces, then lets go. A member being
deleted takes its namespace out of the mesh (the policy copies and the member-of label; nothing
when the namespace is gone or terminating, then only its status says ErrorRemovingNamespace),
deletes a roll the member controller created once no other member and no spec.members are left,
then lets go. Without the operator running, neither is ever let go.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import KIALIS, NAMESPACES, NETWORKPOLICIES, SMCPS, SMMRS, SMMS, Resource
from devcluster.sim.maistra import (
    FINALIZER,
    MEMBER_OF,
    OWNER,
    OWNER_NAME,
    finalizer_transition,
    finalizers_of,
    kiali_name,
    reconciled_and_ready,
)
from devcluster.sim.netpol import selects
from devcluster.sim.objects import (
    Obj,
    annotations_of,
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
CREATED_BY = "maistra.io/created-by"
ROLL_CONTROLLER = "servicemeshmemberroll-controller"
MEMBER_CONTROLLER = "servicemeshmember-controller"
PRUNER_LABELS = (OWNER, OWNER_NAME, "app.kubernetes.io/version")
OPERATOR_NAMESPACE = "openshift-operators"


def _ready(reason: str, message: str, ok: bool = False) -> Obj:
    return {
        "type": "Ready",
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def reconciled_version(smcp: Obj | None) -> str:
    """ControlPlaneStatus.GetReconciledVersion: `<operatorVersion>-<observedGeneration>`."""
    if smcp is None:
        return "0.0.0-0"
    st = status(smcp)
    return f"{st.get('operatorVersion') or ''}-{int(st.get('observedGeneration') or 0)}"


def required_namespaces(smmr: Obj, namespaces: dict[str, Obj]) -> list[str]:
    """spec.members without `*`, plus every namespace `*` or a memberSelector matches."""
    members = list(spec(smmr).get("members") or [])
    selectors = list(spec(smmr).get("memberSelectors") or [])
    found = {m for m in members if m != "*"}
    for name, obj in namespaces.items():
        if "*" in members or any(selects(s, labels(obj)) for s in selectors):
            found.add(name)
    found.discard(OPERATOR_NAMESPACE)
    return sorted(found)


def _member_condition(
    previous: dict[str, list[Obj]], namespace: str, cond: Obj | None, now: str
) -> list[Obj]:
    if not cond:
        return previous.get(namespace, [])
    return set_condition(previous.get(namespace, []), cond, now)


def desired_smmr_status(
    smmr: Obj,
    smcps: list[Obj],
    namespaces: dict[str, Obj],
    members: list[Obj],
    *,
    knobs: Knobs,
    now: str,
) -> Obj:
    """What maistra 2.4's memberroll controller would write, from the objects it looks at."""
    ns = ns_of(smmr)
    previous = {
        str(m.get("namespace")): list(m.get("conditions") or [])
        for m in status(smmr).get("memberStatuses") or []
    }
    if name_of(smmr) != "default":
        return {
            "conditions": [
                _ready(
                    "ErrInvalidName", 'the ServiceMeshMemberRoll name is invalid; must be "default"'
                )
            ]
        }
    if len(smcps) > 1:
        return {
            "conditions": [
                _ready(
                    "ErrMultipleSMCPs",
                    "Multiple ServiceMeshControlPlane resources exist in the namespace",
                )
            ]
        }
    mesh = smcps[0] if smcps else None
    required = required_namespaces(smmr, namespaces)
    conds: dict[str, Obj | None] = {}
    if mesh is not None:
        for missing in required:
            if missing not in namespaces:
                conds[missing] = {
                    "type": "Reconciled",
                    "status": "False",
                    "reason": "NamespaceNotExists",
                    "message": f"Namespace {missing} does not exist",
                }
    known = set(required) | {ns_of(m) for m in members}
    known.discard(ns)
    configured: set[str] = set()
    up_to_date: set[str] = set()
    terminating: set[str] = set()
    version = reconciled_version(mesh)
    for member in members:
        where = ns_of(member)
        if deleting(member):
            terminating.add(where)
        else:
            ref = spec(member).get("controlPlaneRef") or {}
            rec = condition(status(member), "Reconciled") or {}
            if (
                mesh is not None
                and ref.get("name") == name_of(mesh)
                and ref.get("namespace") == ns
                and rec.get("status") == "True"
            ):
                configured.add(where)
                if status(member).get("meshReconciledVersion") == version:
                    up_to_date.add(where)
        conds[where] = condition(status(member), "Reconciled")
    ordered = sorted(known)
    pending = [m for m in ordered if m not in up_to_date and m not in terminating]
    if mesh is None:
        cond = _ready("ErrSMCPMissing", "No ServiceMeshControlPlane exists in the namespace")
    elif pending:
        cond = _ready(
            "ReconcileError",
            f"The following namespaces are not yet configured: [{' '.join(pending)}]",
        )
    elif failure := knobs.failure("ServiceMeshMemberRoll", ns, name_of(smmr)):
        cond = _ready(failure.reason, failure.message)
    else:
        cond = _ready("Configured", "All namespaces have been configured successfully", ok=True)
    member_statuses = [
        {"namespace": m, "conditions": _member_condition(previous, m, conds.get(m), now)}
        for m in ordered
    ]
    body: Obj = {
        "members": ordered,
        "configuredMembers": sorted(configured),
        "pendingMembers": pending,
        "terminatingMembers": sorted(terminating),
        "memberStatuses": member_statuses,
        "meshGeneration": int(status(mesh).get("observedGeneration") or 0)
        if mesh is not None
        else 0,
        "meshReconciledVersion": version if mesh is not None else "",
        "conditions": [cond],
        "observedGeneration": generation(smmr),
        "annotations": {"configuredMemberCount": f"{len(configured)}/{len(ordered)}"},
    }
    kname = kiali_name(status(mesh).get("appliedSpec") or {}) if mesh is not None else None
    if kname:
        body["annotations"]["kialiName"] = kname
    return body


def member_body(namespace: str, mesh: Obj) -> Obj:
    return {
        "metadata": {
            "name": "default",
            "namespace": namespace,
            "annotations": {CREATED_BY: ROLL_CONTROLLER},
        },
        "spec": {"controlPlaneRef": {"name": name_of(mesh), "namespace": ns_of(mesh)}},
    }


def smmr_transitions(
    smmr: Obj,
    smcps: list[Obj],
    namespaces: dict[str, Obj],
    members: list[Obj],
    kiali: Obj | None,
    *,
    knobs: Knobs,
    now: str | None = None,
) -> list[Transition]:
    now = now or now_iso()
    ns, name = ns_of(smmr), name_of(smmr)
    out: list[Transition] = []

    def t(step: str, *acts: Action) -> None:
        out.append(Transition(f"{ns}/{name}:{step}", "ServiceMeshMemberRoll", ns, name, step, acts))

    desired = desired_smmr_status(smmr, smcps, namespaces, members, knobs=knobs, now=now)
    current = status(smmr)
    desired["conditions"] = set_condition(
        current.get("conditions") or [], desired["conditions"][0], now
    )
    if any(strip_times(current.get(k)) != strip_times(v) for k, v in desired.items()):
        reason = str((condition(desired, "Ready") or {}).get("reason"))
        pending = ",".join(desired.get("pendingMembers") or [])
        out.append(
            Transition(
                f"{ns}/{name}:{reason}:{pending}:{generation(smmr)}",
                "ServiceMeshMemberRoll",
                ns,
                name,
                reason,
                (Action("status", SMMRS, ns, name, desired),),
            )
        )
    if name != "default" or len(smcps) != 1:
        return out
    mesh = smcps[0]
    required = required_namespaces(smmr, namespaces)
    by_ns = {ns_of(m): m for m in members}
    for wanted in required:
        if (
            wanted in namespaces
            and wanted not in by_ns
            and wanted != ns
            and not deleting(namespaces[wanted])
        ):
            body = member_body(wanted, mesh)
            t(f"member:{wanted}", Action("create", SMMS, wanted, body=body, tolerate=(409,)))
    for member in members:
        created_here = annotations_of(member).get(CREATED_BY) == ROLL_CONTROLLER
        if created_here and not deleting(member) and ns_of(member) not in required:
            t(
                f"member-delete:{ns_of(member)}",
                Action("delete", SMMS, ns_of(member), "default", tolerate=(404,)),
            )
    kname = kiali_name(status(mesh).get("appliedSpec") or {})
    if kiali is not None and kname == name_of(kiali):
        known = desired.get("members") or []
        current_spec = spec(kiali)
        accessible = (current_spec.get("deployment") or {}).get("accessible_namespaces")
        exclude = ((current_spec.get("api") or {}).get("namespaces") or {}).get("exclude")
        if accessible is None or sorted(accessible) != sorted(known) or exclude is None or exclude:
            # One merge patch of both fields, as the member-roll controller does.
            patch = {
                "spec": {
                    "deployment": {"accessible_namespaces": sorted(known)},
                    "api": {"namespaces": {"exclude": []}},
                }
            }
            t("kiali:" + ",".join(known), Action("patch", KIALIS, ns, name_of(kiali), patch))
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


def smmr_finalize(smmr: Obj, members: list[Obj], kiali: Obj | None) -> list[Transition]:
    """memberroll finalizeObject: delete the members this controller created, empty the Kiali
    CR's namespaces, then remove the finalizer (it does not wait for the members to go)."""
    acts = [
        Action("delete", SMMS, ns_of(m), name_of(m), tolerate=(404,))
        for m in members
        if not deleting(m) and annotations_of(m).get(CREATED_BY) == ROLL_CONTROLLER
    ]
    if kiali is not None:
        current = spec(kiali)
        accessible = (current.get("deployment") or {}).get("accessible_namespaces")
        exclude = ((current.get("api") or {}).get("namespaces") or {}).get("exclude")
        if accessible != [] or exclude != []:
            empty = {
                "deployment": {"accessible_namespaces": []},
                "api": {"namespaces": {"exclude": []}},
            }
            acts.append(
                Action(
                    "patch", KIALIS, ns_of(kiali), name_of(kiali), {"spec": empty}, tolerate=(404,)
                )
            )
    return [finalizer_transition("ServiceMeshMemberRoll", SMMRS, smmr, *acts)]


def smm_finalize(
    smm: Obj,
    namespace: Obj | None,
    copies: list[Obj],
    roll: Obj | None,
    others: list[Obj],
    *,
    now: str | None = None,
) -> list[Transition]:
    """member finalizeObject: take the namespace out of the mesh (removeNamespaceFromMesh),
    delete a roll the member controller made once nothing else needs it, remove the finalizer.
    A terminating namespace is left alone: the error goes to the member's status, which
    reportError writes and returns no error for, so the finalizer still goes."""
    ns = ns_of(smm)
    cp_ns = str((spec(smm).get("controlPlaneRef") or {}).get("namespace", ""))
    acts: list[Action] = []
    if namespace is not None and deleting(namespace):
        conds = reconciled_and_ready(
            status(smm).get("conditions") or [],
            False,
            "ErrorRemovingNamespace",
            "namespace is terminating",
            now or now_iso(),
        )
        body = {"conditions": conds, "observedGeneration": generation(smm)}
        acts.append(Action("status", SMMS, ns, name_of(smm), body, tolerate=(404,)))
    elif namespace is not None:
        acts += [Action("delete", NETWORKPOLICIES, ns, name_of(p), tolerate=(404,)) for p in copies]
        if MEMBER_OF in labels(namespace):
            unlabel = {"metadata": {"labels": {MEMBER_OF: None}}}
            acts.append(Action("patch", NAMESPACES, None, ns, unlabel, tolerate=(404,)))
    if (
        not (namespace is not None and deleting(namespace))
        and roll is not None
        and not deleting(roll)
        and annotations_of(roll).get(CREATED_BY) == MEMBER_CONTROLLER
        and not spec(roll).get("members")
        and all(
            (m.get("metadata") or {}).get("uid") == (smm.get("metadata") or {}).get("uid")
            for m in others
        )
    ):
        acts.append(Action("delete", SMMRS, cp_ns, name_of(roll), tolerate=(404,)))
    return [finalizer_transition("ServiceMeshMember", SMMS, smm, *acts)]


class SmmrController:
    name = "smmr"

    def watches(self) -> Iterable[Resource]:
        return (SMMRS, SMCPS, SMMS, NAMESPACES, KIALIS)

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
            return [(ns_of(r), name_of(r)) for r in store.list(SMMRS)]
        if res == SMMS:
            mesh = str((spec(obj).get("controlPlaneRef") or {}).get("namespace") or "")
            return [(ns_of(r), name_of(r)) for r in store.list(SMMRS, mesh)] if mesh else []
        return [(ns_of(r), name_of(r)) for r in store.list(SMMRS, ns_of(obj))]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        ns, name = key
        smmr = store.get(SMMRS, ns, name)
        if smmr is None:
            return []
        members = [
            m
            for m in store.list(SMMS)
            if (spec(m).get("controlPlaneRef") or {}).get("namespace") == ns
            and name_of(m) == "default"
        ]
        if deleting(smmr):
            if FINALIZER not in finalizers_of(smmr):
                return []
            kname = (status(smmr).get("annotations") or {}).get("kialiName")
            kiali = store.get(KIALIS, ns, kname) if kname else None
            return smmr_finalize(smmr, members, kiali)
        if FINALIZER not in finalizers_of(smmr):
            return [finalizer_transition("ServiceMeshMemberRoll", SMMRS, smmr)]
        smcps = [s for s in store.list(SMCPS, ns) if not deleting(s)]
        namespaces = {name_of(n): n for n in store.list(NAMESPACES)}
        kname = kiali_name(status(smcps[0]).get("appliedSpec") or {}) if len(smcps) == 1 else None
        kiali = store.get(KIALIS, ns, kname) if kname else None
        return smmr_transitions(smmr, smcps, namespaces, members, kiali, knobs=knobs)


def smm_transitions(
    smm: Obj,
    smcp: Obj | None,
    *,
    smmr_exists: bool,
    namespace: Obj | None,
    mesh_policies: list[Obj],
    copies: list[Obj],
    knobs: Knobs,
    now: str | None = None,
) -> list[Transition]:
    now = now or now_iso()
    ns, name = ns_of(smm), name_of(smm)
    ref = spec(smm).get("controlPlaneRef") or {}
    cp_ns = str(ref.get("namespace", ""))
    out: list[Transition] = []

    def t(step: str, *acts: Action) -> None:
        out.append(Transition(f"{ns}/{name}:{step}", "ServiceMeshMember", ns, name, step, acts))

    if ns == cp_ns:
        return out
    extra: Obj = {}
    failure = knobs.failure("ServiceMeshMember", ns, name)
    if name != "default":
        reason, message, ok = (
            "InvalidName",
            'the ServiceMeshMember name is invalid; must be "default"',
            False,
        )
    elif smcp is None:
        reason, message, ok = (
            "ErrorControlPlaneMissing",
            "the referenced ServiceMeshControlPlane object does not exist",
            False,
        )
    elif failure:
        reason, message, ok = failure.reason, failure.message, False
    else:
        reason, message, ok = "", "", True
        if not smmr_exists:
            body = {
                "metadata": {
                    "name": "default",
                    "namespace": cp_ns,
                    "annotations": {CREATED_BY: MEMBER_CONTROLLER},
                },
                "spec": {},  # required by the CRD; no members
            }
            t("create-smmr", Action("create", SMMRS, cp_ns, body=body, tolerate=(409,)))
        if (
            namespace is not None
            and labels(namespace).get(MEMBER_OF) != cp_ns
            and not deleting(namespace)
        ):
            t(
                "label",
                Action("patch", NAMESPACES, None, ns, {"metadata": {"labels": {MEMBER_OF: cp_ns}}}),
            )
        pseudo_roll = {"metadata": {"name": "default", "namespace": cp_ns}}
        for tr in policy_transitions(pseudo_roll, [ns], mesh_policies, {ns: copies}):
            t(tr.step, *tr.actions)
        extra = {
            "meshGeneration": int(status(smcp).get("observedGeneration") or 0),
            "meshReconciledVersion": reconciled_version(smcp),
        }
    conds = status(smm).get("conditions") or []
    conds = reconciled_and_ready(conds, ok, reason, message, now)
    desired: Obj = {
        "conditions": conds,
        "observedGeneration": generation(smm),
        "annotations": {"controlPlaneRef": f"{cp_ns}/{ref.get('name', '')}"},
        **extra,
    }
    if strip_times(desired) != strip_times({k: status(smm).get(k) for k in desired}):
        label = reason or f"Reconciled:{extra.get('meshReconciledVersion', '')}"
        t(f"status:{label}", Action("status", SMMS, ns, name, desired))
    return out


class SmmController:
    name = "smm"

    def __init__(self) -> None:
        self._store: Store | None = None

    def bind(self, store: Store) -> None:
        self._store = store

    def watches(self) -> Iterable[Resource]:
        return (SMMS, SMMRS, SMCPS, NAMESPACES, NETWORKPOLICIES)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        if res == SMMS:
            return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]
        store = self._store
        if store is None:
            return []
        if res == NETWORKPOLICIES:
            mesh = labels(obj).get(OWNER)
            if not mesh:  # a copy (or another policy) in a member namespace
                return [(ns_of(m), name_of(m)) for m in store.list(SMMS, ns_of(obj))]
            cp_ns = mesh
        else:
            cp_ns = name_of(obj) if res == NAMESPACES else ns_of(obj)
        keys = [
            (ns_of(m), name_of(m))
            for m in store.list(SMMS)
            if (spec(m).get("controlPlaneRef") or {}).get("namespace") == cp_ns
        ]
        if res == NAMESPACES:
            keys += [(ns_of(m), name_of(m)) for m in store.list(SMMS, name_of(obj))]
        return keys

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        ns, name = key
        smm = store.get(SMMS, ns, name)
        if smm is None:
            return []
        ref = spec(smm).get("controlPlaneRef") or {}
        cp_ns, cp_name = str(ref.get("namespace", "")), str(ref.get("name", ""))
        if deleting(smm):
            if FINALIZER not in finalizers_of(smm):
                return []
            copies = [
                p for p in store.list(NETWORKPOLICIES, ns) if labels(p).get(MEMBER_OF) == cp_ns
            ]
            others = [
                m
                for m in store.list(SMMS)
                if (spec(m).get("controlPlaneRef") or {}).get("namespace") == cp_ns
            ]
            return smm_finalize(
                smm,
                store.get(NAMESPACES, None, ns),
                copies,
                store.get(SMMRS, cp_ns, "default"),
                others,
            )
        if FINALIZER not in finalizers_of(smm):
            return [finalizer_transition("ServiceMeshMember", SMMS, smm)]
        smcp = store.get(SMCPS, cp_ns, cp_name) if cp_name else None
        if smcp is not None and deleting(smcp):
            smcp = None
        smmr_exists = store.get(SMMRS, cp_ns, "default") is not None
        copies = [p for p in store.list(NETWORKPOLICIES, ns) if labels(p).get(MEMBER_OF) == cp_ns]
        return smm_transitions(
            smm,
            smcp,
            smmr_exists=smmr_exists,
            namespace=store.get(NAMESPACES, None, ns),
            mesh_policies=store.list(NETWORKPOLICIES, cp_ns),
            copies=copies,
            knobs=knobs,
        )
