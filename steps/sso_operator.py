"""RH-SSO operator: one OperatorGroup for the namespace, and the Manual Subscription pinned to
its startingCSV. OLM allows exactly one OperatorGroup per namespace (a second one fails every
CSV there with TooManyOperatorGroups), so an existing group that targets the namespace is
reused and never doubled."""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import OperatorFailed
from runner.result import StepResult
from runner.waits import Obj
from steps._olm import CSV, pinned_csv

NAME = "sso-operator"
DESCRIPTION = "OperatorGroup (one per namespace) and the RH-SSO Subscription (Manual, pinned CSV)"
NEEDS = ("catalog-source",)
TIMEOUT = 60.0
CAP = None
APIS: tuple[tuple[str, str], ...] = ()
TEMPLATES = ("operator-group.yaml", "subscription.yaml")
MANAGED = ("app.kubernetes.io/managed-by", "workshop-runner")


def targets(group: Obj) -> list[str] | None:
    """The namespaces a group targets: OLM's status.namespaces once written, else the spec
    ([""] = all namespaces); None for a label selector OLM has not resolved yet."""
    status, spec = group.get("status") or {}, group.get("spec") or {}
    if "namespaces" in status:
        return list(status.get("namespaces") or [])
    if spec.get("targetNamespaces"):
        return list(spec["targetNamespaces"])
    return None if spec.get("selector") else [""]


def ensure_operator_group(ctx: StepContext) -> StepResult:
    desired = ctx.object("operator-group.yaml")
    ns, ours = desired["metadata"]["namespace"], desired["metadata"]["name"]
    groups, _ = ctx.kube.list_items(desired["apiVersion"], desired["kind"], ns)
    names = sorted(g["metadata"]["name"] for g in groups)
    if len(groups) > 1:
        raise OperatorFailed(
            f"OperatorGroups in {ns}: {', '.join(names)}; OLM allows one per namespace "
            "(its CSVs would fail with TooManyOperatorGroups): remove all but one"
        )
    if not groups or names == [ours]:
        applied = ctx.kube.apply(desired)
        return StepResult(applied.changed, applied.detail)
    found = targets(groups[0])
    if found != [ns]:
        raise OperatorFailed(
            f"OperatorGroup {ns}/{names[0]} targets {found if found is not None else 'a selector'}"
            f", not {ns} (the RH-SSO CSV would fail with UnsupportedOperatorGroup); it is the "
            "namespace's only allowed group: make it target the namespace or remove it"
        )
    return StepResult.noop(f"reusing OperatorGroup {ns}/{names[0]} (it targets {ns})")


def run(ctx: StepContext) -> StepResult:
    pinned_csv(ctx)  # a Subscription that is not Manual and pinned fails before any write
    group = ensure_operator_group(ctx)
    sub = ctx.kube.apply(ctx.object("subscription.yaml"))
    return StepResult(group.changed or sub.changed, f"{group.detail}; {sub.detail}")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: the Subscription, then the pinned CSV by name (OLM leaves it behind), then
    the OperatorGroup only if the runner made it (a reused one stays)."""
    results = [ctx.remove("subscription.yaml")]
    ns, csv = pinned_csv(ctx)
    if ctx.kube.delete(*CSV, csv, ns):
        results.append(StepResult.done(f"deleted ClusterServiceVersion {ns}/{csv}"))
    group = ctx.object("operator-group.yaml")
    live = ctx.kube.get(group["apiVersion"], group["kind"], group["metadata"]["name"], ns)
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED[0]) == MANAGED[1]:
        results.append(ctx.remove("operator-group.yaml"))
    changed = [r.detail for r in results if r.changed]
    return StepResult.done("; ".join(changed)) if changed else results[0]
