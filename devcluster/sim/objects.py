"""Small pure helpers over objects as dicts: metadata, conditions, timestamps."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]


def now_iso(at: _dt.datetime | None = None) -> str:
    """RFC 3339 seconds, as metav1.Time serialises."""
    at = at or _dt.datetime.now(_dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro(at: _dt.datetime | None = None) -> str:
    """metav1.MicroTime, as Lease.spec.renewTime wants."""
    at = at or _dt.datetime.now(_dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meta(obj: Obj) -> Obj:
    m: Obj = obj.get("metadata") or {}
    return m


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def ns_of(obj: Obj) -> str:
    return str(meta(obj).get("namespace", ""))


def uid_of(obj: Obj) -> str:
    return str(meta(obj).get("uid", ""))


def generation(obj: Obj) -> int:
    return int(meta(obj).get("generation") or 0)


def annotations_of(obj: Obj) -> dict[str, str]:
    a: dict[str, str] = meta(obj).get("annotations") or {}
    return a


def labels(obj: Obj) -> dict[str, str]:
    lab: dict[str, str] = meta(obj).get("labels") or {}
    return lab


def status(obj: Obj) -> Obj:
    s: Obj = obj.get("status") or {}
    return s


def spec(obj: Obj) -> Obj:
    s: Obj = obj.get("spec") or {}
    return s


def deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def created_key(obj: Obj) -> tuple[str, str]:
    """Sort key: oldest first, name as tie-breaker (creationTimestamp has 1 s resolution)."""
    return (str(meta(obj).get("creationTimestamp", "")), name_of(obj))


def condition(obj_or_status: Obj, ctype: str) -> Obj | None:
    conds = obj_or_status.get("conditions")
    if conds is None and "status" in obj_or_status and isinstance(obj_or_status["status"], dict):
        conds = obj_or_status["status"].get("conditions")
    for cond in conds or []:
        if cond.get("type") == ctype:
            c: Obj = cond
            return c
    return None


def set_condition(conds: Iterable[Obj], new: Obj, now: str) -> list[Obj]:
    """Replace the condition of new['type']; keep lastTransitionTime if the status is unchanged."""
    out: list[Obj] = []
    placed = False
    for cond in conds:
        if cond.get("type") == new["type"]:
            merged = dict(new)
            same = cond.get("status") == new.get("status")
            merged["lastTransitionTime"] = cond.get("lastTransitionTime", now) if same else now
            out.append(merged)
            placed = True
        else:
            out.append(cond)
    if not placed:
        out.append({**new, "lastTransitionTime": now})
    return out


def strip_times(value: Any) -> Any:
    """A copy without volatile timestamps, to compare a desired status with the current one."""
    volatile = {"lastTransitionTime", "lastUpdateTime", "lastUpdated", "lastHeartbeatTime"}
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


def owner_ref(obj: Obj, api_version: str, kind: str, controller: bool = False) -> Obj:
    ref: Obj = {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(obj),
        "uid": uid_of(obj),
    }
    if controller:
        ref["controller"] = True
        ref["blockOwnerDeletion"] = True
    return ref


def user_of(namespace: str, suffixes: Iterable[str] = ("-istio",)) -> str:
    """The workshop user a namespace belongs to: `user7` and `user7-istio` -> `user7`."""
    for suffix in suffixes:
        if suffix and namespace.endswith(suffix) and len(namespace) > len(suffix):
            return namespace[: -len(suffix)]
    return namespace
