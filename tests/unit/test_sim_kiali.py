"""The Kiali simulator writes status conditions exactly as operator-sdk's ansible-operator
(v1.25, under kiali-operator v1.65) does: the shapes of tests/unit/fixtures/kiali-*.yaml."""

from __future__ import annotations

from typing import Any

from devcluster.sim import knobs
from devcluster.sim.engine import Action
from devcluster.sim.fakeworld import FakeWorld
from devcluster.sim.kiali import (
    FAILED_RUNS,
    RECONCILED,
    RUNNING,
    KialiController,
    ansible_set_condition,
)
from devcluster.sim.kube import KIALIS
from tests.unit.stepkit import load

CP = "user1-istio"
FAIL = knobs.build(
    [("t", {"rules": [{"user": "user1", "kind": "Kiali", "fail": "Failed: bad spec"}]})]
)
OK = knobs.build([])


def shape(obj: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(type, status, reason, message) of each condition, in order."""
    return [
        (c["type"], c["status"], c["reason"], c["message"]) for c in obj["status"]["conditions"]
    ]


def step(w: FakeWorld, k: knobs.Knobs, expected: str) -> dict[str, Any]:
    (due,) = KialiController().transitions((CP, "kiali"), w.store, k)
    assert due.step == expected
    w.apply(due)
    obj = w.get(KIALIS, CP, "kiali")
    assert obj is not None
    return obj


def test_success_failure_retry_and_recovery_match_the_fixtures() -> None:
    w = FakeWorld()
    w.add(KIALIS, {"metadata": {"name": "kiali", "namespace": CP}, "spec": {}})
    assert shape(step(w, OK, "running")) == [
        ("Running", "True", "Running", "Running reconciliation")
    ]
    assert shape(step(w, OK, "successful")) == shape(load("kiali-successful.yaml"))
    assert KialiController().transitions((CP, "kiali"), w.store, OK) == []

    change = {"spec": {"kubernetes_config": {"excluded_workloads": ["Job"]}}}
    w.perform(Action("patch", KIALIS, CP, "kiali", change))  # a new generation: a new run
    assert shape(step(w, FAIL, "running")) == shape(load("kiali-running.yaml"))
    failed = step(w, FAIL, "failed")
    expected = [
        (t, s, r, "bad spec" if t == "Failure" else m)
        for t, s, r, m in shape(load("kiali-failed.yaml"))
    ]
    assert shape(failed) == expected
    assert "ansibleResult" in failed["status"]["conditions"][1]

    # ansible-operator requeues with backoff: the retry waits twice the delay, then 4x ...
    (retry,) = KialiController().transitions((CP, "kiali"), w.store, FAIL)
    assert (retry.step, retry.scale) == ("retry", 2.0)
    retrying = step(w, FAIL, "retry")
    assert shape(retrying) == [
        (t, s, r, "bad spec" if t == "Failure" else m)
        for t, s, r, m in shape(load("kiali-retrying.yaml"))
    ]
    step(w, FAIL, "failed")
    (retry,) = KialiController().transitions((CP, "kiali"), w.store, FAIL)
    assert retry.scale == 4.0

    # the cause went away: the next retry succeeds, Failure goes False (not removed)
    step(w, OK, "retry")
    done = step(w, OK, "successful")
    assert ("Failure", "False", "", "") in shape(done)
    assert ("Successful", "True", "Successful", "Last reconciliation succeeded") in shape(done)
    assert FAILED_RUNS not in done["metadata"].get("annotations", {})
    assert KialiController().transitions((CP, "kiali"), w.store, OK) == []


def test_set_condition_keeps_an_unchanged_condition_and_moves_a_changed_one_last() -> None:
    conds = [
        {"type": "A", "status": "True", "reason": "X", "message": "m", "lastTransitionTime": "t0"},
        {"type": "B", "status": "True", "reason": "Y", "message": "", "lastTransitionTime": "t0"},
    ]
    same = ansible_set_condition(
        conds, {"type": "A", "status": "True", "reason": "X", "message": "new"}, "t1"
    )
    assert same == conds  # same status and reason: not even the message changes
    moved = ansible_set_condition(
        conds, {"type": "A", "status": "True", "reason": "Z", "message": ""}, "t1"
    )
    assert [(c["type"], c["lastTransitionTime"]) for c in moved] == [("B", "t0"), ("A", "t0")]
    flipped = ansible_set_condition(
        conds, {"type": "B", "status": "False", "reason": "Y", "message": ""}, "t1"
    )
    assert flipped[-1]["lastTransitionTime"] == "t1"


def test_a_change_during_a_run_is_reconciled_by_the_next_run() -> None:
    # ansible-operator's playbook applies the spec it read at the start; the change made
    # meanwhile (a new generation) queues the CR again for one more run.
    w = FakeWorld()
    w.add(KIALIS, {"metadata": {"name": "kiali", "namespace": CP}, "spec": {}})
    (start,) = KialiController().transitions((CP, "kiali"), w.store, OK)
    assert start.at_start
    step(w, OK, "running")
    change = {"spec": {"kubernetes_config": {"excluded_workloads": ["Job"]}}}
    w.perform(Action("patch", KIALIS, CP, "kiali", change))
    done = step(w, OK, "successful")
    assert done["metadata"]["annotations"][RECONCILED] == "1"
    assert done["metadata"]["generation"] == 2
    assert step(w, OK, "running")["metadata"]["annotations"][RUNNING] == "2"
    assert step(w, OK, "successful")["metadata"]["annotations"][RECONCILED] == "2"
    assert KialiController().transitions((CP, "kiali"), w.store, OK) == []
