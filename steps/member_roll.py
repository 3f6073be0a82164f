"""The member roll `default` in <user>-istio, with the user's namespace added to the members
already there (never dropping one). Maistra's CRD does not declare spec.members a set, so a
server-side apply would replace the whole list: this is a read-modify-write whose patch carries
the resourceVersion it was computed from (409 -> read again)."""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import Conflict, WaitTimeout
from runner.result import StepResult
from runner.waits import Obj, Predicate, Target, Verdict, done, pending
from steps._status import describe_conditions, generation_observed, is_true, status_of

NAME = "member-roll"
DESCRIPTION = "Add the user's namespace to the ServiceMeshMemberRoll and wait until configured"
NEEDS = ("smcp",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 300.0
CAP = 3600.0
TEMPLATES = ("member-roll.yaml",)
ATTEMPTS = 5


def configured(members: list[str]) -> Predicate:
    def verdict(obj: Obj | None) -> Verdict:
        if obj is None:
            return pending("ServiceMeshMemberRoll not found")
        current, why = generation_observed(obj, required=False)
        have = list(status_of(obj).get("configuredMembers") or [])
        if current and is_true(obj, "Ready") and all(m in have for m in members):
            return done(f"configured {', '.join(members)}")
        parts = [why, f"configuredMembers=[{', '.join(have)}]", describe_conditions(obj, "Ready")]
        return pending("; ".join(p for p in parts if p))

    return verdict


def add_members(ctx: StepContext, desired: Obj, wanted: list[str]) -> tuple[StepResult, Obj | None]:
    """Create the roll or merge `wanted` into it; also returns the roll as last written or
    read (None in dry-run), for the wait to start from."""
    api, kind, meta = desired["apiVersion"], desired["kind"], desired["metadata"]
    what = f"{kind} {meta['namespace']}/{meta['name']}"
    # In a namespace this run created the roll cannot be there yet: create without reading
    # first (if someone was quicker, the create's 409 sends the next pass to read and merge).
    skip_read = ctx.kube.fresh(meta["namespace"])
    for _ in range(ATTEMPTS):
        live = None if skip_read else ctx.kube.get(api, kind, meta["name"], meta["namespace"])
        skip_read = False
        if live is None:
            if ctx.dry_run:
                return StepResult.done(f"would create {what} with {', '.join(wanted)}"), None
            created = ctx.kube.create(desired)
            if created is not None:
                return StepResult.done(f"created {what} with {', '.join(wanted)}"), created
            continue  # someone else created it meanwhile: merge into theirs
        members = list((live.get("spec") or {}).get("members") or [])
        missing = [m for m in wanted if m not in members]
        if not missing:
            return StepResult.noop(f"{', '.join(wanted)} already in {what}"), live
        patch = {
            "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
            "spec": {"members": members + missing},
        }
        try:
            patched = ctx.kube.merge_patch(api, kind, meta["name"], meta["namespace"], patch)
        except Conflict:
            continue
        kept = f"; kept {', '.join(members)}" if members else ""
        if ctx.dry_run:
            return StepResult.done(f"would add {', '.join(missing)} to {what}{kept}"), None
        return StepResult.done(f"added {', '.join(missing)} to {what}{kept}"), patched
    raise WaitTimeout(f"update {what}: still conflicting after {ATTEMPTS} attempts")


def run(ctx: StepContext) -> StepResult:
    desired = ctx.object("member-roll.yaml")
    wanted = list(desired["spec"]["members"])
    added, known = add_members(ctx, desired, wanted)
    meta = desired["metadata"]
    target = Target(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
    if ctx.wait(target, configured(wanted), "members configured", known=known) is None:
        return StepResult(added.changed, f"{added.detail}; dry-run: not waiting")
    return StepResult(added.changed, f"{added.detail}; configured")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: take only this user's namespace out of the roll; other members stay."""
    from runner.teardown import remove_member

    doc = ctx.object("member-roll.yaml")
    meta = doc["metadata"]
    roll = Target(doc["apiVersion"], doc["kind"], meta["namespace"], meta["name"])
    return remove_member(ctx, roll, ctx.user.namespace)
