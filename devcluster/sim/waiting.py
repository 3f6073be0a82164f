"""Bounded waits on real API events (list, then watch), for fixtures and tests.

No sleep loops: each wait reads the current state, then watches from that resourceVersion until
the predicate holds or the deadline passes, and names the object and its last state on timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from devcluster.sim.kube import Kube, KubeError, Obj, Resource

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline; carries what was last seen."""


def _summary(obj: Obj | None) -> str:
    if obj is None:
        return "absent"
    status = obj.get("status")
    text = repr(status)
    return text if len(text) < 1500 else text[:1500] + "..."


def wait_for(
    kube: Kube,
    res: Resource,
    namespace: str | None,
    name: str,
    predicate: Callable[[Obj], bool],
    *,
    timeout: float,
    what: str = "",
) -> Obj:
    """The object once predicate(obj) holds; WaitTimeout otherwise."""
    deadline = time.monotonic() + timeout
    last: Obj | None = None
    while True:
        items, rv = kube.list(res, namespace, fieldSelector=f"metadata.name={name}")
        last = items[0] if items else None
        if last is not None and predicate(last):
            return last
        try:
            for event in _events(
                kube, res, namespace, rv, deadline=deadline, field_selector=f"metadata.name={name}"
            ):
                obj = event.get("object") or {}
                last = None if event.get("type") == "DELETED" else obj
                if last is not None and predicate(last):
                    return last
        except KubeError as exc:
            if exc.status != 410:
                raise
            continue
        if time.monotonic() >= deadline:
            where = f"{namespace}/{name}" if namespace else name
            raise WaitTimeout(
                f"timed out after {timeout:.1f}s waiting for {res.kind} {where}"
                f"{': ' + what if what else ''}; last status: {_summary(last)}"
            )


def wait_list(
    kube: Kube,
    res: Resource,
    namespace: str | None,
    check: Callable[[list[Obj]], T | None],
    *,
    timeout: float,
    what: str = "",
) -> T:
    """check(all objects) once it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        items, rv = kube.list(res, namespace)
        current = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in items}
        found = check(list(current.values()))
        if found is not None:
            return found
        try:
            for event in _events(kube, res, namespace, rv, deadline=deadline, field_selector=None):
                obj = event.get("object") or {}
                key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
                if event.get("type") == "DELETED":
                    current.pop(key, None)
                else:
                    current[key] = obj
                found = check(list(current.values()))
                if found is not None:
                    return found
        except KubeError as exc:
            if exc.status != 410:
                raise
            continue
        if time.monotonic() >= deadline:
            seen = repr([o.get("status") for o in current.values()])
            raise WaitTimeout(
                f"timed out after {timeout:.1f}s waiting for {res.kind} in {namespace or 'all'}"
                f"{': ' + what if what else ''}; last: {seen[:1500]}"
            )


def _events(
    kube: Kube,
    res: Resource,
    namespace: str | None,
    rv: str,
    *,
    deadline: float,
    field_selector: str | None,
) -> Any:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return
    query: dict[str, Any] = {
        "watch": "true",
        "resourceVersion": rv,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": max(1, int(remaining + 0.999)),
    }
    if field_selector:
        query["fieldSelector"] = field_selector
    for event in kube.stream(res.path(namespace), query, timeout=remaining + 5):
        kind = event.get("type")
        if kind == "ERROR":
            obj = event.get("object") or {}
            raise KubeError(
                int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", "")
            )
        if kind == "BOOKMARK":
            continue
        yield event
        if time.monotonic() >= deadline:
            return
