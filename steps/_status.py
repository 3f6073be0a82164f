"""Reading operator-written status, shared by the operator steps' predicates (pure functions)."""

from __future__ import annotations

from typing import Any

from runner.waits import Obj


def status_of(obj: Obj | None) -> dict[str, Any]:
    found = (obj or {}).get("status")
    return found if isinstance(found, dict) else {}


def condition(obj: Obj | None, ctype: str) -> dict[str, Any]:
    """The condition of that type, or {} (conditions are a list keyed by `type`)."""
    for cond in status_of(obj).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return {}


def is_true(obj: Obj | None, ctype: str) -> bool:
    return condition(obj, ctype).get("status") == "True"


def describe_conditions(obj: Obj | None, *types: str) -> str:
    """`Ready=False (ComponentsNotReady: ...), Reconciled=True (...)`: what a timeout reports."""
    conds = [c for c in status_of(obj).get("conditions") or [] if isinstance(c, dict)]
    if types:
        conds = [c for c in conds if c.get("type") in types]
    if not conds:
        return "no conditions yet"
    return ", ".join(_one(c) for c in conds)


def generation_observed(obj: Obj, *, required: bool) -> tuple[bool, str]:
    """Whether the status speaks about the current spec (observedGeneration == generation),
    and if not, why. `required=False`: a status without observedGeneration passes."""
    generation = obj.get("metadata", {}).get("generation")
    observed = status_of(obj).get("observedGeneration")
    if observed == generation or (observed is None and not required):
        return True, ""
    return False, f"observedGeneration {observed or '(none)'} of generation {generation}"


def _one(cond: dict[str, Any]) -> str:
    why = ": ".join(str(cond[k]) for k in ("reason", "message") if cond.get(k))
    return f"{cond.get('type')}={cond.get('status')}" + (f" ({why})" if why else "")
