"""The ordered steps. Order is the declaration (and the `steps` listing); each step's NEEDS
lets the engine run independent chains concurrently. Adding a step = one module + one line."""

from __future__ import annotations

from runner.result import Step
from steps import catalog_source, istio_namespace, limit_ranges, namespace, rbac

STEPS: list[Step] = [
    namespace,
    catalog_source,
    rbac,
    istio_namespace,
    limit_ranges,
]
