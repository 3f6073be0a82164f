"""The ordered steps. Order is the declaration (and the `steps` listing); each step's NEEDS
lets the engine run independent chains concurrently. Adding a step = one module + one line."""

from __future__ import annotations

from runner.result import Step
from steps import (
    catalog_source,
    csv,
    extra,
    install_plan,
    istio_namespace,
    kiali,
    limit_ranges,
    member_roll,
    namespace,
    rbac,
    smcp,
    sso_operator,
)

STEPS: list[Step] = [
    namespace,
    catalog_source,
    rbac,
    sso_operator,
    install_plan,
    csv,
    istio_namespace,
    limit_ranges,
    smcp,
    member_roll,
    kiali,
    extra,
]
