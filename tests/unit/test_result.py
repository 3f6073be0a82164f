"""The termination message stays within 4 KiB and keeps the essentials."""

from __future__ import annotations

import json

import pytest

from runner.result import RunResult, StepRecord, did


def test_small_result_is_complete() -> None:
    result = RunResult("u1", 0, steps=(StepRecord("namespace", "changed", "created", 12),))
    assert json.loads(result.termination_message()) == {
        "user": "u1",
        "outcome": "succeeded",
        "exit_code": 0,
        "failed_step": None,
        "reason": None,
        "steps": [{"name": "namespace", "status": "changed", "detail": "created", "ms": 12}],
    }


def test_huge_result_fits_in_4_kib() -> None:
    steps = tuple(StepRecord(f"step-{i}", "changed", "é" * 2000, i) for i in range(12))
    result = RunResult("u" * 57, 5, "step-11", "timed out; last observed: " + "x" * 10000, steps)
    text = result.termination_message()
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert data["failed_step"] == "step-11"
    assert data["exit_code"] == 5
    assert data["outcome"] == "failed"
    assert data["reason"].startswith("timed out")
    assert [s["name"] for s in data["steps"]] == [f"step-{i}" for i in range(12)]


@pytest.mark.parametrize(
    ("verb", "past"),
    [("create", "created"), ("add", "added"), ("bind", "bound"), ("set", "set")],
)
def test_a_write_is_phrased_once_for_a_run_and_for_a_dry_run(verb: str, past: str) -> None:
    assert did(verb, "X a/b", dry_run=False) == f"{past} X a/b"
    assert did(verb, "X a/b", dry_run=True) == f"would {verb} X a/b"
