"""Wait for the pinned CSV, by name, to succeed. Never "the first CSV in the namespace": OLM
copies the CSVs of cluster-wide operators (the mesh operators) into every namespace.

A Failed CSV is final only for some reasons. OLM re-evaluates a Failed CSV: for the
OperatorGroup reasons it goes back to Pending only once the groups are fixed (a person must act:
fail at once); for the others (InstallCheckFailed, ComponentUnhealthy, InstallComponentFailed
...) it checks the deployment again and goes to Succeeded once it is healthy - slow image pulls
in a big workshop - so the step keeps waiting and, at its deadline, reports the last failure."""

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
TEMPLATES: tuple[str, ...] = ()
CAP = 3600.0
APIS = (CSV,)


# Failed for these reasons, OLM does not recover on its own (operator-lifecycle-manager,
# pkg/controller/operators/olm/operator.go: the OperatorGroup checks before the phase switch, and
# the install error it marks unrecoverable).
FINAL_REASONS = frozenset(
    {
        "NoOperatorGroup",
        "TooManyOperatorGroups",
        "UnsupportedOperatorGroup",
        "NoTargetNamespaces",
        "InterOperatorGroupOwnerConflict",
        "InstallComponentFailedNoRetry",
    }
)


def succeeded(name: str) -> Predicate:
    last_failure = ""

    def verdict(obj: Obj | None) -> Verdict:
        nonlocal last_failure
        if obj is None:
            return pending(f"CSV {name} not created yet")
        if phase(obj) == "Succeeded":
            return done("Succeeded")
        reason = (obj.get("status") or {}).get("reason")
        if phase(obj) == "Failed":
            if reason in FINAL_REASONS:
                return failed(f"CSV {name} Failed: {failure_reason(obj)}")
            last_failure = failure_reason(obj)
            return pending(f"phase=Failed ({last_failure}); OLM retries this reason")
        state = f"phase={phase(obj) or '(none)'}" + (f" ({reason})" if reason else "")
        return pending(state + (f"; last failure {last_failure}" if last_failure else ""))

    return verdict


def run(ctx: StepContext) -> StepResult:
    ns, name = pinned_csv(ctx)
    target = Target(*CSV, ns, name)
    ctx.wait(target, succeeded(name), f"{target.describe()} Succeeded")
    return StepResult.noop(f"{target.describe()} Succeeded")


undo = None  # it only waits; sso-operator's undo deletes the CSV
