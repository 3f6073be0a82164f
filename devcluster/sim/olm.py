"""Simulated OLM catalog operator + OLM operator for one namespace at a time.

What it reproduces (each behaviour and its upstream source: docs/fidelity.md, "OLM"):
- One InstallPlan per namespace resolution, covering every Subscription not yet covered;
  `Manual` (that exact string) on any Subscription in the namespace makes the plan Manual.
  Plans are numbered (spec.generation); a Subscription whose status points at a plan and says
  UpgradePending is not resolved again.
- A new plan is created without status; its phase is written in a second step.
- Approving (`spec.approved: true`) a Manual plan while its phase is still empty makes the
  simulator supersede it with a second plan listing the same CSVs (the Subscription's
  installPlanRef moves on); the first plan stays phase-less forever.
- After approval: Installing -> Complete, the CSVs are created and go
  Pending -> InstallReady -> Installing -> Succeeded (or Failed by knob).
- CSV Failed with TooManyOperatorGroups / NoOperatorGroup / UnsupportedOperatorGroup, the real
  OLM messages; it recovers to Pending once the namespace has exactly one fitting group.
- Subscription status follows: installPlanRef, installplan, currentCSV, installedCSV, state
  (UpgradePending -> AtLatestKnown), InstallPlanPending condition.
A Subscription without spec.startingCSV resolves to `<spec.name>.v1.0.0` (no real catalog).
CSVs and OperatorGroups: csvs.py; copied CSVs and CatalogSources: catalog.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devcluster.sim.csvs import csv_transitions, new_csv, operator_group_transitions, phase
from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import CSVS, INSTALLPLANS, OLM, OPERATORGROUPS, SUBSCRIPTIONS, Resource
from devcluster.sim.objects import (
    Obj,
    annotations_of,
    condition,
    created_key,
    deleting,
    labels,
    name_of,
    now_iso,
    owner_ref,
    set_condition,
    spec,
    status,
    strip_times,
)

V1ALPHA1 = f"{OLM}/v1alpha1"
SUPERSEDED = "devcluster.sim/superseded-by"
COPIED_FROM = "olm.copiedFrom"
CLUSTER_WIDE_LABEL = "devcluster.sim/cluster-wide"


def sub_csv(sub: Obj) -> str:
    s = spec(sub)
    return str(s.get("startingCSV") or f"{s.get('name', name_of(sub))}.v1.0.0")


def is_manual(sub: Obj) -> bool:
    # OLM does not validate installPlanApproval; only this exact string means manual.
    return spec(sub).get("installPlanApproval") == "Manual"


def active_plans(plans: Iterable[Obj]) -> list[Obj]:
    alive = [p for p in plans if SUPERSEDED not in annotations_of(p) and not deleting(p)]
    return sorted(alive, key=created_key)


def plan_for(plans: list[Obj], csv_name: str) -> Obj | None:
    """The newest active plan listing `csv_name`."""
    found = None
    for plan in plans:
        if csv_name in (spec(plan).get("clusterServiceVersionNames") or []):
            found = plan
    return found


class NamespaceView:
    """Everything OLM looks at in one namespace, read once from the cache."""

    def __init__(self, namespace: str, store: Store) -> None:
        self.namespace = namespace
        self.subs = sorted(store.list(SUBSCRIPTIONS, namespace), key=created_key)
        self.plans = sorted(store.list(INSTALLPLANS, namespace), key=created_key)
        self.csvs = {name_of(c): c for c in store.list(CSVS, namespace)}
        self.ogs = [o for o in store.list(OPERATORGROUPS, namespace) if not deleting(o)]

    @classmethod
    def of(
        cls, namespace: str, subs: list[Obj], plans: list[Obj], csvs: list[Obj], ogs: list[Obj]
    ) -> NamespaceView:
        view = cls.__new__(cls)
        view.namespace = namespace
        view.subs = sorted(subs, key=created_key)
        view.plans = sorted(plans, key=created_key)
        view.csvs = {name_of(c): c for c in csvs}
        view.ogs = [o for o in ogs if not deleting(o)]
        return view


def _t(
    view: NamespaceView,
    kind: str,
    name: str,
    step: str,
    *actions: Action,
    delayed: bool = True,
    detail: str = "",
) -> Transition:
    """`step` is what the log says (e.g. Succeeded); `detail` only tells transitions apart."""
    return Transition(
        id=f"{kind}/{view.namespace}/{name}:{step}{':' + detail if detail else ''}",
        kind=kind,
        namespace=view.namespace,
        name=name,
        step=step,
        actions=tuple(actions),
        delayed=delayed,
    )


def transitions(view: NamespaceView, knobs: Knobs, now: str | None = None) -> list[Transition]:
    now = now or now_iso()
    ns = view.namespace
    out: list[Transition] = []
    failing = {name_of(s) for s in view.subs if knobs.failure("Subscription", ns, name_of(s))}
    out += _resolution_failures(view, knobs, now)
    plans = active_plans(view.plans)
    out += _early_approvals(view, plans)
    subs = [s for s in view.subs if name_of(s) not in failing and not deleting(s)]
    out += _new_plan(view, subs, plans)
    for sub in subs:
        out += _subscription_status(view, sub, plans, now)
    for plan in plans:
        out += _plan_phase(view, plan, knobs, now)
    for csv in view.csvs.values():
        foreign = COPIED_FROM in labels(csv) or CLUSTER_WIDE_LABEL in labels(csv)
        if not foreign and not deleting(csv):
            out += csv_transitions(ns, csv, view.ogs, knobs, now)
    for og in view.ogs:
        out += operator_group_transitions(ns, og, now)
    return out


def _resolution_failures(view: NamespaceView, knobs: Knobs, now: str) -> list[Transition]:
    out = []
    for sub in view.subs:
        failure = knobs.failure("Subscription", view.namespace, name_of(sub))
        cond = condition(status(sub), "ResolutionFailed")
        if failure and (cond is None or cond.get("status") != "True"):
            conds = set_condition(
                status(sub).get("conditions") or [],
                {
                    "type": "ResolutionFailed",
                    "status": "True",
                    "reason": failure.reason,
                    "message": failure.message,
                },
                now,
            )
            body = {"conditions": conds, "lastUpdated": now}
            out.append(
                _t(
                    view,
                    "Subscription",
                    name_of(sub),
                    "ResolutionFailed",
                    _status(SUBSCRIPTIONS, view.namespace, sub, body),
                )
            )
    return out


def _early_approvals(view: NamespaceView, plans: list[Obj]) -> list[Transition]:
    """The duplicate-plan trap: a Manual plan approved before its phase was written."""
    out = []
    for plan in plans:
        s = spec(plan)
        if s.get("approval") == "Manual" and s.get("approved") is True and not phase(plan):
            name = name_of(plan)
            mark = Action(
                "patch",
                INSTALLPLANS,
                view.namespace,
                name,
                {"metadata": {"annotations": {SUPERSEDED: "resolution-retried"}}},
            )
            dup = Action(
                "create",
                INSTALLPLANS,
                view.namespace,
                body=_plan_body(
                    view,
                    plan_csvs(plan),
                    "Manual",
                    owners=plan.get("metadata", {}).get("ownerReferences") or [],
                ),
            )
            out.append(_t(view, "InstallPlan", name, "duplicate", mark, dup))
    return out


def plan_csvs(plan: Obj) -> list[str]:
    return list(spec(plan).get("clusterServiceVersionNames") or [])


def next_generation(view: NamespaceView) -> int:
    """OLM numbers a namespace's plans: one more than any Subscription's installPlanGeneration
    and any existing plan's spec.generation."""
    gens = [int(status(s).get("installPlanGeneration") or 0) for s in view.subs]
    gens += [int(spec(p).get("generation") or 0) for p in view.plans]
    return max(gens, default=0) + 1


