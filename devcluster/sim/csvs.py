"""Simulated OLM operator for ClusterServiceVersions, and OperatorGroup status.

A CSV goes Pending -> InstallReady -> Installing -> Succeeded (or Failed by knob), and fails
the way OLM fails it, with OLM's messages: NoOperatorGroup, TooManyOperatorGroups (more than one
group in the namespace), UnsupportedOperatorGroup (the group's namespaces do not fit the CSV's
installModes - the RH-SSO CSV cannot watch all namespaces). It recovers to Pending once the
namespace has exactly one fitting group. A CSV Failed for another reason (a knob) is re-checked
as OLM does: while the knob still fails it, back to Pending (NeedsReinstall) and through the
install again; once the knob is gone, Succeeded - the deployment became healthy.
InstallComponentFailedNoRetry stays Failed. Each status write appends to status.conditions, the
phase history OLM keeps.
"""

from __future__ import annotations

from devcluster.sim.engine import Action, Transition
from devcluster.sim.knobs import Knobs
from devcluster.sim.kube import CSVS, OLM, OPERATORGROUPS
from devcluster.sim.objects import Obj, name_of, now_iso, spec, status

V1ALPHA1 = f"{OLM}/v1alpha1"
OG_FAILURES = ("NoOperatorGroup", "TooManyOperatorGroups", "UnsupportedOperatorGroup")
NO_RETRY = "InstallComponentFailedNoRetry"
_NOT_AVAILABLE = (
    'installing: waiting for deployment {0} to become ready: deployment "{0}" not available: '
    "Deployment does not have minimum availability."
)
# RH-SSO 7.x supports watching its own namespace or one other, never all namespaces.
DEFAULT_INSTALL_MODES = [
    {"type": "OwnNamespace", "supported": True},
    {"type": "SingleNamespace", "supported": True},
    {"type": "MultiNamespace", "supported": False},
    {"type": "AllNamespaces", "supported": False},
]
CSV_STEPS = {
    "": ("Pending", "RequirementsUnknown", "requirements not yet checked"),
    "Pending": ("InstallReady", "AllRequirementsMet", "all requirements found, attempting install"),
    "InstallReady": (
        "Installing",
        "InstallSucceeded",
        "waiting for install components to report healthy",
    ),
    "Installing": ("Succeeded", "InstallSucceeded", "install strategy completed with no errors"),
}


def phase(obj: Obj) -> str:
    return str(status(obj).get("phase") or "")


def version_of(csv_name: str) -> str:
    tail = csv_name.split(".", 1)[1] if "." in csv_name else "1.0.0"
    return tail[1:] if tail.startswith("v") else tail


def new_csv(csv_name: str, namespace: str, sub: Obj | None) -> Obj:
    package = str(spec(sub or {}).get("name") or csv_name.split(".", 1)[0])
    label = f"{package}.{namespace}"
    meta: Obj = {"name": csv_name, "namespace": namespace}
    if len(label) <= 63:
        meta["labels"] = {f"operators.coreos.com/{label}": ""}
    return {
        "apiVersion": V1ALPHA1,
        "kind": "ClusterServiceVersion",
        "metadata": meta,
        "spec": {
            "displayName": package,
            "version": version_of(csv_name),
            "provider": {"name": "devcluster simulator"},
            "installModes": DEFAULT_INSTALL_MODES,
            "install": {"strategy": "deployment", "spec": {"deployments": []}},
        },
    }


def og_targets(og: Obj) -> list[str] | None:
    st = status(og)
    if "namespaces" not in st:
        return None
    return list(st.get("namespaces") or [])


_NOT_SUPPORTED = "{} InstallModeType not supported, cannot configure to watch {}"


def install_mode_error(csv: Obj, namespace: str, targets: list[str]) -> str | None:
    """OLM's InstallModeSet.Supports, with its messages."""
    modes = {m.get("type"): bool(m.get("supported")) for m in spec(csv).get("installModes") or []}
    if not targets:
        return (
            "operatorgroup has invalid selected namespaces, "
            "cannot configure to watch zero namespaces"
        )
    if len(targets) == 1:
        target = targets[0]
        if target == namespace and not modes.get("OwnNamespace"):
            return _NOT_SUPPORTED.format("OwnNamespace", "own namespace")
        if target == "" and not modes.get("AllNamespaces"):
            return _NOT_SUPPORTED.format("AllNamespaces", "all namespaces")
        if target not in ("", namespace) and not modes.get("SingleNamespace"):
            return _NOT_SUPPORTED.format("SingleNamespace", "one namespace")
        return None
    if not modes.get("MultiNamespace"):
        return _NOT_SUPPORTED.format("MultiNamespace", f"{len(targets)} namespaces")
    return None


