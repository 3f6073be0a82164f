"""The teardown driver (reverse order, stop at first failure) and the undo helpers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from runner.config import User
from runner.context import StepContext
from runner.errors import Conflict, OperatorFailed, TemporaryCondition
from runner.kube import Mutate, Updated, read_modify_write
from runner.logs import get_logger
from runner.result import StepResult
from runner.teardown import teardown_user
from runner.waits import CancelToken, Deadline, Target


def step(name: str, calls: list[str], *, fail: bool = False, undo: bool = True) -> Any:
    def do_undo(ctx: StepContext) -> StepResult:
        calls.append(ctx.step)
        if fail:
            raise OperatorFailed(f"{ctx.step}: cannot remove")
        return (
            StepResult.done(f"removed {ctx.step}") if ctx.step != "b" else StepResult.noop("gone")
        )

    return SimpleNamespace(
        NAME=name,
        TIMEOUT=1.0,
        CAP=None,
        NEEDS=(),
        DESCRIPTION=name,
        TEMPLATES=(),
        APIS=(),
        undo=do_undo if undo else None,
    )


def test_undo_runs_in_reverse_step_order_and_skips_steps_without_undo() -> None:
    calls: list[str] = []
    steps = [step("a", calls), step("b", calls), step("c", calls, undo=False), step("d", calls)]
    result = teardown_user(object(), steps, User("ann"), {}, {}, log=get_logger())
    assert calls == ["d", "b", "a"]
    assert result.exit_code == 0
    assert [(r.name, r.status) for r in result.steps] == [
        ("d", "changed"),
        ("c", "skipped"),
        ("b", "unchanged"),
        ("a", "changed"),
    ]


def test_first_failure_stops_the_user_and_names_the_step() -> None:
    calls: list[str] = []
    steps = [step("a", calls), step("b", calls, fail=True), step("c", calls)]
    result = teardown_user(object(), steps, User("ann"), {}, {}, log=get_logger())
    assert calls == ["c", "b"]
    assert (result.exit_code, result.failed_step) == (6, "b")


class FakeKube:
    """get / merge_patch / delete over a dict of objects, with injected conflicts."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]], conflicts: int = 0) -> None:
        self.objects = objects
        self.conflicts = conflicts
        self.patches: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return self.objects.get((kind, name))

    def merge_patch(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Any
    ) -> Any:
        self.patches.append(patch)
        live = self.objects[(kind, name)]
        if self.conflicts:
            self.conflicts -= 1
            live["spec"]["members"].append("late-comer")  # someone else changed it
            live["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
            raise Conflict("the object has been modified", 409)
        assert patch["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
        live["spec"]["members"] = patch["spec"]["members"]
        return live

    def create(self, body: Any) -> Any:
        raise AssertionError(f"teardown created {body}")

    def update(self, target: Target, mutate: Mutate, *, known: Any = None) -> Updated:
        return read_modify_write(self, target, mutate, known=known)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        self.deleted.append(f"{kind}/{name}")
        return self.objects.pop((kind, name), None) is not None


def ctx_with(kube: FakeKube, rendered: dict[str, Any] | None = None) -> StepContext:
    return StepContext(
        "member-roll",
        User("ann"),
        {},
        rendered or {},
        kube,
        get_logger(),
        Deadline.after(5),
        CancelToken(),
        False,
    )


ROLL = Target("maistra.io/v1", "ServiceMeshMemberRoll", "ann-istio", "default")


def roll(*members: str) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": "7"}, "spec": {"members": list(members)}}


def test_remove_member_keeps_the_other_members_and_retries_on_conflict() -> None:
    kube = FakeKube({("ServiceMeshMemberRoll", "default"): roll("ann", "bookinfo")}, conflicts=1)
    result = ctx_with(kube).remove_member(ROLL, "ann")
    assert result.changed
    assert kube.objects[("ServiceMeshMemberRoll", "default")]["spec"]["members"] == [
        "bookinfo",
        "late-comer",
    ]
    assert len(kube.patches) == 2  # recomputed after the conflict


def test_a_write_still_conflicting_after_five_attempts_is_temporary() -> None:
    kube = FakeKube({("ServiceMeshMemberRoll", "default"): roll("ann", "bookinfo")}, conflicts=9)
    with pytest.raises(TemporaryCondition, match="still conflicting after 5 attempts") as e:
        ctx_with(kube).remove_member(ROLL, "ann")
    assert e.value.exit_code == 5
    assert len(kube.patches) == 5  # client-go's DefaultRetry: five attempts, then give up


@pytest.mark.parametrize("live", [None, roll("bookinfo")])
def test_remove_member_is_a_noop_when_not_a_member(live: dict[str, Any] | None) -> None:
    objects = {("ServiceMeshMemberRoll", "default"): live} if live else {}
    kube = FakeKube(objects)
    result = ctx_with(kube).remove_member(ROLL, "ann")
    assert not result.changed
    assert "not a member" in result.detail
    assert kube.patches == []


def test_remove_deletes_rendered_objects_last_document_first() -> None:
    rendered = {
        "t.yaml": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "a", "namespace": "ann"},
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "b", "namespace": "ann"},
            },
        ]
    }
    kube = FakeKube({("ConfigMap", "a"): {}})
    result = ctx_with(kube, rendered).remove("t.yaml")
    assert kube.deleted == ["ConfigMap/b", "ConfigMap/a"]
    assert result.changed
    assert result.detail == "deleted ConfigMap ann/a"
    again = ctx_with(kube, rendered).remove("t.yaml")
    assert not again.changed
    assert "already absent" in again.detail


def test_undo_records_are_timed_by_the_engine_and_a_crash_is_exit_1() -> None:
    ticks = iter(float(t) for t in range(100))
    crashing = step("b", [])

    def crash(ctx: StepContext) -> StepResult:
        raise KeyError("boom")

    crashing.undo = crash
    steps = [step("a", []), crashing, step("c", [])]
    result = teardown_user(
        object(), steps, User("ann"), {}, {}, log=get_logger(), clock=lambda: next(ticks)
    )
    assert [(r.name, r.status) for r in result.steps] == [("c", "changed"), ("b", "failed")]
    assert all(r.ms > 0 for r in result.steps)  # the engine's clock: one tick per read
    assert (result.exit_code, result.failed_step) == (1, "b")
    assert result.reason == "step b: unexpected KeyError: 'boom'"
