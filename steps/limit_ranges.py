"""Remove every LimitRange from `<user>-istio`: the mesh control plane's pods do not fit the
limits an OpenShift project template adds. They are listed, not guessed by name (the workshop
template calls them `<project>-core-resource-limits`; the Ansible role's delete named no
namespace and so deleted nothing)."""

from __future__ import annotations

from runner.context import StepContext
from runner.result import StepResult

NAME = "limit-ranges"
DESCRIPTION = "Delete every LimitRange in <user>-istio"
NEEDS = ("istio-namespace",)
TIMEOUT = 60.0
CAP = None
TEMPLATES: tuple[str, ...] = ()
APIS = (("v1", "LimitRange"),)


def run(ctx: StepContext) -> StepResult:
    namespace = ctx.user.istio_namespace
    items, _ = ctx.kube.list_items("v1", "LimitRange", namespace)
    deleted = [
        name
        for name in sorted(i["metadata"]["name"] for i in items)
        if ctx.kube.delete("v1", "LimitRange", name, namespace)
    ]
    if not deleted:
        return StepResult.noop(f"no LimitRange in {namespace}")
    return StepResult.done(ctx.did("delete", f"LimitRange {', '.join(deleted)} in {namespace}"))


undo = None  # deleted LimitRanges are not brought back
