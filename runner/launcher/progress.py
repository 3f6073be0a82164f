"""Per-user progress of a launch, derived from what the watch has seen (pure, no I/O).

Sources: the Jobs (final verdicts: conditions, and for the Indexed Job `completedIndexes` /
`failedIndexes`), the Pods (phase, the `workshop-runner.io/step` annotation the runner keeps
on its own Pod, the container's termination message: the runner's JSON result). The Job, not
a Pod, decides that a user is done: a failed Pod may be retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from runner.launcher.render import CONTAINER, USER_LABEL
from runner.progress import STEP_ANNOTATION
from runner.waits import Obj

State = Literal["pending", "running", "retrying", "succeeded", "failed"]
Kind = Literal["Job", "Pod"]
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
SUCCESS_CONDITIONS = ("Complete", "SuccessCriteriaMet")
FAILURE_CONDITIONS = ("Failed", "FailureTarget")


@dataclass(frozen=True)
class Termination:
    """What a finished runner container reported (its JSON result, else the log tail)."""

    exit_code: int | None
    failed_step: str | None = None
    reason: str | None = None
    changed: int | None = None
    steps: int | None = None


@dataclass(frozen=True)
class UserView:
    user: str
    state: State
    final: bool = False
    step: str = ""
    attempts: int = 0
    started: datetime | None = None
    finished: datetime | None = None
    job: str | None = None
    pod: str | None = None
    failed_step: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    changed: int | None = None
    steps: int | None = None

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    def seconds(self, now: datetime) -> float | None:
        if self.started is None:
            return None
        return max(0.0, ((self.finished or now) - self.started).total_seconds())

    def change_key(self) -> tuple[str, str, int, bool]:
        """What a line of progress output reports; a new line only when this changes."""
        return (self.state, self.step, self.attempts, self.final)


def job_finished(job: Obj) -> bool:
    return _condition(job, SUCCESS_CONDITIONS + FAILURE_CONDITIONS) is not None


def parse_indexes(text: str | None) -> set[int]:
    """`"0-3,7"` (the Job status' interval format) -> {0, 1, 2, 3, 7}."""
    found: set[int] = set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        low, _, high = part.strip().partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def parse_termination(container_status: Obj | None) -> Termination | None:
    terminated = ((container_status or {}).get("state") or {}).get("terminated")
    if not terminated:
        return None
    code = terminated.get("exitCode")
    text = str(terminated.get("message") or "").strip()
    try:
        data: Any = json.loads(text) if text.startswith("{") else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        steps = [s for s in data.get("steps") or [] if isinstance(s, dict)]
        return Termination(
            exit_code=int(data.get("exit_code", code if code is not None else -1)),
            failed_step=data.get("failed_step"),
            reason=data.get("reason"),
            changed=sum(1 for s in steps if s.get("status") == "changed"),
            steps=sum(1 for s in steps if s.get("status") in ("changed", "unchanged")),
        )
    # FallbackToLogsOnError: the log tail stands in; its last line is usually the error.
    lines = [line for line in text.splitlines() if line.strip()]
    reason = lines[-1][-300:] if lines else str(terminated.get("reason") or "") or None
    return Termination(exit_code=code, reason=reason)


class Fleet:
    """The Jobs and Pods of one launch as last seen, and the users they provision (for the
    Indexed Job, in index order)."""

    def __init__(self, users: Sequence[str], *, indexed: bool) -> None:
        self.users = list(users)
        self.indexed = indexed
        self._index = {u: i for i, u in enumerate(self.users)}
        self.jobs: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self._pods_of: dict[str, dict[str, Obj]] = {u: {} for u in self.users}
        self._job_names: dict[str, str] = {}
        self._views: dict[str, UserView] = {}

    # -- updates from the watch; each returns the users whose view may have changed --------
    def resync(self, kind: Kind, objects: Iterable[Obj]) -> set[str]:
        store = self.jobs if kind == "Job" else self.pods
        touched: set[str] = set()
        for obj in list(store.values()):
            touched |= self.delete(kind, obj)
        for obj in objects:
            touched |= self.upsert(kind, obj)
        return touched

    def upsert(self, kind: Kind, obj: Obj) -> set[str]:
        users = self._users_of(kind, obj)
        if kind == "Job":
            self.jobs[_name(obj)] = obj
            self._job_names.update(dict.fromkeys(users, _name(obj)))
        else:
            self.pods[_name(obj)] = obj
            for user in users:
                self._pods_of[user][_name(obj)] = obj
        self._forget(users)
        return users

    def delete(self, kind: Kind, obj: Obj) -> set[str]:
        users = self._users_of(kind, obj)
        if kind == "Job":
            self.jobs.pop(_name(obj), None)
        else:
            self.pods.pop(_name(obj), None)
            for user in users:
                self._pods_of[user].pop(_name(obj), None)
        self._forget(users)
        return users

    def _forget(self, users: set[str]) -> None:
        for user in users:
            self._views.pop(user, None)

    # -- views (cached; recomputed only for users an event touched) -------------------------
    def views(self) -> list[UserView]:
        return [self.view(u) for u in self.users]

    def done(self) -> bool:
        return all(v.final for v in self.views())

    def view(self, user: str) -> UserView:
        cached = self._views.get(user)
        if cached is None:
            cached = self._views[user] = self._compute(user)
        return cached

    def _compute(self, user: str) -> UserView:
        job = self._job_of(user)
        pods = sorted(
            self._pods_of[user].values(),
            key=lambda p: (str(p["metadata"].get("creationTimestamp", "")), _name(p)),
        )
        verdict, job_reason = self._verdict(job, user)
        latest = pods[-1] if pods else None
        terminations = [_termination(p) for p in pods]
        failures = [t for t in terminations if t is not None and t.exit_code]
        failure = failures[-1] if failures else None
        last = terminations[-1] if terminations else None
        base = UserView(
            user=user,
            state="pending",
            attempts=len(pods),
            started=_time(_started(pods[0])) if pods else None,
            job=_name(job) if job else None,
            pod=_name(latest) if latest else None,
        )
        if verdict == "succeeded":
            return replace(
                base,
                state="succeeded",
                final=True,
                finished=_finished(latest, job),
                exit_code=0,
                changed=last.changed if last else None,
                steps=last.steps if last else None,
            )
        if verdict == "failed":
            reason = (failure.reason if failure else None) or job_reason
            return replace(
                base,
                state="failed",
                final=True,
                step=(failure.failed_step if failure else None) or "",
                finished=_finished(latest, job),
                failed_step=failure.failed_step if failure else None,
                reason=reason,
                exit_code=failure.exit_code if failure else None,
            )
        if latest is None:
            return base
        phase = (latest.get("status") or {}).get("phase", "Pending")
        step = (latest["metadata"].get("annotations") or {}).get(STEP_ANNOTATION, "")
        if phase == "Succeeded":
            return replace(base, state="succeeded", step=step)
        if phase == "Running":
            return replace(base, state="running", step=step)
        # A failed pod the Job has not judged yet, or the next attempt waiting to start.
        retrying = phase == "Failed" or len(pods) > 1
        return replace(
            base,
            state="retrying" if retrying else "pending",
            step=step,
            failed_step=failure.failed_step if failure else None,
            reason=failure.reason if failure else None,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _users_of(self, kind: Kind, obj: Obj) -> set[str]:
        """The (known) users a Job or Pod works for."""
        labels = obj["metadata"].get("labels") or {}
        if labels.get(USER_LABEL):
            user = str(labels[USER_LABEL])
            return {user} if user in self._index else set()
        if kind == "Job":
            return set(self.users) if self.indexed else set()
        index = labels.get(INDEX_KEY) or (obj["metadata"].get("annotations") or {}).get(INDEX_KEY)
        try:
            return {self.users[int(index)]} if index is not None else set()
        except (ValueError, IndexError):
            return set()

    def _job_of(self, user: str) -> Obj | None:
        name = self._job_names.get(user)
        return self.jobs.get(name) if name else None

    def _verdict(self, job: Obj | None, user: str) -> tuple[State | None, str | None]:
        if job is None:
            return None, None
        failed = _condition(job, FAILURE_CONDITIONS)
        job_reason = (
            f"Job {failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": ")
            if failed
            else None
        )
        if self.indexed:
            status = job.get("status") or {}
            index = self._index[user]
            if index in parse_indexes(status.get("completedIndexes")):
                return "succeeded", None
            if index in parse_indexes(status.get("failedIndexes")):
                return "failed", job_reason or "Job: index failed"
        if _condition(job, SUCCESS_CONDITIONS) is not None:
            return "succeeded", None
        if failed is not None:
            return "failed", job_reason
        return None, None


def _condition(job: Obj, types: Sequence[str]) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in types and condition.get("status") == "True":
            found: Obj = condition
            return found
    return None


def _termination(pod: Obj) -> Termination | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == CONTAINER), None)
    return parse_termination(status)


def _started(pod: Obj) -> str | None:
    started = (pod.get("status") or {}).get("startTime") or pod["metadata"].get("creationTimestamp")
    return str(started) if started else None


def _finished(pod: Obj | None, job: Obj | None) -> datetime | None:
    if pod is not None:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("finishedAt"):
                return _time(terminated["finishedAt"])
    status = (job or {}).get("status") or {}
    return _time(status.get("completionTime"))


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])
