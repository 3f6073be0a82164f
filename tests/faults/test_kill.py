"""Kill anywhere, re-run converges.

For every step boundary (the moment a step starts, the moment it finishes) and in the middle of
every wait on an operator, a runner for a fresh user is SIGKILLed there (spotted from its own
JSON log lines), then run again to completion. The user must end fully provisioned with nothing
twice (one OperatorGroup, one Subscription, one approved InstallPlan, one SMCP ...), and a third
run must find nothing left to do.

The kill points run concurrently (a few users at a time) in one module fixture; each point is
then its own test, so a failure names the point.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import (
    STEP_NAMES,
    WAIT_KINDS,
    Provisioned,
    Running,
    check_converged,
    run_runner,
    set_knobs,
    step_event,
    wait_steps,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]  # the module fixture runs them all

WAIT_DELAY = 1.5  # seconds per simulated transition of the waited-on kind: the wait lasts
KILL_INTO_WAIT = 0.4  # ... and the kill lands this long after the runner says "waiting"
PARALLEL = 4


@dataclass(frozen=True)
class Point:
    step: str
    moment: str  # "started" | "finished" | "waiting"

    @property
    def id(self) -> str:
        return f"{self.moment}-{self.step}"

    @property
    def event(self) -> str:
        return {"started": "step started", "finished": "step finished", "waiting": "waiting"}[
            self.moment
        ]


POINTS = [
    *(Point(s, m) for s in STEP_NAMES for m in ("started", "finished")),
    *(Point(s, "waiting") for s in wait_steps()),
]


@dataclass
class Outcome:
    user: str
    killed: bool = False
    mid_wait: bool = True
    problems: list[str] | None = None
    error: str = ""


def _one(point: Point, user: str, kubeconfig: Path, api_client: Any, tmp: Path) -> Outcome:
    out = Outcome(user)
    try:
        if point.moment == "waiting":
            kind = WAIT_KINDS[point.step]
            set_knobs(
                api_client, user, {"rules": [{"user": user, "kind": kind, "delay": WAIT_DELAY}]}
            )
        argv = ["--user", user, "--kubeconfig", str(kubeconfig)]
        running = Running(argv, tmp / "killed", {})
        try:
            seen = running.wait_event(step_event(point.step, point.event), 180)
            if seen and point.moment == "waiting":
                time.sleep(KILL_INTO_WAIT)
                out.mid_wait = not running.wait_event(step_event(point.step, "step finished"), 0)
            running.kill()
            out.killed = seen and running.killed
        finally:
            running.kill()
        if not out.killed:
            out.error = f"never reached {point.id}:\n{''.join(running.lines[-10:])}"
            return out
        rerun = run_runner(argv, tmp / "rerun", timeout=300)
        if rerun.code != 0:
            out.error = f"re-run after the kill failed:\n{rerun.explain()}"
            return out
        out.problems = check_converged(Provisioned(api_client), user)
        again = run_runner(argv, tmp / "again", timeout=300)
        changed = [n for n, s in again.statuses.items() if s != "unchanged"]
        if again.code != 0 or changed:
            out.error = f"third run was not a no-op (changed: {changed}):\n{again.explain()}"
    except Exception:
        out.error = traceback.format_exc()
    return out


@pytest.fixture(scope="module")
def outcomes(
    runner_kubeconfig: Path,
    api_client: Any,
    sims: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Outcome]]:
    tmp = tmp_path_factory.mktemp("kills")
    users = {p.id: f"k{uuid.uuid4().hex[:8]}" for p in POINTS}
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {
            p.id: pool.submit(_one, p, users[p.id], runner_kubeconfig, api_client, tmp / p.id)
            for p in POINTS
        }
        yield {pid: f.result() for pid, f in futures.items()}


def test_every_step_has_kill_points() -> None:
    assert len(POINTS) == 2 * len(STEP_NAMES) + len(wait_steps())


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_kill_then_rerun_converges(point: Point, outcomes: dict[str, Outcome]) -> None:
    out = outcomes[point.id]
    assert not out.error, f"user {out.user}: {out.error}"
    assert out.mid_wait, f"user {out.user}: the wait ended before the kill; raise WAIT_DELAY"
    assert out.problems == [], f"user {out.user}: {out.problems}"
