"""What a step gets: an explicit, typed context (no globals)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runner.config import User
from runner.errors import Forbidden, TemplateError
from runner.kube import StepKube
from runner.logs import Logger
from runner.result import DryRunStop, NotWaiting, Step, StepResult, did
from runner.waits import (
    CancelToken,
    CollectionPredicate,
    Deadline,
    Obj,
    Predicate,
    Target,
    Verdict,
    done,
    pending,
    wait_for,
    wait_for_collection,
)

T = TypeVar("T")


@dataclass(frozen=True)
class StepContext:
    step: str
    user: User
    params: Mapping[str, Any]
    rendered: Mapping[str, list[Obj]]
    kube: StepKube
    log: Logger
    deadline: Deadline
    cancel: CancelToken
    dry_run: bool
    # The templates steps apply by name (their TEMPLATES); the generic `extra` step applies
    # the others, so a workshop can add resources without code.
    step_templates: frozenset[str] = frozenset()

    def did(self, verb: str, what: str) -> str:
        """A write as the step reports it: "added X" (in a dry run "would add X")."""
        return did(verb, what, dry_run=self.dry_run)

    def objects(self, template: str) -> list[Obj]:
        """The rendered documents of one template (copies; rendered before any API call)."""
        if template not in self.rendered:
            raise TemplateError(f"step {self.step}: template {template} not found")
        return copy.deepcopy(self.rendered[template])

    def object(self, template: str) -> Obj:
        """The single document of a one-document template."""
        docs = self.objects(template)
        if len(docs) != 1:
            raise TemplateError(f"template {template}: expected one document, found {len(docs)}")
        return docs[0]

    def wait(
        self,
        target: Target,
        predicate: Predicate,
        what: str,
        known: Obj | None = None,
        *,
        so_far: StepResult | None = None,
    ) -> Obj:
        """Wait for one object. `known`: the object as just applied or read, to watch from
        its resourceVersion without a first list. `so_far`: what the step did before this
        wait. A dry run looks once (at `known`, else one list) and never waits: when the
        predicate is done already the object is returned, else the step ends here with
        `so_far` and a note."""
        if self.dry_run:
            if known is None:
                items, _ = self.kube.list_objects(target)
                known = next((o for o in items if o["metadata"]["name"] == target.name), None)
            verdict = predicate(known)
            if verdict.state == "done" and (verdict.obj or known) is not None:
                return verdict.obj or known or {}
            raise NotWaiting(f"{target.describe()} {what}", what, so_far)
        self.log.info("waiting", object=target.describe(), until=what)
        return wait_for(
            self.kube,
            target,
            predicate,
            deadline=self.deadline,
            cancel=self.cancel,
            what=what,
            known=known,
        )

    def retry_forbidden(
        self,
        fn: Callable[[], T],
        when: Callable[[Forbidden], bool],
        seconds: float,
        *,
        so_far: StepResult | None = None,
    ) -> T:
        """fn(); a refusal `when` accepts is retried for `seconds` (> 0: the step granted
        itself the permission it needs moments ago, and RBAC's caches may lag;
        Kube.retry_forbidden). In a dry run that grant was not made, so such a refusal is the
        answer to expect: the step ends here with `so_far` and the refusal as a note."""
        if not (self.dry_run and seconds > 0):
            return self.kube.retry_forbidden(fn, when, seconds)
        try:
            return fn()
        except Forbidden as error:
            if not when(error):
                raise
            note = f"dry-run: refused as expected without the grant it did not make ({error})"
            raise DryRunStop(note, so_far) from None

    def apply_and_wait(self, desired: Obj, predicate: Predicate, what: str) -> StepResult:
        """Apply `desired`, then wait (from the applied object on, so no first list) until
        `predicate` says done; the step's result names both."""
        applied = self.kube.apply(desired)
        so_far = StepResult(applied.changed, applied.detail)
        self.wait(Target.of(desired), predicate, what, known=applied.obj, so_far=so_far)
        return StepResult(applied.changed, f"{applied.detail}; {what}")

    def wait_collection(
        self,
        target: Target,
        predicate: CollectionPredicate,
        what: str,
        *,
        so_far: StepResult | None = None,
    ) -> Verdict:
        """Wait on every object of a kind in a namespace; in a dry run the step ends here with
        `so_far` and a note."""
        if self.dry_run:
            raise NotWaiting(f"{target.describe()} {what}", what, so_far)
        self.log.info("waiting", object=target.describe(), until=what)
        return wait_for_collection(
            self.kube, target, predicate, deadline=self.deadline, cancel=self.cancel, what=what
        )

    # -- for undo functions (teardown) ---------------------------------------------------------
    def remove(self, *template_names: str) -> StepResult:
        """Delete every object the templates render, last document first; a Namespace is
        waited on until it is gone (its content goes with it), so a later launch never meets
        it Terminating."""
        deleted: list[str] = []
        absent: list[str] = []
        for name in template_names:
            for obj in reversed(self.objects(name)):
                target = Target.of(obj)
                gone = self.kube.delete(
                    target.api_version, target.kind, obj["metadata"]["name"], target.namespace
                )
                if target.kind == "Namespace":
                    gone = self._wait_namespace_gone(obj["metadata"]["name"]) or gone
                (deleted if gone else absent).append(target.describe())
        if deleted:
            return StepResult.done(f"deleted {', '.join(deleted)}")
        return StepResult.noop(f"{', '.join(absent)} already absent")

    def _wait_namespace_gone(self, name: str) -> bool:
        """True when the namespace still existed (Terminating) and we waited for it."""
        waited = False

        def gone(objects: list[Obj]) -> Verdict:
            nonlocal waited
            if not objects:
                return done("gone")
            waited = True
            phase = (objects[0].get("status") or {}).get("phase", "?")
            return pending(f"phase {phase}")

        self.wait_collection(Target("v1", "Namespace", None, name), gone, "deleted")
        return waited

    def remove_member(self, roll: Target, member: str) -> StepResult:
        """Take `member` out of `spec.members`, keeping every other member. The list is
        replaced as a whole, so this is a read-modify-write (kube.update: a concurrent change
        makes the write fail with 409, and it is recomputed)."""
        keep: list[str] = []

        def drop(live: Obj | None) -> Obj | None:
            members = list(((live or {}).get("spec") or {}).get("members") or [])
            if live is None or member not in members:
                return None
            keep[:] = [m for m in members if m != member]
            live["spec"]["members"] = keep
            return live

        if not self.kube.update(roll, drop).changed:
            return StepResult.noop(f"{member} is not a member of {roll.describe()}")
        others = f"; kept {', '.join(keep)}" if keep else ""
        return StepResult.done(f"removed {member} from {roll.describe()}{others}")


# In a step's TEMPLATES: every template that no step names (the generic `extra` step).
OTHER_TEMPLATES = "*"


def step_templates(steps: Sequence[Step]) -> frozenset[str]:
    """Every template a step names in its TEMPLATES."""
    named = (t for s in steps for t in s.TEMPLATES)
    return frozenset(t for t in named if t != OTHER_TEMPLATES)


def expand_templates(
    templates: Sequence[str], rendered: Mapping[str, object], named: frozenset[str]
) -> list[str]:
    """A step's TEMPLATES with OTHER_TEMPLATES expanded to the unnamed ones (sorted)."""
    out: list[str] = []
    for name in templates:
        out += sorted(n for n in rendered if n not in named) if name == OTHER_TEMPLATES else [name]
    return out


def step_apis(
    step: Step, rendered: Mapping[str, list[Obj]], named: frozenset[str]
) -> list[tuple[str, str]]:
    """(apiVersion, kind) of everything a step touches: its APIS and its templates' objects."""
    apis = list(step.APIS)
    for name in expand_templates(step.TEMPLATES, rendered, named):
        apis += [(d["apiVersion"], d["kind"]) for d in rendered.get(name, [])]
    return list(dict.fromkeys(apis))
