"""The per-user CatalogSource, waited on until its registry connection is READY."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from runner.waits import Obj, Verdict, done, pending

NAME = "catalog-source"
DESCRIPTION = "Create the user's CatalogSource and wait until it is READY"
NEEDS = ("namespace",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 300.0
APIS: tuple[tuple[str, str], ...] = ()
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
    return ctx.apply_and_wait(ctx.object("catalog-source.yaml"), ready, "READY")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the CatalogSource."""
    return ctx.remove("catalog-source.yaml")
