"""Simulated Kiali operator (an Ansible-based operator) for kiali.io/v1alpha1 Kiali CRs.

kiali-operator v1.65 runs on operator-sdk's ansible-operator (v1.25), which manages the status
conditions. For every new metadata.generation a reconciliation is two writes (in a work queue,
the first when a worker takes the CR, the second when the playbook's run is over; a change made
during a run is reconciled by the next run):
- start ("markRunning"): Running=True reason Running "Running reconciliation"; an existing
  Failure or Successful condition only has its status set to False (reason, message and
  ansibleResult stay);
- end, success ("markDone"): Running=True reason Successful "Awaiting next reconciliation"
  with ansibleResult, Successful=True "Last reconciliation succeeded", Failure=False with empty
  reason and message (written even when there was none);
- end, failure (by knob): Running's status set to False (reason Running and message "Running
  reconciliation" stay), Failure=True reason Failed with the failed task's message and
  ansibleResult, Successful=False with empty reason and message. ansible-operator then
  requeues with exponential backoff and runs again (start, end) until a run succeeds.
A condition whose status and reason do not change is not rewritten; a changed one moves to the
end of the list, keeping its lastTransitionTime when only the reason changed.
Like the real operator it does NOT write status.observedGeneration (knob
`kiali_observed_generation: true` adds it); to know a change was reconciled, compare the
last run's ansibleResult with the one the object had when the change was written. The generation
a run ended for, and the failed runs in a row, are kept in the annotations below.
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
    spec,
    status,
)

RECONCILED = "devcluster.sim/reconciled-generation"
RUNNING = "devcluster.sim/running-generation"  # the generation the current run read
FAILED_RUNS = "devcluster.sim/failed-runs"
OPERATOR_VERSION = "v1.65.11"
RUNNING_MESSAGE = "Running reconciliation"
MAX_BACKOFF_DOUBLINGS = 6  # retries of a failing run wait at most 64x the knob delay


def ansible_set_condition(conds: list[Obj], new: Obj, now: str) -> list[Obj]:
    """ansible-operator's SetCondition: unchanged status and reason -> no change at all;
    otherwise the condition moves to the end, keeping lastTransitionTime if the status is
    the same."""
    current = next((c for c in conds if c.get("type") == new["type"]), None)
    if current is not None and (current.get("status"), current.get("reason")) == (
        new.get("status"),
        new.get("reason"),
    ):
        return conds
    stamp = new.get("lastTransitionTime") or now
    if current is not None and current.get("status") == new.get("status"):
        stamp = current.get("lastTransitionTime", stamp)
    rest = [c for c in conds if c.get("type") != new["type"]]
    return [*rest, {**new, "lastTransitionTime": stamp}]


def _set_status(conds: list[Obj], ctype: str, value: str) -> list[Obj]:
    """Flip only the status of an existing condition (its lastTransitionTime stays)."""
    current = next((c for c in conds if c.get("type") == ctype), None)
    if current is None:
        return conds
    return ansible_set_condition(conds, {**current, "status": value}, "")


def mark_running(conds: list[Obj], now: str) -> list[Obj]:
    conds = _set_status(conds, "Failure", "False")
    conds = _set_status(conds, "Successful", "False")
    running = {"type": "Running", "status": "True", "reason": "Running"}
    return ansible_set_condition(conds, {**running, "message": RUNNING_MESSAGE}, now)


def mark_done(conds: list[Obj], result: Obj, failure: str | None, now: str) -> list[Obj]:
    if failure is None:
        for new in (
            {"type": "Running", "status": "True", "reason": "Successful",
             "message": "Awaiting next reconciliation", "ansibleResult": result},
            {"type": "Successful", "status": "True", "reason": "Successful",
             "message": "Last reconciliation succeeded"},
            {"type": "Failure", "status": "False", "reason": "", "message": ""},
        ):  # fmt: skip
            conds = ansible_set_condition(conds, new, now)
        return conds
    conds = _set_status(conds, "Running", "False")
    for new in (
        {"type": "Failure", "status": "True", "reason": "Failed", "message": failure,
         "ansibleResult": result},
        {"type": "Successful", "status": "False", "reason": "", "message": ""},
    ):  # fmt: skip
        conds = ansible_set_condition(conds, new, now)
    return conds


def kiali_transitions(kiali: Obj, knobs: Knobs, now: str | None = None) -> list[Transition]:
    now = now or now_iso()
    ns, name, gen = ns_of(kiali), name_of(kiali), generation(kiali)
    notes = annotations_of(kiali)
    failed_runs = int(notes.get(FAILED_RUNS) or 0)
    st = status(kiali)
    conds = list(st.get("conditions") or [])
    running = condition(st, "Running") or {}
    in_run = running.get("status") == "True" and running.get("reason") == "Running"

    # A run applies the spec it read when it started: a change made during the run is the
    # next run's (ansible-operator's queue holds the key again once the run is over).
    run_gen = int(notes.get(RUNNING) or gen) if in_run else gen

    def t(step: str, *acts: Action, scale: float = 1.0, first: bool = False) -> list[Transition]:
        tid = f"{ns}/{name}:{step}:{run_gen}:{failed_runs}"
        return [Transition(tid, "Kiali", ns, name, step, acts, scale=scale, at_start=first)]

    if not in_run:
        if int(notes.get(RECONCILED) or 0) == gen and not failed_runs:
            return []
        # A new generation, or a retry after a failed run (exponential backoff).
        scale = float(2 ** min(failed_runs, MAX_BACKOFF_DOUBLINGS)) if failed_runs else 1.0
        start = {"conditions": mark_running(conds, now)}
        step = "retry" if failed_runs else "running"
        note = {"metadata": {"annotations": {RUNNING: str(gen)}}}
        acts = (Action("patch", KIALIS, ns, name, note), Action("status", KIALIS, ns, name, start))
        return t(step, *acts, scale=scale, first=True)
    failure = knobs.failure("Kiali", ns, name)
    completion = _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat()
    result = {
        "changed": 1,
        "completion": completion,
        "failures": 1 if failure else 0,
        "ok": 42,
        "skipped": 17,
    }
    conds = mark_done(conds, result, failure.message if failure else None, now)
    # Kiali's playbook reports its progress; a failed run stops at the step that failed.
    if failure:
        progress = {"message": "2. Setting up configuration", "duration": "0:00:03"}
    else:
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
        body["observedGeneration"] = run_gen
    runs = str(failed_runs + 1) if failure else None
    mark = Action(
        "patch",
        KIALIS,
        ns,
        name,
        {"metadata": {"annotations": {RECONCILED: str(run_gen), FAILED_RUNS: runs}}},
    )
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
