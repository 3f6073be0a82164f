"""Shared by the RH-SSO steps: the pinned CSV, read from the rendered Subscription (so an
overridden template stays the single source of truth), and OLM's status fields."""

from __future__ import annotations

from runner.context import StepContext
from runner.errors import TemplateError
from runner.waits import Obj
from steps._status import condition, status_of

OLM = "operators.coreos.com/v1alpha1"
CSV = (OLM, "ClusterServiceVersion")
INSTALL_PLAN = (OLM, "InstallPlan")
SUBSCRIPTION_TEMPLATE = "subscription.yaml"


def pinned_csv(ctx: StepContext) -> tuple[str, str]:
    """(namespace, CSV name) of the Subscription. It must be Manual - OLM does not validate
    installPlanApproval and treats any other string as Automatic - and pin a startingCSV."""
    sub = ctx.object(SUBSCRIPTION_TEMPLATE)
    spec = sub.get("spec") or {}
    where = f"template {SUBSCRIPTION_TEMPLATE}"
    if spec.get("installPlanApproval") != "Manual":
        raise TemplateError(
            f"{where}: spec.installPlanApproval must be exactly 'Manual', "
            f"not {spec.get('installPlanApproval')!r}"
        )
    csv = spec.get("startingCSV")
    if not isinstance(csv, str) or not csv:
        raise TemplateError(f"{where}: spec.startingCSV must name the pinned CSV")
    return str(sub["metadata"]["namespace"]), csv


def phase(obj: Obj) -> str:
    return str(status_of(obj).get("phase") or "")


def failure_reason(obj: Obj) -> str:
    """`Reason: message` of a Failed CSV or InstallPlan (CSVs: status.reason/message; plans:
    the Installed condition, else status.message)."""
    st = status_of(obj)
    installed = condition(obj, "Installed")
    reason = st.get("reason") or installed.get("reason") or "Failed"
    message = st.get("message") or installed.get("message") or "no message"
    return f"{reason}: {message}"
