"""The user administers their namespace: RoleBinding user -> ClusterRole admin."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult

NAME = "rbac"
DESCRIPTION = "Bind the user to the admin ClusterRole in their namespace"
NEEDS = ("namespace",)
TIMEOUT = 60.0
CAP = None
APIS: tuple[tuple[str, str], ...] = ()
TEMPLATES = ("rbac.yaml",)


def run(ctx: StepContext) -> StepResult:
    applied = ctx.kube.apply(ctx.object("rbac.yaml"))
    return StepResult(applied.changed, applied.detail)


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the user's admin RoleBinding."""
    return ctx.remove("rbac.yaml")
