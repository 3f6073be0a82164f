"""The member roll `default` in <user>-istio, with the user's namespace added to the members
already there (never dropping one). Maistra's CRD does not declare spec.members a set, so a
server-side apply would replace the whole list: this is a read-modify-write (kube.update: the
patch carries the resourceVersion it was computed from; 409 -> read again)."""

from __future__ import annotations

from runner.context import StepContext
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
    what = Target.of(desired).describe()
    seen: list[str] = []  # the members found by the last read (the update may read again)

    def add(live: Obj | None) -> Obj | None:
        seen[:] = [] if live is None else (live.get("spec") or {}).get("members") or []
        if live is None:
            return desired
        if all(m in seen for m in wanted):
            return None
        live.setdefault("spec", {})["members"] = seen + [m for m in wanted if m not in seen]
        return live

    updated = ctx.kube.update(Target.of(desired), add)
    known = None if ctx.dry_run else updated.obj
    if not updated.changed:
        return StepResult.noop(f"{', '.join(wanted)} already in {what}"), known
    if updated.before is None:
        verb = "would create" if ctx.dry_run else "created"
        return StepResult.done(f"{verb} {what} with {', '.join(wanted)}"), known
    missing = [m for m in wanted if m not in seen]
    kept = f"; kept {', '.join(seen)}" if seen else ""
    verb = "would add" if ctx.dry_run else "added"
    return StepResult.done(f"{verb} {', '.join(missing)} to {what}{kept}"), known


def run(ctx: StepContext) -> StepResult:
    desired = ctx.object("member-roll.yaml")
    wanted = list(desired["spec"]["members"])
    added, known = add_members(ctx, desired, wanted)
    target = Target.of(desired)
    if ctx.wait(target, configured(wanted), "members configured", known=known) is None:
        return StepResult(added.changed, f"{added.detail}; dry-run: not waiting")
    return StepResult(added.changed, f"{added.detail}; configured")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: take only this user's namespace out of the roll; other members stay."""
    from runner.teardown import remove_member

    return remove_member(ctx, Target.of(ctx.object("member-roll.yaml")), ctx.user.namespace)
