"""Wait for the pinned CSV, by name, to succeed. Never "the first CSV in the namespace": OLM
copies the CSVs of cluster-wide operators (the mesh operators) into every namespace."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from runner.waits import Obj, Predicate, Target, Verdict, done, failed, pending
from steps._olm import CSV, failure_reason, phase, pinned_csv

NAME = "csv"
DESCRIPTION = "Wait for the pinned RH-SSO CSV (by name) to reach Succeeded"
NEEDS = ("install-plan",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 600.0
CAP = 3600.0
APIS = (CSV,)


def succeeded(name: str) -> Predicate:
    def verdict(obj: Obj | None) -> Verdict:
        if obj is None:
            return pending(f"CSV {name} not created yet")
        if phase(obj) == "Succeeded":
            return done("Succeeded")
        if phase(obj) == "Failed":
            return failed(f"CSV {name} Failed: {failure_reason(obj)}")
        reason = (obj.get("status") or {}).get("reason")
        return pending(f"phase={phase(obj) or '(none)'}" + (f" ({reason})" if reason else ""))

    return verdict


def run(ctx: StepContext) -> StepResult:
    ns, name = pinned_csv(ctx)
    if ctx.wait(Target(*CSV, ns, name), succeeded(name), "Succeeded") is None:
        return StepResult.noop(f"dry-run: not waiting for ClusterServiceVersion {ns}/{name}")
    return StepResult.noop(f"ClusterServiceVersion {ns}/{name} Succeeded")
