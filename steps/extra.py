"""Any further templates - those no other step names - applied last, in dependency order
(namespaces, then RBAC, then the rest), so a workshop adds resources (a ConfigMap, a Role for
its lab) with a template and no code. None are shipped."""

from __future__ import annotations

from runner.context import OTHER_TEMPLATES, StepContext, expand_templates
from runner.result import StepResult
from runner.templates import apply_order
from runner.waits import Obj, Target

NAME = "extra"
DESCRIPTION = "Apply any further templates (no other step names them), namespaces and RBAC first"
NEEDS = ("rbac", "csv", "kiali")  # the end of every chain: extra objects may use any of it
TEMPLATES = (OTHER_TEMPLATES,)  # so preflight resolves their APIs before anything is written
TIMEOUT = 120.0
CAP = None
APIS: tuple[tuple[str, str], ...] = ()


def objects(ctx: StepContext) -> list[Obj]:
    """The further templates' documents, in file then document order, stably sorted into the
    apply order (namespaces, then RBAC, then the rest)."""
    names = expand_templates(TEMPLATES, ctx.rendered, ctx.step_templates)
    docs = [doc for name in names for doc in ctx.objects(name)]
    return apply_order(docs)


def run(ctx: StepContext) -> StepResult:
    docs = objects(ctx)
    if not docs:
        return StepResult.noop("no further templates")
    applied = [ctx.kube.apply(doc) for doc in docs]
    changed = [a.detail for a in applied if a.changed]
    if not changed:
        return StepResult.noop(f"all {len(applied)} further object(s) exist and match")
    return StepResult.done("; ".join(changed))


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the further objects in reverse dependency order."""
    deleted = []
    for doc in reversed(objects(ctx)):
        target = Target.of(doc)
        if ctx.kube.delete(
            doc["apiVersion"], target.kind, doc["metadata"]["name"], target.namespace
        ):
            deleted.append(target.describe())
    if not deleted:
        return StepResult.noop("no further objects left")
    return StepResult.done(f"deleted {', '.join(deleted)}")
