"""The user's ServiceMeshControlPlane. Right after the mesh operator installs, its admission
webhook refuses SMCP writes for a while (500, no endpoints): the kube layer retries those like
any 5xx, with backoff, within this step's deadline. Done when Ready is True for the current
spec (observedGeneration == generation: a Ready from the previous generation is stale)."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from runner.waits import Obj, Verdict, done, pending
from steps._status import condition, describe_conditions, generation_observed, is_true, status_of

NAME = "smcp"
DESCRIPTION = "Create the ServiceMeshControlPlane in <user>-istio and wait until it is Ready"
NEEDS = ("limit-ranges",)
TIMEOUT = 600.0
TEMPLATES = ("smcp.yaml",)


def ready(obj: Obj | None) -> Verdict:
    if obj is None:
        return pending("ServiceMeshControlPlane not found")
    current, why = generation_observed(obj, required=True)
    if current and is_true(obj, "Ready"):
        return done(f"Ready ({condition(obj, 'Ready').get('reason', '')})")
    count = (status_of(obj).get("annotations") or {}).get("readyComponentCount")
    parts = [why, f"components ready {count}" if count else "", describe_conditions(obj)]
    return pending("; ".join(p for p in parts if p))


def run(ctx: StepContext) -> StepResult:
    return ctx.apply_and_wait(ctx.object("smcp.yaml"), ready, "Ready")
