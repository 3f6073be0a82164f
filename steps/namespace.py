"""The user's namespace (a Namespace, or an OpenShift project when asked)."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from steps._namespaces import ensure_namespace

NAME = "namespace"
DESCRIPTION = "Create the user's namespace (Namespace, or ProjectRequest when asked)"
NEEDS: tuple[str, ...] = ()
TIMEOUT = 60.0
CAP = None
APIS: tuple[tuple[str, str], ...] = ()
TEMPLATES = ("namespace.yaml",)


def run(ctx: StepContext) -> StepResult:
    return ensure_namespace(ctx, "namespace.yaml")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the namespace (and whatever is left in it); wait until it is gone."""
    return ctx.remove("namespace.yaml")
