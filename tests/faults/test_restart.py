"""The API server restarts while the runner is in the middle of a long wait: the runner's watch
breaks, its requests are refused for a while, and it must resume and finish."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster
from tests.faults.support import (
    FIGURES,
    WAIT_KINDS,
    Provisioned,
    Running,
    check_converged,
    longest_wait_step,
    set_knobs,
    step_event,
)

pytestmark = pytest.mark.faults
DELAY = 4.0  # seconds per simulated transition of the waited-on object


@pytest.mark.parametrize(
    ("sig", "down"),
    [(signal.SIGTERM, 0.0), (signal.SIGKILL, 2.0)],
    ids=["graceful-restart", "crash-and-2s-outage"],
)
def test_runner_survives_an_apiserver_restart_mid_wait(  # noqa: PLR0917 (fixtures)
    cluster: Cluster,
    runner_kubeconfig: Path,
    api_client: Any,
    sims: Any,
    unique_user: str,
    provisioned: Provisioned,
    tmp_path: Path,
    sig: int,
    down: float,
) -> None:
    step = longest_wait_step()
    set_knobs(
        api_client,
        unique_user,
        {"rules": [{"user": unique_user, "kind": WAIT_KINDS[step], "delay": DELAY}]},
    )
    running = Running(["--user", unique_user, "--kubeconfig", str(runner_kubeconfig)], tmp_path)
    try:
        assert running.wait_event(step_event(step, "waiting"), 180), "".join(running.lines[-20:])
        time.sleep(0.5)  # inside the watch
        assert not running.wait_event(step_event(step, "step finished"), 0), "wait too short"
        restarted = time.monotonic()
        cluster.restart_apiserver(sig=sig, down_seconds=down)
        FIGURES.apiserver_restarts += 1
        downtime = time.monotonic() - restarted
        run = running.wait(300)
    finally:
        running.kill()
    assert run.code == 0, f"apiserver down {downtime:.1f}s\n{run.explain()}"
    finished = [e for e in run.events if step_event(step, "step finished")(e)]
    assert finished, run.explain()
    assert check_converged(provisioned, unique_user) == []
