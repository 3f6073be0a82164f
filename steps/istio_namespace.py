"""The user's mesh control plane namespace `<user>-istio`, with the same admin RoleBinding."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult
from steps._namespaces import ensure_namespace

NAME = "istio-namespace"
DESCRIPTION = "Create the <user>-istio namespace and bind the user to admin there"
NEEDS = ("namespace",)
TIMEOUT = 60.0
CAP = None
APIS: tuple[tuple[str, str], ...] = ()
TEMPLATES = ("istio-namespace.yaml", "istio-rbac.yaml")


def run(ctx: StepContext) -> StepResult:
    namespace = ensure_namespace(ctx, "istio-namespace.yaml")
    binding = ctx.kube.apply(ctx.object("istio-rbac.yaml"))
    return StepResult(namespace.changed or binding.changed, f"{namespace.detail}; {binding.detail}")


def undo(ctx: StepContext) -> StepResult:
    """Teardown: delete the RoleBinding, then the namespace; wait until it is gone."""
    return ctx.remove("istio-rbac.yaml", "istio-namespace.yaml")
