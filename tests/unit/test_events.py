"""The Events the runner records: which object, what they say, what they never say."""

from __future__ import annotations

from typing import Any

import pytest

from runner import cli
from runner.config import User
from runner.events import NOTE_LIMIT, Note, Regarding, event_body
from runner.result import RunResult, StepRecord

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl"
USER = User("user7")


def test_the_body_is_an_events_k8s_io_event() -> None:
    regarding = Regarding("v1", "Pod", "wr-1-abc", "workshop-runner", "uid-1")
    body = event_body(regarding, Note("Normal", "Provisioned", "Provision", "done"), "wr-1-abc")
    assert body["apiVersion"] == "events.k8s.io/v1"
    assert body["metadata"]["namespace"] == "workshop-runner"
    assert body["metadata"]["name"].startswith("wr-1-abc.")
    assert body["regarding"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "wr-1-abc",
        "namespace": "workshop-runner",
        "uid": "uid-1",
    }
    assert (body["type"], body["reason"], body["reportingController"]) == (
        "Normal",
        "Provisioned",
        "workshop-runner",
    )
    assert body["eventTime"].endswith("Z")


def test_the_note_has_no_credentials_and_fits_1024_bytes() -> None:
    text = f"token {TOKEN} Authorization: Bearer abc.def " + "é" * 2000
    note = event_body(
        Regarding("v1", "Namespace", "u", "u"),
        Note("Warning", "StepFailed", "Provision", text),
        "x",
    )["note"]
    assert "eyJ" not in note
    assert "abc.def" not in note
    assert len(note.encode()) <= NOTE_LIMIT
    assert note.endswith("...")


def _result(code: int, *steps: tuple[str, str]) -> RunResult:
    records = tuple(StepRecord(name, status, "") for name, status in steps)
    if code == 0:
        return RunResult(USER.name, 0, steps=records)
    return RunResult(USER.name, code, "csv", "CSV rhsso Failed: InstallComponentFailed", records)


def test_notes_say_what_changed_or_what_failed() -> None:
    ok = cli.outcome_note(USER, _result(0, ("namespace", "changed"), ("rbac", "unchanged")))
    assert (ok.type, ok.reason) == ("Normal", "Provisioned")
    assert ok.text == "user user7: 1 step(s) changed (namespace), 1 unchanged"
    bad = cli.outcome_note(USER, _result(6, ("namespace", "unchanged"), ("csv", "failed")))
    assert (bad.type, bad.reason) == ("Warning", "StepFailed")
    assert bad.text == (
        "user user7: step csv failed with exit code 6: CSV rhsso Failed: InstallComponentFailed"
    )


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Regarding, Note]] = []

    def record(self, regarding: Regarding, note: Note, name: str | None = None) -> bool:
        self.calls.append((regarding, note))
        return True


@pytest.mark.parametrize(
    ("env", "steps", "expected"),
    [
        (
            {"POD_NAME": "p", "POD_NAMESPACE": "workshop-runner", "POD_UID": "u1"},
            [("namespace", "failed")],
            Regarding("v1", "Pod", "p", "workshop-runner", "u1"),
        ),
        ({}, [("namespace", "changed")], Regarding("v1", "Namespace", "user7", "user7")),
        ({}, [("namespace", "skipped")], None),  # "not run": nothing of the runner's there
        ({}, [("namespace", "failed")], None),  # e.g. a namespace that is not the runner's
    ],
)
def test_where_the_event_goes(
    env: dict[str, str], steps: list[tuple[str, str]], expected: Regarding | None
) -> None:
    recorder: Any = _Recorder()
    cli.record_outcome(recorder, env, USER, _result(0, *steps))
    assert [r for r, _ in recorder.calls] == ([expected] if expected else [])


def test_an_unselected_namespace_step_still_has_its_namespace() -> None:
    recorder: Any = _Recorder()
    result = RunResult(USER.name, 0, steps=(StepRecord("namespace", "skipped", "not selected"),))
    cli.record_outcome(recorder, {}, USER, result)
    assert len(recorder.calls) == 1


def test_the_launcher_names_the_job_the_user_and_the_outcome() -> None:
    from runner.launcher.cli import record_finished
    from runner.launcher.progress import Fleet, UserView

    fleet = Fleet(["u1", "u2"], indexed=True)
    fleet.jobs["wr-l1"] = {"metadata": {"name": "wr-l1", "uid": "job-uid"}}
    recorder: Any = _Recorder()
    done = UserView("u1", "succeeded", final=True, job="wr-l1", attempts=1, changed=3, steps=12)
    failed = UserView(
        "u2", "failed", True, job="wr-l1", attempts=3, failed_step="csv", exit_code=6, reason="x"
    )
    record_finished(recorder, fleet, "workshop-runner", done)
    record_finished(recorder, fleet, "workshop-runner", failed)
    record_finished(recorder, fleet, "workshop-runner", UserView("u3", "failed", True))  # no Job
    assert [r for r, _ in recorder.calls] == [
        Regarding("batch/v1", "Job", "wr-l1", "workshop-runner", "job-uid")
    ] * 2
    assert [(n.type, n.reason, n.text) for _, n in recorder.calls] == [
        ("Normal", "UserSucceeded", "user u1: 3/12 step(s) changed"),
        ("Warning", "UserFailed", "user u2: step csv failed with exit code 6: x"),
    ]
