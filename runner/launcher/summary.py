"""The answer at the end of a launch: per user outcome, duration, retries, failed step and
reason; as a table for people, as JSON for pipelines, and as the exit code.

Exit codes of `launch` and `status` (documented in docs/launcher.md):
  0 every user succeeded · 10 every user finished and at least one failed · 11 the --timeout
  passed with users unfinished (the Jobs go on) · 12 `status --no-wait`: still running ·
  13 preflight failed (no Job created) · 14 `--canary`: a canary user did not succeed, nobody
  else started · 130 interrupted (Ctrl-C; the Jobs go on) · 1, 2, 3, 4, 7 as the runner's
  (internal error, invalid input, template error, forbidden, API missing) for a launch that
  could not start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.launcher.progress import UserView

EXIT_OK = 0
EXIT_FAILED = 10
EXIT_TIMEOUT = 11
EXIT_RUNNING = 12
EXIT_CANARY = 14  # 13 is preflight's (runner/launcher/preflight.py)
EXIT_INTERRUPTED = 130
SCHEMA = "workshop-runner.io/launch-summary/v1"


@dataclass(frozen=True)
class LaunchInfo:
    launch_id: str
    namespace: str
    mode: str
    image: str
    users: tuple[str, ...]


def outcome(view: UserView) -> str:
    if view.final:
        return view.state
    return "unfinished"


def build(
    info: LaunchInfo,
    views: Sequence[UserView],
    *,
    started: datetime,
    now: datetime,
    timed_out: bool = False,
    interrupted: bool = False,
    waited: bool = True,
    requests: int | None = None,
) -> dict[str, Any]:
    users = [_user(v, now) for v in views]
    counts = {k: sum(1 for u in users if u["outcome"] == k) for k in _OUTCOMES}
    code = exit_code(counts, timed_out=timed_out, interrupted=interrupted, waited=waited)
    return {
        "schema": SCHEMA,
        "launch": info.launch_id,
        "namespace": info.namespace,
        "mode": info.mode,
        "image": info.image,
        "started": started.isoformat(timespec="seconds"),
        "finished": now.isoformat(timespec="seconds"),
        "seconds": round((now - started).total_seconds(), 1),
        "counts": counts,
        "exit_code": code,
        "timed_out": timed_out,
        "interrupted": interrupted,
        "api_requests": requests,
        "users": users,
    }


_OUTCOMES = ("succeeded", "failed", "unfinished")


def with_canary(result: dict[str, Any], canary: dict[str, Any]) -> dict[str, Any]:
    """The final summary of a canary launch: the canary's users first, counted in; the
    canary's launch id under `canary`."""
    users = [*canary["users"], *result["users"]]
    counts = {k: sum(1 for u in users if u["outcome"] == k) for k in _OUTCOMES}
    return {
        **result,
        "counts": counts,
        "exit_code": exit_code(
            counts,
            timed_out=result["timed_out"],
            interrupted=result["interrupted"],
        ),
        "canary": {
            "launch": canary["launch"],
            "outcome": "succeeded",
            "users": [u["user"] for u in canary["users"]],
        },
        "users": users,
    }


def exit_code(
    counts: dict[str, int], *, timed_out: bool, interrupted: bool, waited: bool = True
) -> int:
    if counts["unfinished"]:
        if interrupted:
            return EXIT_INTERRUPTED
        if timed_out:
            return EXIT_TIMEOUT
        if not waited:
            return EXIT_RUNNING
    if counts["failed"]:
        return EXIT_FAILED
    if counts["unfinished"]:
        return EXIT_RUNNING
    return EXIT_OK


def _user(view: UserView, now: datetime) -> dict[str, Any]:
    seconds = view.seconds(now)
    return {
        "user": view.user,
        "outcome": outcome(view),
        "state": view.state,
        "step": view.step or None,
        "seconds": round(seconds, 1) if seconds is not None else None,
        "retries": view.retries,
        "failed_step": view.failed_step,
        "reason": view.reason,
        "exit_code": view.exit_code,
        "steps_changed": view.changed,
        "steps_done": view.steps,
        "job": view.job,
        "pod": view.pod,
    }


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


_STYLE = {"succeeded": "green", "failed": "bold red", "unfinished": "yellow"}


def table(summary: dict[str, Any]) -> Table:
    counts = summary["counts"]
    title = (
        f"launch {summary['launch']}: {counts['succeeded']} succeeded, {counts['failed']} failed"
        + (f", {counts['unfinished']} unfinished" if counts["unfinished"] else "")
        + f" in {summary['seconds']:.0f}s"
    )
    out = Table(title=title, title_justify="left", expand=False)
    for column in ("user", "outcome", "duration", "retries", "changed", "failed step", "reason"):
        out.add_column(column, overflow="fold", no_wrap=column in ("user", "outcome"))
    for user in summary["users"]:
        changed = (
            f"{user['steps_changed']}/{user['steps_done']}"
            if user["steps_done"] is not None
            else ""
        )
        state = user["outcome"] if user["outcome"] != "unfinished" else f"({user['state']})"
        out.add_row(
            user["user"],
            f"[{_STYLE[user['outcome']]}]{state}[/]",
            f"{user['seconds']:.0f}s" if user["seconds"] is not None else "",
            str(user["retries"]),
            changed,
            user["failed_step"] or "",
            (user["reason"] or "")[:300],
        )
    return out


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print(table(summary))
    if summary["interrupted"] or summary["timed_out"] or summary["counts"]["unfinished"]:
        console.print(
            f"The Jobs go on. Re-attach: workshop-runner status --launch {summary['launch']}"
            f" --namespace {summary['namespace']}",
            highlight=False,
        )