def has_pending_plan(sub: Obj) -> bool:
    """OLM does not resolve a Subscription again while it has a plan under way."""
    st = status(sub)
    return bool(st.get("installPlanRef")) and st.get("state") == "UpgradePending"


def _plan_body(view: NamespaceView, csv_names: list[str], approval: str, owners: list[Obj]) -> Obj:
    return {
        "apiVersion": V1ALPHA1,
        "kind": "InstallPlan",
        "metadata": {
            "generateName": "install-",
            "namespace": view.namespace,
            "ownerReferences": owners,
        },
        "spec": {
            "approval": approval,
            "approved": approval != "Manual",
            "clusterServiceVersionNames": csv_names,
            "generation": next_generation(view),
        },
    }


def _new_plan(view: NamespaceView, subs: list[Obj], plans: list[Obj]) -> list[Transition]:
    covered = {c for p in plans for c in plan_csvs(p)}
    uncovered = [
        s
        for s in subs
        if sub_csv(s) not in covered and sub_csv(s) not in view.csvs and not has_pending_plan(s)
    ]
    if not uncovered:
        return []
    manual = any(is_manual(s) for s in view.subs)
    csv_names = list(dict.fromkeys(sub_csv(s) for s in uncovered))
    owners = [owner_ref(s, V1ALPHA1, "Subscription") for s in uncovered]
    body = _plan_body(view, csv_names, "Manual" if manual else "Automatic", owners)
    first = name_of(uncovered[0])
    step = "plan:" + ",".join(sorted(csv_names))
    return [
        _t(
            view,
            "Subscription",
            first,
            step,
            Action("create", INSTALLPLANS, view.namespace, body=body),
            detail=f"generation={body['spec']['generation']}",
        )
    ]


