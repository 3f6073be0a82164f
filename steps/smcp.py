"""The user's ServiceMeshControlPlane. Right after the mesh operator installs, its admission
webhook refuses SMCP writes for a while (500, no endpoints): the kube layer retries those like
any 5xx, with backoff, within this step's deadline. Done when Ready is True for the current
spec (observedGeneration == generation: a Ready from the previous generation is stale).

The same webhook accepts only the control plane versions its operator release supports (OSSM
2.4: v2.1-v2.4; 2.5: v2.2-v2.5) and answers 400 otherwise: that is the smcp_version parameter,
reported as such (exit 3), not retried."""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import ApiError, TemplateError
from runner.result import StepResult
from runner.waits import Obj, Target, Verdict, done, pending
from steps._status import condition, describe_conditions, generation_observed, is_true, status_of

NAME = "smcp"
DESCRIPTION = "Create the ServiceMeshControlPlane in <user>-istio and wait until it is Ready"
NEEDS = ("limit-ranges",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 1200.0
APIS: tuple[tuple[str, str], ...] = ()
CAP = 7200.0
TEMPLATES = ("smcp.yaml",)
# Maistra's SMCP validator (webhooks/validation/controlplane.go) on spec.version
VERSION_REFUSED = ("versions are supported", "invalid Version specified")


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
    desired = ctx.object("smcp.yaml")
    try:
        return ctx.apply_and_wait(desired, ready, "Ready")
    except ApiError as e:
        if e.status != 400 or not any(m in str(e) for m in VERSION_REFUSED):
            raise
        version = (desired.get("spec") or {}).get("version")
        raise TemplateError(
            f"smcp_version {version!r} is refused by the cluster's Service Mesh operator: {e}; "
            "set smcp_version to a version it supports (--params)"
        ) from None


def gone(objects: list[Obj]) -> Verdict:
    if not objects:
        return done("deleted")
    finalizers = objects[0].get("metadata", {}).get("finalizers") or []
    return pending(f"deleting; finalizers {', '.join(finalizers) or '(none)'}")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the SMCP and wait until the operator's finalizer let it go (its
    components and the Kiali CR go with it), so the namespace is not left half-deleted."""
    result = ctx.remove("smcp.yaml")
    if result.changed:
        ctx.wait_collection(Target.of(ctx.object("smcp.yaml")), gone, "deleted")
    return result
