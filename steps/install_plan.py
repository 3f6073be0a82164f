"""Approve the InstallPlan that lists the pinned CSV. InstallPlans are per namespace (one may
cover several Subscriptions) and OLM writes a new plan's phase in a second step: approving
before RequiresApproval makes OLM resolve again into a duplicate plan, so a plan is approved
only in RequiresApproval. At most one plan is approved: once a plan listing the CSV is
approved and on its way (RequiresApproval, Installing, Complete), a later plan listing the same
CSV (OLM resolving again after a restart) is left alone. The step then waits for Complete, so
a plan that fails while installing is reported here (exit 6 with its reason), not as a CSV that
never appears."""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import WaitTimeout
from runner.result import StepResult
from runner.waits import CollectionPredicate, Obj, Target, Verdict, done, failed, pending
from steps._olm import CSV, INSTALL_PLAN, SUBSCRIPTION_TEMPLATE, failure_reason, phase, pinned_csv
from steps._status import describe_conditions

NAME = "install-plan"
DESCRIPTION = "Approve the InstallPlan listing the pinned CSV (only in RequiresApproval)"
NEEDS = ("sso-operator",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 300.0
TEMPLATES: tuple[str, ...] = ()
CAP = 1800.0
APIS = (INSTALL_PLAN, CSV)


def _approved(plan: Obj) -> bool:
    return (plan.get("spec") or {}).get("approved") is True


# An approved plan in one of these phases is the one OLM installs from.
ON_ITS_WAY = ("RequiresApproval", "Installing", "Complete")


def plan_for(csv: str) -> CollectionPredicate:
    """Done when a plan listing `csv` is Complete, or waits for approval (the step approves
    it) while no other plan listing it is approved and on its way; failed when every plan
    listing it Failed. Newest plan first (duplicates)."""

    def verdict(plans: list[Obj]) -> Verdict:
        mine = [
            p for p in plans if csv in (p.get("spec") or {}).get("clusterServiceVersionNames", [])
        ]
        mine.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), _approved(p)))
        if not mine:
            return pending(f"no InstallPlan lists {csv} yet")
        chosen = [p for p in mine if _approved(p) and phase(p) in ON_ITS_WAY]
        for plan in reversed(chosen or mine):
            name = plan["metadata"]["name"]
            if phase(plan) == "Complete":
                return done(f"InstallPlan {name} is Complete", plan)
            if phase(plan) == "RequiresApproval" and not _approved(plan):
                return done(f"InstallPlan {name} requires approval", plan)
        live = [p for p in mine if phase(p) != "Failed"]
        if not live:
            return failed(
                f"InstallPlan {mine[-1]['metadata']['name']} Failed: {failure_reason(mine[-1])}"
            )
        newest = (chosen or live)[-1]
        approved = ", approved" if _approved(newest) else ""
        return pending(
            f"InstallPlan {newest['metadata']['name']} phase={phase(newest) or '(not written yet)'}"
            f"{approved}"
        )

    return verdict


def run(ctx: StepContext) -> StepResult:
    ns, csv = pinned_csv(ctx)
    try:
        return approve(ctx, ns, csv)
    except WaitTimeout as e:  # why no plan came is in the Subscription (ResolutionFailed ...)
        sub = ctx.object(SUBSCRIPTION_TEMPLATE)
        live = ctx.kube.get(sub["apiVersion"], sub["kind"], sub["metadata"]["name"], ns)
        state = describe_conditions(live) if live else "not found"
        raise WaitTimeout(f"{e}; Subscription {sub['metadata']['name']}: {state}") from None


def approve(ctx: StepContext, ns: str, csv: str) -> StepResult:
    target = Target(*INSTALL_PLAN, ns)
    approved: list[str] = []
    while True:  # every pass waits with the step's deadline
        verdict = ctx.wait_collection(target, plan_for(csv), f"a plan listing {csv}")
        plan = verdict.obj or {}
        if phase(plan) == "Complete":
            did = f"approved InstallPlan {', '.join(approved)}; " if approved else ""
            return StepResult(bool(approved), f"{did}{verdict.summary}")
        name = plan["metadata"]["name"]
        others = [c for c in plan["spec"].get("clusterServiceVersionNames", []) if c != csv]

        def approved_copy(live: Obj | None) -> Obj | None:
            # approve the plan only as observed in RequiresApproval (a 409 reads it again)
            if live is None or phase(live) != "RequiresApproval" or _approved(live):
                return None
            live["spec"]["approved"] = True
            return live

        if ctx.kube.update(Target(*INSTALL_PLAN, ns, name), approved_copy, known=plan).changed:
            ctx.log.info("approved", object=f"InstallPlan {ns}/{name}", also_installs=others)
            approved.append(name + (f" (also installs {', '.join(others)})" if others else ""))


undo = None  # an approval is not undone; the plan goes with the namespace