def desired_subscription_status(
    sub: Obj, plans: list[Obj], csvs: dict[str, Obj], now: str
) -> Obj | None:
    csv_name = sub_csv(sub)
    plan = plan_for(plans, csv_name)
    if plan is None:
        return None
    csv = csvs.get(csv_name)
    p = phase(plan)
    current = status(sub)
    conds = [
        c
        for c in current.get("conditions") or []
        if c.get("type") not in ("InstallPlanPending", "InstallPlanFailed")
    ]
    if p in ("RequiresApproval", "Installing"):
        conds = set_condition(
            conds, {"type": "InstallPlanPending", "status": "True", "reason": p}, now
        )
    elif p == "Failed":
        conds = set_condition(
            conds,
            {"type": "InstallPlanFailed", "status": "True", "reason": "InstallComponentFailed"},
            now,
        )
    for old in current.get("conditions") or []:
        for new in conds:
            if new["type"] == old.get("type") and new.get("status") == old.get("status"):
                new["lastTransitionTime"] = old.get("lastTransitionTime", now)
    if csv is not None and phase(csv) == "Succeeded":
        state = "AtLatestKnown"
    elif p == "Failed":
        state = "UpgradeFailed"
    else:
        state = "UpgradePending"
    ref = {
        "apiVersion": V1ALPHA1,
        "kind": "InstallPlan",
        "name": name_of(plan),
        "namespace": plan["metadata"].get("namespace", ""),
        "uid": plan["metadata"].get("uid", ""),
    }
    desired: Obj = {
        "installPlanRef": ref,
        "installplan": {
            "apiVersion": V1ALPHA1,
            "kind": "InstallPlan",
            "name": name_of(plan),
            "uuid": ref["uid"],
        },
        "installPlanGeneration": int(spec(plan).get("generation") or 1),
        "currentCSV": csv_name,
        "state": state,
        "conditions": conds,
        "lastUpdated": now,
    }
    if csv is not None:
        desired["installedCSV"] = csv_name
    return desired


def _subscription_status(
    view: NamespaceView, sub: Obj, plans: list[Obj], now: str
) -> list[Transition]:
    desired = desired_subscription_status(sub, plans, view.csvs, now)
    if desired is None:
        return []
    current = status(sub)
    if all(
        strip_times(current.get(k)) == strip_times(v)
        for k, v in desired.items()
        if k != "lastUpdated"
    ):
        return []
    same_plan = (current.get("installPlanRef") or {}).get("name") == desired["installplan"]["name"]
    installed = "installed" if "installedCSV" in desired else ""
    step = f"status:{desired['state']}:{desired['installplan']['name']}:{installed}"
    for c in desired["conditions"]:
        step += f":{c['type']}={c.get('reason', '')}"
    return [
        _t(
            view,
            "Subscription",
            name_of(sub),
            step,
            _status(SUBSCRIPTIONS, view.namespace, sub, desired),
            # OLM writes a new plan's reference in the sync that created it: no delay for that.
            delayed=same_plan,
        )
    ]


