"""Kiali shows DeploymentConfig workloads: the SMCP creates the Kiali CR `kiali`; this step sets
spec.kubernetes_config.excluded_workloads (a parameter list without DeploymentConfig) on it -
the operator-supported way, which the operator does not undo - and waits until the Kiali
operator reconciled that change without failure. spec.deployment.accessible_namespaces is the
member-roll controller's and never touched (a merge patch names only our field)."""

from __future__ import annotations

from typing import Any

from runner.context import StepContext
from runner.errors import TemplateError
from runner.result import StepResult
from runner.waits import Obj, Predicate, Target, Verdict, done, failed, pending
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


def last_run(obj: Obj) -> Any:
    """The record ansible-operator wrote at the end of the last run (its ansibleResult: counts
    and completion; Running's after a success, Failure's after a failure), None before any."""
    state = run_state(obj)
    if state == "successful":
        return condition(obj, "Running").get("ansibleResult")
    if state == "failed":
        return condition(obj, "Failure").get("ansibleResult")
    return None


def went_on_before(before: Obj | None, written: Obj | None) -> bool:
    """Whether the run going at our write had started before it: the object we read before
    the patch already showed that same run (the same Running condition). A run that shows
    only in the patch's answer may have started after a first attempt whose answer was lost,
    and so have read our change: it is not one of these."""
    if before is None or written is None:
        return False
    if run_state(before) != "running" or run_state(written) != "running":
        return False
    return condition(before, "Running") == condition(written, "Running")


def reconciled(
    written: Obj | None, current: Obj | None, ended: Any = None, *, before: Obj | None = None
) -> Verdict:
    """Whether the Kiali operator reconciled `written` - the object as our patch left it (the
    patch's answer), None when we changed nothing - as `current` shows. `before` is the
    object as read before the patch; `ended` is the end record of the run that was going at
    the write, once a wait has seen it end (None before). A pure function of its arguments:
    no clock.

    With no change of ours the last run must have succeeded. After our change a run counts
    when it started after the write. With no run going at the write, that is any run that
    ended since: its end record differs from the one `written` carries (ansible-operator's
    markRunning reads the latest object and writes Running with that object's
    resourceVersion, so a run that started after our write ran with our change; one whose
    read came before it loses its write with a 409 and is requeued). With a run going at the
    write, that run read the object before our change: its end does not count, and the run
    after it does - the operator's work queue holds a key changed during its reconcile and
    runs it once more when that reconcile is done (client-go workqueue, under
    controller-runtime). An operator that writes observedGeneration is followed by it. A
    failed run that counts ends the wait at once with the operator's message
    (ansible-operator retries it with backoff)."""
    if current is None:
        return pending("Kiali CR not found")
    state = run_state(current)
    conditions = describe_conditions(current, "Running", "Successful", "Failure")
    observed = status_of(current).get("observedGeneration")
    generation = (written or {}).get("metadata", {}).get("generation")
    end = last_run(current)
    if written is None:
        ours = True
    elif observed is not None and generation is not None:
        ours = observed >= generation
    elif went_on_before(before, written):
        ours = ended is not None and end not in (None, ended)
    else:
        ours = state != "running" and end != last_run(written)
    if not ours or state == "running":
        return pending(f"waiting for a reconciliation after the change; {conditions}")
    if state == "failed":
        message = condition(current, "Failure").get("message") or conditions
        return failed(f"reconciliation failed: {message}")
    if state == "successful":
        return done("reconciled")
    return pending(conditions)


def reconciliation_of(written: Obj | None, before: Obj | None = None) -> Predicate:
    """The wait's predicate: `reconciled` with the object as written (and as read before),
    folded over what the wait sees - it keeps the end record of the run that was going at
    the write, once that run has ended."""
    ended: Any = None
    busy = went_on_before(before, written)

    def predicate(current: Obj | None) -> Verdict:
        nonlocal ended
        if busy and ended is None and current is not None and run_state(current) != "running":
            ended = last_run(current)
        return reconciled(written, current, ended, before=before)

    return predicate


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
        ctx.wait(
            target,
            reconciliation_of(None),
            "reconciled without failure",
            known=live,
            so_far=already,
        )
        return already
    patch = {"spec": {"kubernetes_config": {"excluded_workloads": wanted}}}
    patched = ctx.kube.merge_patch(*KIALI, target.name or "", target.namespace, patch)
    detail = ctx.did("set", f"excluded_workloads of {what} to {', '.join(wanted)}")
    so_far = StepResult.done(detail)
    predicate = reconciliation_of(patched, live)
    ctx.wait(target, predicate, "reconciled after the change", known=patched, so_far=so_far)
    return StepResult.done(f"{detail}; reconciled")


undo = None  # the Kiali CR is the SMCP's: it goes with the SMCP
