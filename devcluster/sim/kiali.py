"""Simulated Kiali operator (an Ansible-based operator) for kiali.io/v1alpha1 Kiali CRs.

For every new metadata.generation it runs a "reconciliation" in two steps, writing what
ansible-operator writes: first Running=True reason Running "Running reconciliation", then
Running=True reason Successful "Awaiting next reconciliation" (with ansibleResult) and
Successful=True "Last reconciliation succeeded" - or, by knob, Failure=True reason Failed.
Like the real operator it does NOT write status.observedGeneration (knob
`kiali_observed_generation: true` adds it); to know a change was reconciled, compare
ansibleResult.completion (or the Successful condition's lastTransitionTime) with the time of
the change. The generation reconciled last is kept in the annotation below.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from devcluster.sim.engine import Action, Key, Transition
from devcluster.sim.informer import Store
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import KIALIS, Resource
from devcluster.sim.objects import (
    Obj,
    annotations_of,
    condition,
    deleting,
    generation,
    name_of,
    now_iso,
    ns_of,
    set_condition,
    spec,
    status,
)

RECONCILED = "devcluster.sim/reconciled-generation"
OPERATOR_VERSION = "v1.65.11"


def kiali_transitions(kiali: Obj, knobs: Knobs, now: str | None = None) -> list[Transition]:
    now = now or now_iso()
    ns, name, gen = ns_of(kiali), name_of(kiali), generation(kiali)
    if int(annotations_of(kiali).get(RECONCILED) or 0) == gen:
        return []
    st = status(kiali)
    conds = list(st.get("conditions") or [])
    running = condition(st, "Running") or {}

    def t(step: str, *acts: Action) -> list[Transition]:
        return [Transition(f"{ns}/{name}:{step}:{gen}", "Kiali", ns, name, step, acts)]

    if running.get("reason") != "Running":
        conds = set_condition(
            conds,
            {
                "type": "Running",
                "status": "True",
                "reason": "Running",
                "message": "Running reconciliation",
            },
            now,
        )
        return t("running", Action("status", KIALIS, ns, name, {"conditions": conds}))
    failure = knobs.failure("Kiali", ns, name)
    completion = _dt.datetime.now(_dt.UTC).isoformat()
    result = {
        "changed": 1,
        "completion": completion,
        "failures": 1 if failure else 0,
        "ok": 42,
        "skipped": 17,
    }
    if failure:
        conds = [c for c in conds if c.get("type") != "Running"]
        conds = set_condition(
            conds,
            {
                "type": "Failure",
                "status": "True",
                "reason": "Failed",
                "message": failure.message,
                "ansibleResult": result,
            },
            now,
        )
        conds = set_condition(
            conds,
            {
                "type": "Successful",
                "status": "False",
                "reason": "Failed",
                "message": failure.message,
            },
            now,
        )
        conds = set_condition(
            conds,
            {
                "type": "Running",
                "status": "True",
                "reason": "Failed",
                "message": "Awaiting next reconciliation",
            },
            now,
        )
        progress = {"message": f"Error: {failure.message}"}
    else:
        conds = [c for c in conds if c.get("type") != "Failure"]
        conds = set_condition(
            conds,
            {
                "type": "Running",
                "status": "True",
                "reason": "Successful",
                "message": "Awaiting next reconciliation",
                "ansibleResult": result,
            },
            now,
        )
        conds = set_condition(
            conds,
            {
                "type": "Successful",
                "status": "True",
                "reason": "Successful",
                "message": "Last reconciliation succeeded",
            },
            now,
        )
        progress = {"message": "7. Finished all resource creation", "duration": "0:00:12"}
    deployment = spec(kiali).get("deployment") or {}
    body: Obj = {
        "conditions": conds,
        "deployment": {
            "accessibleNamespaces": ",".join(deployment.get("accessible_namespaces") or []),
            "instanceName": name,
            "namespace": deployment.get("namespace") or ns,
        },
        "environment": {"isKubernetes": False, "operatorVersion": OPERATOR_VERSION},
        "operatorVersion": OPERATOR_VERSION,
        "progress": progress,
    }
    if knobs.kiali_observed_generation:
        body["observedGeneration"] = gen
    mark = Action("patch", KIALIS, ns, name, {"metadata": {"annotations": {RECONCILED: str(gen)}}})
    return t("failed" if failure else "successful", Action("status", KIALIS, ns, name, body), mark)


class KialiController:
    name = "kiali"

    def watches(self) -> Iterable[Resource]:
        return (KIALIS,)

    def keys_for(self, res: Resource, event: str, obj: Obj) -> Iterable[Key]:
        return [] if event == "DELETED" else [(ns_of(obj), name_of(obj))]

    def transitions(self, key: Any, store: Store, knobs: Knobs) -> list[Transition]:
        kiali = store.get(KIALIS, key[0], key[1])
        return [] if kiali is None or deleting(kiali) else kiali_transitions(kiali, knobs)
