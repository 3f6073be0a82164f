"""A scripted cluster for the operator steps' table-driven tests (no test here).

It extends the in-memory fake of test_steps with what the operator steps use: merge patches
(with the resourceVersion precondition and injectable 409s), collection lists, and watches that
replay a script of operator status changes - each watch call delivers, as MODIFIED/ADDED
events, the queued states of the object(s) it watches. A watch with nothing queued advances the
injected clock, so a wait that never finishes reaches its deadline without real time passing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from runner import config, templates
from runner.context import StepContext, step_templates
from runner.errors import Conflict
from runner.kube import Applied, StepKube, describe
from runner.logs import get_logger
from runner.result import StepResult, perform
from runner.waits import CancelToken, Deadline, Target
from steps import STEPS
from tests.unit.test_steps import ALL_APIS, FakeKube

FIXTURES = Path(__file__).parent / "fixtures"
Obj = dict[str, Any]
PINNED = "rhsso-operator.7.5.2-opr-001"
IDLE_WATCH_SECONDS = 30.0
CURRENT = "<the object's generation>"  # a scripted observedGeneration: the operator caught up


def load(name: str) -> Obj:
    data: Obj = yaml.safe_load((FIXTURES / name).read_text())
    return data


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedKube(FakeKube):
    """Scripted states are merged (JSON merge patch) over the live object, or added."""

    def __init__(self, objects: list[Obj], script: list[Obj], dry_run: bool = False) -> None:
        super().__init__(objects, ALL_APIS, dry_run)
        self.script = list(script)
        self.clock = Clock()
        self.rv = 100
        self.conflicts: dict[str, int] = {}  # "Kind ns/name" -> 409s still to answer
        self.patches: list[tuple[str, Obj]] = []
        self.created: list[Obj] = []  # bodies of applies and creates
        self.on_patch: Callable[[str, Obj, Obj], None] | None = None
        for obj in self.objects.values():
            obj.setdefault("metadata", {}).setdefault("resourceVersion", self._next_rv())

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _store(self, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[self.key(obj)] = obj
        return obj

    def apply(self, desired: Obj, *, force: bool = False) -> Applied:
        before = copy.deepcopy(self.objects.get(self.key(desired)))
        applied = super().apply(desired, force=force)
        if applied.changed and not self.dry_run:
            merged = _merge(before or {}, desired)
            if before is None or merged.get("spec") != before.get("spec"):
                generation = int((before or {}).get("metadata", {}).get("generation", 0))
                merged["metadata"]["generation"] = generation + 1
            self.created.append(copy.deepcopy(desired))
            return Applied(copy.deepcopy(self._store(merged)), True, applied.detail)
        return applied

    def create(self, body: Obj) -> Any:
        if self.key(body) in self.objects:
            self.actions.append(f"create {describe(*_kind_name_ns(body))}")
            return None
        self.actions.append(f"create {describe(*_kind_name_ns(body))}")
        self.created.append(copy.deepcopy(body))
        if self.dry_run:
            return body
        created = copy.deepcopy(body)
        created["metadata"]["generation"] = 1
        return copy.deepcopy(self._store(created))

    def merge_patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Obj
    ) -> Obj:
        what = describe(kind, name, namespace)
        self.actions.append(f"patch {what}")
        self.patches.append((what, copy.deepcopy(patch)))
        live = self.objects.get((kind, namespace, name))
        if live is None:
            raise AssertionError(f"patch of missing {what}")
        if self.on_patch is not None:  # e.g. another writer, just before ours arrives
            self.on_patch(what, live, patch)
        want_rv = patch.get("metadata", {}).get("resourceVersion")
        if self.conflicts.get(what):
            self.conflicts[what] -= 1
            raise Conflict(f"patch {what}: the object has been modified", 409)
        if want_rv is not None and want_rv != live["metadata"]["resourceVersion"]:
            raise Conflict(f"patch {what}: the object has been modified", 409)
        merged = _merge(copy.deepcopy(live), {k: v for k, v in patch.items() if k != "metadata"})
        if merged.get("spec") != live.get("spec"):
            merged["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
        if self.dry_run:
            return dict(merged)
        return copy.deepcopy(self._store(merged))

    def list_objects(self, target: Target) -> tuple[list[Any], str]:
        items, _ = self.list_items(target.api_version, target.kind, target.namespace)
        found = [o for o in items if target.name in (None, o["metadata"]["name"])]
        return copy.deepcopy(found), str(self.rv)

    def watch_objects(self, target: Target, rv: str, timeout: int) -> Iterator[Any]:
        due = [o for o in self.script if _matches(target, o)]
        if not due:
            self.clock.now += min(IDLE_WATCH_SECONDS, float(timeout))
            return
        for state in due:
            self.script.remove(state)
            existed = self.objects.get(self.key(state))
            obj = _merge(copy.deepcopy(existed or {}), state)
            if obj.get("status", {}).get("observedGeneration") == CURRENT:
                obj["status"]["observedGeneration"] = obj["metadata"].get("generation", 1)
            self._store(obj)
            yield {"type": "MODIFIED" if existed else "ADDED", "object": copy.deepcopy(obj)}


def with_(obj: Obj, **changes: Any) -> Obj:
    """A copy with metadata/spec/status fields replaced (one level deep)."""
    out = copy.deepcopy(obj)
    for section, fields in changes.items():
        out.setdefault(section, {}).update(fields)
    return out


def status_only(obj: Obj) -> Obj:
    """A scripted state that changes only the status; an observedGeneration in it becomes the
    live object's generation (the operator observed the current spec)."""
    meta = obj["metadata"]
    keep = {k: meta[k] for k in ("name", "namespace") if k in meta}
    status = copy.deepcopy(obj.get("status") or {})
    if "observedGeneration" in status:
        status["observedGeneration"] = CURRENT
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": keep,
        "status": status,
    }


def _kind_name_ns(obj: Obj) -> tuple[str, str, str | None]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")


def _matches(target: Target, obj: Obj) -> bool:
    meta = obj.get("metadata", {})
    return (
        obj.get("kind") == target.kind
        and meta.get("namespace") == target.namespace
        and target.name in (None, meta.get("name"))
    )


def _merge(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(live) if isinstance(live, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def context(
    step: Any,
    kube: ScriptedKube,
    *,
    seconds: float = 300.0,
    extra_templates: dict[str, list[Obj]] | None = None,
    params: dict[str, Any] | None = None,
    steps: list[Any] | None = None,
) -> StepContext:
    user = config.User("user1")
    merged = config.load_params(None, user, project_request=False) | (params or {})
    rendered = {n: templates.render(t, merged) for n, t in templates.load_templates(None).items()}
    rendered |= extra_templates or {}
    step_kube: StepKube = kube  # mypy checks that the fake is a StepKube
    return StepContext(
        step.NAME,
        user,
        merged,
        rendered,
        step_kube,
        get_logger(),
        Deadline(kube.clock, kube.clock.now + seconds),
        CancelToken(),
        kube.dry_run,
        step_templates(steps if steps is not None else STEPS),
    )


def run(
    step: Any,
    objects: list[Obj] | None = None,
    script: list[Obj] | None = None,
    *,
    dry_run: bool = False,
    **kwargs: Any,
) -> tuple[StepResult, ScriptedKube]:
    kube = ScriptedKube(copy.deepcopy(objects or []), copy.deepcopy(script or []), dry_run)
    return perform(step.run, context(step, kube, **kwargs)), kube
