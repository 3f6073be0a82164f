"""The per-user CatalogSource, waited on until its registry connection is READY.

First the workshop's NetworkPolicy (network-policy.yaml): once the namespace joins the mesh,
Maistra's own policies admit only mesh members, and OLM's catalog-operator could no longer
reach the registry pod (the CatalogSource goes TRANSIENT_FAILURE). A re-run that finds the
catalog not READY does not wait for it once the pinned CSV has Succeeded: the catalog has
served its purpose."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from runner.waits import Obj, Target, Verdict, done, pending

NAME = "catalog-source"
DESCRIPTION = "Create the user's CatalogSource and wait until it is READY"
NEEDS = ("namespace",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 300.0
APIS: tuple[tuple[str, str], ...] = ()
CAP = 1800.0
TEMPLATES = ("network-policy.yaml", "catalog-source.yaml")
CSV_API = ("operators.coreos.com/v1alpha1", "ClusterServiceVersion")


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
    admitted = [ctx.kube.apply(doc) for doc in ctx.objects("network-policy.yaml")]
    desired = ctx.object("catalog-source.yaml")
    applied = ctx.kube.apply(desired)
    written = [a.detail for a in admitted if a.changed] + [applied.detail]
    changed = applied.changed or len(written) > 1
    detail = "; ".join(written)
    if ready(applied.obj).state == "done":
        return StepResult(changed, f"{detail}; READY")
    installed = _pinned_csv_succeeded(ctx, applied.obj)
    if installed:
        return StepResult(changed, f"{detail}; {installed}")
    so_far = StepResult(changed, detail)
    ctx.wait(Target.of(desired), ready, "READY", known=applied.obj, so_far=so_far)
    return StepResult(changed, f"{detail}; READY")


def _pinned_csv_succeeded(ctx: StepContext, catalog: Obj) -> str:
    """On a re-run (the catalog already has a connection state), why not to wait: the pinned
    CSV has Succeeded in this namespace; "" otherwise (and on a first run, without a read)."""
    state = ((catalog.get("status") or {}).get("connectionState") or {}).get("lastObservedState")
    if not state:
        return ""
    name = str(ctx.params["sso_starting_csv"])
    csv = ctx.kube.get(*CSV_API, name, catalog["metadata"]["namespace"])
    if ((csv or {}).get("status") or {}).get("phase") != "Succeeded":
        return ""
    return f"not READY ({state}), but {name} has Succeeded: not waiting for the catalog"


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the CatalogSource."""
    return ctx.remove("catalog-source.yaml")
