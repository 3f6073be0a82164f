"""Kiali shows DeploymentConfig workloads: the SMCP creates the Kiali CR `kiali`; this step sets
spec.kubernetes_config.excluded_workloads (a parameter list without DeploymentConfig) on it -
the operator-supported way, which the operator does not undo - and waits until the Kiali
operator reconciled that change without failure. spec.deployment.accessible_namespaces is the
member-roll controller's and never touched (a merge patch names only our field)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runner.context import StepContext
from runner.errors import TemplateError
from runner.kube import FIELD_MANAGER
from runner.result import StepResult
from runner.waits import Obj, Target, Verdict, done, failed, pending
from steps._status import condition, describe_conditions, is_true, status_of

NAME = "kiali"
DESCRIPTION = "Let Kiali show DeploymentConfigs (excluded_workloads) and wait for its reconcile"
NEEDS = ("member-roll",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 600.0
TEMPLATES: tuple[str, ...] = ()
CAP = 3600.0
KIALI = ("kiali.io/v1alpha1", "Kiali")
APIS = (KIALI,)
_UNSEEN = "<unseen>"


def exists(obj: Obj | None) -> Verdict:
    return done("exists") if obj is not None else pending("not created by the SMCP yet")


def run_state(obj: Obj) -> str:
    """ansible-operator's conditions as one word. A run in progress: Running=True reason
    Running. A failed run: Failure=True - Running then stays with reason Running but status
    False, so the reason alone does not tell a run from a failure. A successful run:
    Successful=True (older operators: only Running=True reason Successful). During the retry
    after a failure, Failure is False again and Running True."""
    running = condition(obj, "Running")
    if running.get("status") == "True" and running.get("reason") == "Running":
        return "running"
    if is_true(obj, "Failure"):
        return "failed"
    if is_true(obj, "Successful") or (
        running.get("status") == "True" and running.get("reason") == "Successful"
    ):
        return "successful"
    return ""


class Reconciled:
    """Done when a reconciliation after our change (generation `generation`, written at
    `since`) ended Successful; failed as soon as one ended Failed (ansible-operator retries a
    failed run with backoff, but the failure is reported now with the operator's message,
    not after the deadline). The Kiali operator writes no observedGeneration - used when
    present - so a run counts as ours when this wait saw it start, or when its
    ansibleResult.completion is not before our change. The latter also accepts a run that
    was already going when we patched (ansible-operator then runs once more for the change):
    waiting for a second run that an operator may coalesce into the first would hang until
    the deadline, which is worse than ending at the end of a run that may not have seen the
    change. `since`: when the change was made. With no change of ours, the last run must have
    succeeded."""

    def __init__(self, generation: int | None = None, since: dt.datetime | None = None) -> None:
        self.generation, self.since = generation, since
        self.ours = generation is None
        self.last_state: Any = _UNSEEN

    def __call__(self, obj: Obj | None) -> Verdict:
        if obj is None:
            return pending("Kiali CR not found")
        state = run_state(obj)
        observed = status_of(obj).get("observedGeneration")
        if not self.ours and self.generation is not None:
            if observed is not None:
                self.ours = observed >= self.generation
            else:
                started = self.last_state not in (_UNSEEN, "running") and state == "running"
                self.ours = started or _completed_after(obj, self.since)
        self.last_state = state
        conditions = describe_conditions(obj, "Running", "Successful", "Failure")
        if not self.ours or state == "running":
            return pending(f"waiting for a reconciliation after the change; {conditions}")
        if state == "failed":
            message = condition(obj, "Failure").get("message") or conditions
            return failed(f"reconciliation failed: {message}")
        if state == "successful":
            return done("reconciled")
        return pending(conditions)


def _completed_after(obj: Obj, since: dt.datetime | None) -> bool:
    result = condition(obj, "Running").get("ansibleResult") or condition(obj, "Failure").get(
        "ansibleResult"
    )
    stamp = _time((result or {}).get("completion"))
    return since is not None and stamp is not None and stamp >= since


def changed_at(obj: Obj) -> dt.datetime | None:
    """When the runner last wrote the object (its managedFields entry)."""
    times = [
        _time(m.get("time"))
        for m in obj.get("metadata", {}).get("managedFields") or []
        if m.get("manager") == FIELD_MANAGER
    ]
    return max((t for t in times if t is not None), default=None)


def _time(text: Any) -> dt.datetime | None:
    # ansible-operator writes completion without a zone (UTC), the apiserver with "Z".
    try:
        stamp = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def run(ctx: StepContext) -> StepResult:
    wanted = list(ctx.params["kiali_excluded_workloads"])
    if "DeploymentConfig" in wanted:
        raise TemplateError("kiali_excluded_workloads must not contain DeploymentConfig")
    target = Target(*KIALI, ctx.user.istio_namespace, str(ctx.params["kiali_name"]))
    what = target.describe()
    live = ctx.wait(target, exists, "created by the SMCP")
    spec = live.get("spec") or {}
    if (spec.get("kubernetes_config") or {}).get("excluded_workloads") == wanted:
        already = StepResult.noop(f"{what} already excludes only {', '.join(wanted)}")
        ctx.wait(target, Reconciled(), "reconciled without failure", known=live, so_far=already)
        return already
    patch = {"spec": {"kubernetes_config": {"excluded_workloads": wanted}}}
    sent = dt.datetime.now(dt.UTC)
    patched = ctx.kube.merge_patch(*KIALI, target.name or "", target.namespace, patch)
    detail = ctx.did("set", f"excluded_workloads of {what} to {', '.join(wanted)}")
    # The apiserver's time of the change (to the second) or our clock when we sent it,
    # whichever is later: a run that ended earlier within that second is not ours.
    since = max(t for t in (changed_at(patched), sent) if t is not None)
    predicate = Reconciled(patched["metadata"].get("generation"), since)
    so_far = StepResult.done(detail)
    ctx.wait(target, predicate, "reconciled after the change", known=patched, so_far=so_far)
    return StepResult.done(f"{detail}; reconciled")


undo = None  # the Kiali CR is the SMCP's: it goes with the SMCP
