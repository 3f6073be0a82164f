"""Any further templates - those no other step names - applied last, in dependency order
(namespaces, then RBAC, then the rest), so a workshop adds resources (a ConfigMap, a Role for
its lab) with a template and no code. None are shipped."""

from __future__ import annotations

from runner.context import OTHER_TEMPLATES, StepContext, expand_templates
from runner.kube import describe
from runner.result import StepResult
from runner.waits import Obj

NAME = "extra"
DESCRIPTION = "Apply any further templates (no other step names them), namespaces and RBAC first"
NEEDS = ("rbac", "csv", "kiali")  # the end of every chain: extra objects may use any of it
TEMPLATES = (OTHER_TEMPLATES,)  # so preflight resolves their APIs before anything is written
TIMEOUT = 120.0
RANK = {"Namespace": 0, "ServiceAccount": 1, "Role": 1, "ClusterRole": 1}
RANK |= {"RoleBinding": 2, "ClusterRoleBinding": 2}


def objects(ctx: StepContext) -> list[Obj]:
    """The further templates' documents, in file then document order, stably sorted by rank."""
    names = expand_templates(TEMPLATES, ctx.rendered, ctx.step_templates)
    docs = [doc for name in names for doc in ctx.objects(name)]
    return sorted(docs, key=lambda d: RANK.get(d["kind"], len(RANK)))


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
        kind, meta = doc["kind"], doc["metadata"]
        if ctx.kube.delete(doc["apiVersion"], kind, meta["name"], meta.get("namespace")):
            deleted.append(describe(kind, meta["name"], meta.get("namespace")))
    if not deleted:
        return StepResult.noop("no further objects left")
    return StepResult.done(f"deleted {', '.join(deleted)}")
