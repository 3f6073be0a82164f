"""Per-user progress from Jobs and Pods, as the watch delivers them (no cluster)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from runner.launcher.display import JsonLines, LiveTable
from runner.launcher.progress import Fleet, parse_indexes, parse_termination
from runner.launcher.summary import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNNING,
    EXIT_TIMEOUT,
    LaunchInfo,
    build,
    table,
    with_canary,
)

LAUNCH = "1125-101500-abc"
NOW = datetime(2026, 11, 25, 10, 20, 0, tzinfo=UTC)


def job(
    name: str, *, user: str | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    labels = {"workshop-runner.io/launch": LAUNCH}
    if user:
        labels["workshop-runner.io/user"] = user
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": "2026-11-25T10:15:00Z"},
        "spec": {"template": {"spec": {"containers": [{"name": "runner"}]}}},
        "status": status or {},
    }


def condition(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"conditions": [{"type": kind, "status": "True", "reason": reason, "message": message}]}


def result(outcome: str = "succeeded", **kw: Any) -> str:
    steps = kw.pop("steps", [{"name": "namespace", "status": "changed"}])
    data = {"user": "u", "outcome": outcome, "exit_code": 0, "failed_step": None, "reason": None}
    data.update(kw, steps=steps)
    return json.dumps(data)


def pod(
    name: str,
    *,
    user: str | None = None,
    index: int | None = None,
    phase: str = "Running",
    step: str | None = None,
    created: str = "2026-11-25T10:15:01Z",
    exit_code: int | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    labels = {"workshop-runner.io/launch": LAUNCH}
    annotations: dict[str, str] = {}
    if user:
        labels["workshop-runner.io/user"] = user
    if index is not None:
        labels["batch.kubernetes.io/job-completion-index"] = str(index)
        annotations["batch.kubernetes.io/job-completion-index"] = str(index)
    if step:
        annotations["workshop-runner.io/step"] = step
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "message": message or "",
                "finishedAt": "2026-11-25T10:16:01Z",
            }
        }
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": created,
        },
        "status": {
            "phase": phase,
            "startTime": created,
            "containerStatuses": [{"name": "runner", "state": state}],
        },
    }


def test_parse_indexes() -> None:
    assert parse_indexes("0-3,7") == {0, 1, 2, 3, 7}
    assert parse_indexes("") == set()
    assert parse_indexes(None) == set()


def test_parse_termination_json_and_log_fallback() -> None:
    steps = [{"name": "a", "status": "unchanged"}, {"name": "b", "status": "skipped"}]
    parsed = parse_termination(
        {"state": {"terminated": {"exitCode": 0, "message": result(steps=steps)}}}
    )
    assert parsed is not None
    assert (parsed.exit_code, parsed.changed, parsed.steps) == (0, 0, 1)
    fallback = parse_termination(
        {"state": {"terminated": {"exitCode": 1, "message": "log line\nTraceback: boom\n"}}}
    )
    assert fallback is not None
    assert fallback.reason == "Traceback: boom"
    assert parse_termination({"state": {"running": {}}}) is None


def test_indexed_fleet_from_pending_to_final() -> None:
    fleet = Fleet(["user1", "user2", "user3"], indexed=True)
    assert [v.state for v in fleet.views()] == ["pending"] * 3
    fleet.resync("Job", [job("wr-x")])
    touched = fleet.resync(
        "Pod",
        [
            pod("p0", index=0, step="catalog-source"),
            pod("p1", index=1, phase="Pending"),
        ],
    )
    assert touched == {"user1", "user2"}
    v1 = fleet.view("user1")
    assert (v1.state, v1.step, v1.attempts, v1.final) == ("running", "catalog-source", 1, False)
    assert v1.seconds(NOW) == 299.0
    assert fleet.view("user2").state == "pending"
    assert not fleet.done()

    # user1 done, user2 failed (termination message names step and reason), user3 never ran:
    # the whole Job failed on its deadline.
    fleet.upsert("Pod", pod("p0", index=0, phase="Succeeded", exit_code=0, message=result()))
    failure = result(
        "failed", exit_code=6, failed_step="csv", reason="CSV rhsso Failed: TooManyOperatorGroups"
    )
    fleet.upsert("Pod", pod("p1", index=1, phase="Failed", exit_code=6, message=failure))
    assert fleet.view("user2").state == "retrying"
    status = {"completedIndexes": "0", "failedIndexes": "1"}
    status.update(condition("Failed", "DeadlineExceeded", "Job was active longer than allowed"))
    touched = fleet.upsert("Job", job("wr-x", status=status))
    assert touched == {"user1", "user2", "user3"}
    v1, v2, v3 = fleet.views()
    assert (v1.state, v1.final, v1.changed, v1.steps) == ("succeeded", True, 1, 1)
    assert v1.seconds(NOW) == 60.0
    assert (v2.state, v2.failed_step, v2.exit_code) == ("failed", "csv", 6)
    assert v2.reason == "CSV rhsso Failed: TooManyOperatorGroups"
    assert (v3.state, v3.reason) == (
        "failed",
        "Job DeadlineExceeded: Job was active longer than allowed",
    )
    assert fleet.done()


def test_per_user_jobs_retries_and_verdicts() -> None:
    fleet = Fleet(["ann", "bob"], indexed=False)
    fleet.resync("Job", [job("wr-x-ann", user="ann"), job("wr-x-bob", user="bob")])
    fleet.resync(
        "Pod",
        [
            pod(
                "a1",
                user="ann",
                phase="Failed",
                exit_code=5,
                message=result("failed", exit_code=5, failed_step="smcp", reason="timed out"),
            ),
            pod("a2", user="ann", phase="Pending", created="2026-11-25T10:16:05Z"),
            pod("b1", user="bob", phase="Succeeded", exit_code=0, message=result()),
        ],
    )
    ann, bob = fleet.views()
    assert (ann.state, ann.attempts, ann.retries, ann.failed_step) == ("retrying", 2, 1, "smcp")
    assert (bob.state, bob.final) == ("succeeded", False)  # the Job has not confirmed yet
    fleet.upsert("Job", job("wr-x-bob", user="bob", status=condition("Complete")))
    fleet.upsert(
        "Pod",
        pod(
            "a2",
            user="ann",
            phase="Succeeded",
            exit_code=0,
            created="2026-11-25T10:16:05Z",
            message=result(),
        ),
    )
    fleet.upsert("Job", job("wr-x-ann", user="ann", status=condition("SuccessCriteriaMet")))
    ann, bob = fleet.views()
    assert (ann.state, ann.final, ann.retries, ann.failed_step) == ("succeeded", True, 1, None)
    assert fleet.done()
    # A pod deleted (e.g. garbage collected) no longer counts.
    fleet.delete("Pod", pod("a1", user="ann"))
    assert fleet.view("ann").attempts == 1


def test_pods_of_unknown_users_are_ignored() -> None:
    fleet = Fleet(["ann"], indexed=False)
    assert fleet.upsert("Pod", pod("z", user="zed")) == set()
    assert fleet.upsert("Pod", pod("y", index=4)) == set()


def info() -> LaunchInfo:
    return LaunchInfo(
        LAUNCH, "workshop-runner", "indexed", "workshop-runner:dev", ("user1", "user2")
    )


def test_summary_counts_fields_and_exit_codes() -> None:
    fleet = Fleet(["user1", "user2"], indexed=True)
    status = {"completedIndexes": "0", "failedIndexes": "1"}
    fleet.resync("Job", [job("wr-x", status=status)])
    failure = result("failed", exit_code=6, failed_step="csv", reason="CSV failed")
    fleet.resync(
        "Pod",
        [
            pod("p0", index=0, phase="Succeeded", exit_code=0, message=result()),
            pod("p1", index=1, phase="Failed", exit_code=6, message=failure),
        ],
    )
    started = datetime(2026, 11, 25, 10, 14, 0, tzinfo=UTC)
    summary = build(info(), fleet.views(), started=started, now=NOW, requests=12)
    assert summary["counts"] == {"succeeded": 1, "failed": 1, "unfinished": 0}
    assert summary["exit_code"] == EXIT_FAILED
    assert summary["api_requests"] == 12
    user2 = summary["users"][1]
    assert (user2["outcome"], user2["failed_step"], user2["reason"], user2["retries"]) == (
        "failed",
        "csv",
        "CSV failed",
        0,
    )
    json.dumps(summary)  # serializable as is
    assert "user2" in str(table(summary).columns[0]._cells)


@pytest.mark.parametrize(
    ("counts", "kw", "code"),
    [
        ({"succeeded": 2, "failed": 0, "unfinished": 0}, {}, EXIT_OK),
        ({"succeeded": 1, "failed": 1, "unfinished": 0}, {}, EXIT_FAILED),
        ({"succeeded": 1, "failed": 1, "unfinished": 1}, {"timed_out": True}, EXIT_TIMEOUT),
        ({"succeeded": 1, "failed": 0, "unfinished": 1}, {"interrupted": True}, EXIT_INTERRUPTED),
        ({"succeeded": 1, "failed": 0, "unfinished": 1}, {"waited": False}, EXIT_RUNNING),
        ({"succeeded": 2, "failed": 0, "unfinished": 0}, {"interrupted": True}, EXIT_OK),
    ],
)
def test_exit_codes(counts: dict[str, int], kw: dict[str, bool], code: int) -> None:
    from runner.launcher.summary import exit_code

    options = {"timed_out": False, "interrupted": False, **kw}
    assert exit_code(counts, **options) == code


def test_json_lines_print_only_changes() -> None:
    out = io.StringIO()
    display = JsonLines(LAUNCH, out)
    fleet = Fleet(["user1"], indexed=True)
    fleet.resync("Pod", [pod("p0", index=0, step="namespace")])
    display.update(fleet.views(), {"user1"}, NOW)
    display.update(fleet.views(), {"user1"}, NOW)  # same state: no new line
    fleet.upsert("Pod", pod("p0", index=0, step="rbac"))
    display.update(fleet.views(), {"user1"}, NOW)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["user"], d["state"], d["step"]) for d in lines] == [
        ("user1", "running", "namespace"),
        ("user1", "running", "rbac"),
    ]
    assert lines[0]["launch"] == LAUNCH
    assert lines[0]["attempt"] == 1


def test_live_table_renders_active_users_first() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, height=30, force_terminal=False)
    display = LiveTable(LAUNCH, console)
    fleet = Fleet(["user1", "user2"], indexed=True)
    fleet.resync("Pod", [pod("p1", index=1, step="smcp")])
    display.update(fleet.views(), {"user2"}, NOW)
    display.close()
    console.print(display.render(fleet.views(), NOW))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "1 running" in text
    assert text.index("user2") < text.index("user1")


def test_a_canary_leads_the_final_summary_and_counts_in_its_exit_code() -> None:
    def summary_of(users: list[str], states: list[str]) -> dict[str, Any]:
        base = build(info(), [], started=NOW, now=NOW)
        rows = [{"user": u, "outcome": s} for u, s in zip(users, states, strict=True)]
        return {**base, "launch": "x-c", "users": rows}

    canary = summary_of(["user1"], ["succeeded"])
    rest = {**summary_of(["user2", "user3"], ["succeeded", "failed"]), "launch": "x"}
    merged = with_canary(rest, canary)
    assert [u["user"] for u in merged["users"]] == ["user1", "user2", "user3"]
    assert merged["counts"] == {"succeeded": 2, "failed": 1, "unfinished": 0}
    assert merged["exit_code"] == EXIT_FAILED
    assert merged["launch"] == "x"
    assert merged["canary"] == {"launch": "x-c", "outcome": "succeeded", "users": ["user1"]}
