"""The member roll `default` in <user>-istio, with the user's namespace added to the members
already there (never dropping one). Maistra's CRD does not declare spec.members a set, so a
server-side apply would replace the whole list: this is a read-modify-write (kube.update: the
patch carries the resourceVersion it was computed from; 409 -> read again).

Maistra's admission webhook lets a namespace into a roll only if the requester may `update
pods` there (a SubjectAccessReview). Where this identity may not (a plain Namespace it made),
the step first binds ClusterRole workshop-runner-mesh-member to itself in that namespace
(mesh-member-rbac.yaml; only namespaces of this user), then writes the roll; a refusal in the
moments after that binding is retried while RBAC's caches catch up."""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import Forbidden
from runner.result import StepResult
from runner.waits import Obj, Predicate, Target, Verdict, done, pending
from steps._status import describe_conditions, generation_observed, is_true, status_of

NAME = "member-roll"
DESCRIPTION = "Add the user's namespace to the ServiceMeshMemberRoll and wait until configured"
NEEDS = ("smcp",)
# TIMEOUT: stall window; CAP: hard cap while progress shows (README.md, "Deadlines").
TIMEOUT = 300.0
APIS: tuple[tuple[str, str], ...] = ()
CAP = 3600.0
TEMPLATES = ("member-roll.yaml", "mesh-member-rbac.yaml")
ACCESS_TEMPLATE = "mesh-member-rbac.yaml"
# The webhook's 403 (maistra webhooks/validation/memberroll.go)
REFUSED = "does not have permission to access namespace"
RBAC_SETTLE_SECONDS = 20.0


def refused_by_webhook(error: Forbidden) -> bool:
    return REFUSED in str(error)


def rbac_subject(username: str) -> Obj:
    """The RBAC subject for an authenticated user name (ServiceAccounts by their own kind)."""
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return {"kind": "ServiceAccount", "name": parts[3], "namespace": parts[2]}
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": username}


def grant_member_access(ctx: StepContext, members: list[str]) -> list[str]:
    """Bind the mesh-member role to this identity in each templated namespace among `members`
    where it may not update pods yet; the namespaces whose binding was written."""
    granted: list[str] = []
    for binding in ctx.objects(ACCESS_TEMPLATE):
        ns = binding["metadata"]["namespace"]
        if ns not in members or ctx.kube.may("update", "pods", ns):
            continue
        binding["subjects"] = [rbac_subject(ctx.kube.username())]
        if ctx.kube.apply(binding).changed:
            granted.append(ns)
    return granted


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
    read, for the wait to start from."""
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
    known = updated.obj
    if not updated.changed:
        return StepResult.noop(f"{', '.join(wanted)} already in {what}"), known
    if updated.before is None:
        return StepResult.done(ctx.did("create", f"{what} with {', '.join(wanted)}")), known
    missing = [m for m in wanted if m not in seen]
    kept = f"; kept {', '.join(seen)}" if seen else ""
    return StepResult.done(ctx.did("add", f"{', '.join(missing)} to {what}{kept}")), known


def run(ctx: StepContext) -> StepResult:
    desired = ctx.object("member-roll.yaml")
    wanted = list(desired["spec"]["members"])
    target = Target.of(desired)
    granted = grant_member_access(ctx, wanted)
    members = f"workshop-runner-mesh-member in {', '.join(granted)}"
    bound = f"{ctx.did('bind', members)}; " if granted else ""
    try:
        added, known = ctx.retry_forbidden(
            lambda: add_members(ctx, desired, wanted),
            refused_by_webhook,
            RBAC_SETTLE_SECONDS if granted else 0.0,
            so_far=StepResult(bool(granted), bound.removesuffix("; ")),
        )
    except Forbidden as e:
        if not refused_by_webhook(e):
            raise
        raise Forbidden(
            f"{e} (the runner binds ClusterRole workshop-runner-mesh-member to itself in the "
            "user's namespaces for this review: is that ClusterRole deployed, see "
            "manifests/deploy?)"
        ) from None
    changed = added.changed or bool(granted)
    so_far = StepResult(changed, f"{bound}{added.detail}")
    ctx.wait(target, configured(wanted), "members configured", known=known, so_far=so_far)
    return StepResult(changed, f"{bound}{added.detail}; configured")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: take only this user's namespace out of the roll; other members stay."""
    removed = ctx.remove_member(Target.of(ctx.object("member-roll.yaml")), ctx.user.namespace)
    unbound = ctx.remove(ACCESS_TEMPLATE)
    return StepResult(removed.changed or unbound.changed, f"{removed.detail}; {unbound.detail}")
