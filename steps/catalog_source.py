"""The per-user CatalogSource, waited on until its registry connection is READY."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from runner.waits import Obj, Target, Verdict, done, pending

NAME = "catalog-source"
DESCRIPTION = "Create the user's CatalogSource and wait until it is READY"
NEEDS = ("namespace",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 300.0
CAP = 1800.0
TEMPLATES = ("catalog-source.yaml",)


def ready(obj: Obj | None) -> Verdict:
    """Done when status.connectionState.lastObservedState is READY (OLM's grpc health)."""
    if obj is None:
        return pending("CatalogSource not found")
    state = (obj.get("status") or {}).get("connectionState") or {}
    observed = state.get("lastObservedState")
    if observed == "READY":
        return done("READY")
    return pending(f"connectionState.lastObservedState={observed or '(none)'}")


def run(ctx: StepContext) -> StepResult:
    desired = ctx.object("catalog-source.yaml")
    applied = ctx.kube.apply(desired)
    meta = desired["metadata"]
    target = Target(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
    if ready(applied.obj).state == "done":
        return StepResult(applied.changed, f"{applied.detail}; READY")
    if ctx.wait(target, ready, "READY", known=applied.obj) is None:
        return StepResult(applied.changed, f"{applied.detail}; dry-run: not waiting for READY")
    return StepResult(applied.changed, f"{applied.detail}; READY")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the CatalogSource."""
    from runner.teardown import remove

    return remove(ctx, "catalog-source.yaml")