def _csv_status(csv: Obj, new_phase: str, reason: str, message: str, now: str) -> Obj:
    history = list(status(csv).get("conditions") or [])[-19:]
    history.append(
        {
            "phase": new_phase,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "lastUpdateTime": now,
        }
    )
    return {
        "phase": new_phase,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastUpdateTime": now,
        "conditions": history,
    }


def csv_transitions(
    ns: str, csv: Obj, ogs: list[Obj], knobs: Knobs, now: str | None = None
) -> list[Transition]:
    """The OLM operator's CSV state machine for one CSV, given the OperatorGroups of its
    namespace."""
    now = now or now_iso()
    name = name_of(csv)
    p, reason = phase(csv), str(status(csv).get("reason") or "")

    def go(new_phase: str, new_reason: str, message: str, *extra: Action) -> list[Transition]:
        body = _csv_status(csv, new_phase, new_reason, message, now)
        act = Action("status", CSVS, ns, name, body)
        return [
            Transition(
                f"ClusterServiceVersion/{ns}/{name}:{new_phase}:{new_reason}",
                "ClusterServiceVersion",
                ns,
                name,
                new_phase,
                (*extra, act),
            )
        ]

    if len(ogs) == 0:
        if reason != "NoOperatorGroup":
            return go("Failed", "NoOperatorGroup", "csv in namespace with no operatorgroups")
        return []
    if len(ogs) > 1:
        if reason != "TooManyOperatorGroups":
            return go(
                "Failed",
                "TooManyOperatorGroups",
                "csv created in namespace with multiple operatorgroups, "
                "can't pick one automatically",
            )
        return []
    og = ogs[0]
    targets = og_targets(og)
    if targets is None:
        return []  # the OperatorGroup's status is not written yet
    error = install_mode_error(csv, ns, targets)
    if error:
        if reason != "UnsupportedOperatorGroup":
            return go("Failed", "UnsupportedOperatorGroup", error)
        return []
    failure = knobs.failure("ClusterServiceVersion", ns, name)
    if p == "Failed" and reason in OG_FAILURES:
        return go("Pending", "RequirementsUnknown", "InstallModes now support target namespaces")
    if p == "Failed" and reason != NO_RETRY:
        # OLM checks the install again: healthy now, or back through Pending.
        if failure:
            deployment = str(spec(csv).get("displayName") or name.split(".", 1)[0])
            return go("Pending", "NeedsReinstall", _NOT_AVAILABLE.format(deployment))
        return go("Succeeded", "InstallSucceeded", "install strategy completed with no errors")
    if p not in CSV_STEPS:
        return []
    new_phase, new_reason, message = CSV_STEPS[p]
    if p == "InstallReady" and failure:
        return go("Failed", failure.reason, failure.message)
    extra: list[Action] = []
    if p == "":
        og_annotations = {
            "olm.operatorGroup": name_of(og),
            "olm.operatorNamespace": ns,
            "olm.targetNamespaces": ",".join(targets),
        }
        extra.append(Action("patch", CSVS, ns, name, {"metadata": {"annotations": og_annotations}}))
    return go(new_phase, new_reason, message, *extra)


def operator_group_transitions(ns: str, og: Obj, now: str | None = None) -> list[Transition]:
    """status.namespaces (what OLM resolved the group to) and lastUpdated."""
    now = now or now_iso()
    s = spec(og)
    targets = list(s.get("targetNamespaces") or [])
    # A label selector is not evaluated here: treated like "all namespaces".
    wanted = sorted(targets) if targets else [""]
    if og_targets(og) == wanted:
        return []
    body = {"namespaces": wanted, "lastUpdated": now}
    step = "namespaces:" + ",".join(wanted)
    act = Action("status", OPERATORGROUPS, ns, name_of(og), body)
    return [
        Transition(
            f"OperatorGroup/{ns}/{name_of(og)}:{step}",
            "OperatorGroup",
            ns,
            name_of(og),
            step,
            (act,),
        )
    ]