def _plan_status(
    view: NamespaceView, plan: Obj, new_phase: str, now: str, conditions: list[Obj] | None = None
) -> Obj:
    by_csv = {sub_csv(s): s for s in view.subs}
    steps, sources = [], []
    done = "Created" if new_phase == "Complete" else "Unknown"
    for csv_name in plan_csvs(plan):
        sub_spec = spec(by_csv.get(csv_name) or {})
        src, src_ns = str(sub_spec.get("source", "")), str(sub_spec.get("sourceNamespace", ""))
        if src:
            sources.append(src)
        steps.append(
            {
                "resolving": csv_name,
                "resource": {
                    "group": OLM,
                    "version": "v1alpha1",
                    "kind": "ClusterServiceVersion",
                    "name": csv_name,
                    "sourceName": src,
                    "sourceNamespace": src_ns,
                },
                "status": done,
            }
        )
    body: Obj = {"phase": new_phase, "catalogSources": sorted(set(sources)), "plan": steps}
    if conditions is not None:
        body["conditions"] = conditions
    if new_phase == "Installing":
        body["startTime"] = now
    return body


def _plan_phase(view: NamespaceView, plan: Obj, knobs: Knobs, now: str) -> list[Transition]:
    s, p, name = spec(plan), phase(plan), name_of(plan)
    manual = s.get("approval") == "Manual"
    ns = view.namespace
    if not p:
        if manual and s.get("approved") is True:
            return []  # the early-approval trap handles it
        new = "RequiresApproval" if manual else "Installing"
        return [
            _t(
                view,
                "InstallPlan",
                name,
                new,
                _status(INSTALLPLANS, ns, plan, _plan_status(view, plan, new, now)),
            )
        ]
    if p == "RequiresApproval" and s.get("approved") is True:
        return [
            _t(
                view,
                "InstallPlan",
                name,
                "Installing",
                _status(INSTALLPLANS, ns, plan, _plan_status(view, plan, "Installing", now)),
            )
        ]
    if p != "Installing":
        return []
    failure = knobs.failure("InstallPlan", ns, name)
    if failure:
        cond = [
            {
                "type": "Installed",
                "status": "False",
                "reason": failure.reason,
                "message": failure.message,
                "lastTransitionTime": now,
                "lastUpdateTime": now,
            }
        ]
        body = _plan_status(view, plan, "Failed", now, cond)
        body["message"] = failure.message
        return [_t(view, "InstallPlan", name, "Failed", _status(INSTALLPLANS, ns, plan, body))]
    cond = [
        {"type": "Installed", "status": "True", "lastTransitionTime": now, "lastUpdateTime": now}
    ]
    creates = [
        Action("create", CSVS, ns, body=new_csv(c, ns, _sub_for(view, c)), tolerate=(409,))
        for c in plan_csvs(plan)
        if c not in view.csvs
    ]
    complete = _status(INSTALLPLANS, ns, plan, _plan_status(view, plan, "Complete", now, cond))
    return [_t(view, "InstallPlan", name, "Complete", *creates, complete)]


def _sub_for(view: NamespaceView, csv_name: str) -> Obj | None:
    return next((s for s in view.subs if sub_csv(s) == csv_name), None)


def _status(res: Resource, namespace: str, obj: Obj, body: Obj) -> Action:
    return Action("status", res, namespace, name_of(obj), body)


class OlmController:
    """Keys are namespaces: OLM resolves and installs per namespace."""

    name = "olm"

    def watches(self) -> Iterable[Resource]:
        return (SUBSCRIPTIONS, INSTALLPLANS, CSVS, OPERATORGROUPS)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        ns = obj.get("metadata", {}).get("namespace")
        return [ns] if ns else []

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        return transitions(NamespaceView(str(key), store), knobs)
