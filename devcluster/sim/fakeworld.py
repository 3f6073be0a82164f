"""An in-memory API for unit tests: apply transitions' actions with JSON-merge-patch semantics.

Only what the simulators' writes need: create (generateName, uid, resourceVersion, generation,
creationTimestamp), merge patch (generation bumps on spec changes; a resourceVersion in the
patch is a precondition, 409 when stale), status patch, delete. Status is dropped on create, as
the API server does for a CRD with a status subresource. As the API server, a delete of an
object with finalizers only marks it (deletionTimestamp); it goes when its last finalizer does.
"""

from __future__ import annotations

import builtins
import copy
import itertools
from collections.abc import Callable
from typing import Any

from devcluster.sim.engine import Action, Transition
from devcluster.sim.informer import Store
from devcluster.sim.kube import KubeError, Obj, Resource


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeWorld:
    def __init__(self) -> None:
        self.store = Store()
        self._rv = itertools.count(1)
        self._names = itertools.count(1)
        self._clock = itertools.count(0)
        self.performed: list[str] = []

    def add(self, res: Resource, obj: Obj, *, keep_status: bool = True) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if "name" not in meta:
            meta["name"] = f"{meta.get('generateName', 'obj-')}{next(self._names):05d}"
        if res.namespaced:
            meta.setdefault("namespace", "")
        elif "namespace" in meta:
            del meta["namespace"]
        if self.store.get(res, meta.get("namespace"), meta["name"]) is not None:
            raise KubeError(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        seconds = next(self._clock)
        meta.setdefault(
            "creationTimestamp", f"2025-01-01T00:{seconds // 60:02d}:{seconds % 60:02d}Z"
        )
        meta["resourceVersion"] = str(next(self._rv))
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        if not keep_status:
            obj.pop("status", None)
        self.store.update(res, obj)
        return obj

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        return self.store.get(res, namespace, name)

    def list(self, res: Resource, namespace: str | None = None) -> builtins.list[Obj]:
        return self.store.list(res, namespace)

    def perform(self, action: Action) -> None:
        self.performed.append(action.describe())
        try:
            self._perform(action)
        except KubeError as exc:
            if exc.status not in action.tolerate:
                raise

    def _perform(self, action: Action) -> None:
        res = action.res
        if action.verb == "create":
            body = copy.deepcopy(action.body)
            if res.namespaced and action.namespace:
                body.setdefault("metadata", {})["namespace"] = action.namespace
            self.add(res, body, keep_status=False)
            return
        current = self.store.get(res, action.namespace, action.name or "")
        if current is None:
            raise KubeError(404, "NotFound", f"{res.plural} {action.name} not found")
        if action.verb == "delete":
            if not current["metadata"].get("finalizers"):
                self.store.remove(res, current)
                return
            if current["metadata"].get("deletionTimestamp"):
                return
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = "2025-01-01T01:00:00Z"
        elif action.verb == "status":
            updated = copy.deepcopy(current)
            updated["status"] = merge_patch(updated.get("status"), action.body)
        else:
            wanted = ((action.body or {}).get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
                raise KubeError(409, "Conflict", f"{res.plural} {action.name}: object was modified")
            updated = merge_patch(copy.deepcopy(current), action.body)
            if "spec" in action.body and updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
            if updated["metadata"].get("deletionTimestamp") and not updated["metadata"].get(
                "finalizers"
            ):
                self.store.remove(res, current)
                return
        updated["metadata"]["resourceVersion"] = str(next(self._rv))
        self.store.update(res, updated)

    def apply(self, transition: Transition) -> None:
        for action in transition.actions:
            self.perform(action)

    def settle(
        self, transitions: Callable[[], builtins.list[Transition]], limit: int = 200
    ) -> builtins.list[str]:
        """Apply the first due transition until none is left; the kinds:steps, in order."""
        steps: builtins.list[str] = []
        for _ in range(limit):
            due = transitions()
            if not due:
                return steps
            self.apply(due[0])
            steps.append(f"{due[0].kind}:{due[0].step}")
        raise AssertionError(f"no steady state after {limit} transitions: {steps[-10:]}")
