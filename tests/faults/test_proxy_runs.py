"""Full runs through the fault proxy: throttling, server errors, resets, lost answers to writes,
TLS EOFs, slow answers and dropped watches. Each run must finish (exit 0, no step past its
deadline) and leave the user fully provisioned with nothing twice. The injected faults are
counted into the suite's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster.faultproxy import WRITE_METHODS, FaultPlan, FaultProxy, Request
from tests.faults.support import (
    Provisioned,
    check_converged,
    delays_for,
    run_runner,
    set_knobs,
    wait_steps,
)

pytestmark = pytest.mark.faults

PLANS = {
    # An apiserver shedding load: 429 with Retry-After on a quarter of the requests.
    "throttled": FaultPlan({"429": 0.25, "slow": 0.1}, seed=11, retry_after=1),
    # A flaky front end: 5xx, resets before and after the request reached the server, TLS
    # connections and watches cut.
    "flaky": FaultPlan(
        {
            "500": 0.06,
            "503": 0.06,
            "reset": 0.06,
            "lost_response": 0.08,
            "eof": 0.04,
            "handshake_eof": 0.2,
            "drop_watch": 0.5,
        },
        seed=12,
    ),
    # Everything at once, three in a row at most for one request.
    "everything": FaultPlan(
        {
            "429": 0.08,
            "500": 0.05,
            "503": 0.05,
            "reset": 0.05,
            "lost_response": 0.06,
            "eof": 0.04,
            "slow": 0.08,
            "handshake_eof": 0.1,
            "drop_watch": 0.4,
        },
        seed=13,
        max_consecutive=3,
        slow_seconds=(0.5, 3.0),
    ),
}
RUN_BUDGET = 240.0  # seconds; each step's own deadline is the real bound
OPERATOR_DELAY = 1.0  # seconds per simulated transition: waits last long enough to be cut


@pytest.mark.parametrize("name", list(PLANS))
def test_run_through_faults_converges(  # noqa: PLR0917 (fixtures)
    name: str,
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    api_client: Any,
    sims: Any,
    unique_user: str,
    provisioned: Provisioned,
    tmp_path: Path,
) -> None:
    plan = PLANS[name]
    set_knobs(api_client, unique_user, delays_for(unique_user, OPERATOR_DELAY))
    proxy.set_plan(plan)
    run = run_runner(
        ["--user", unique_user, "--kubeconfig", str(proxied_kubeconfig)],
        tmp_path,
        timeout=RUN_BUDGET,
    )
    stats = proxy.stats()
    assert run.code == 0, f"{stats}\n{run.explain()}"
    assert check_converged(provisioned, unique_user) == []
    assert stats["injected"] > 0, stats


def test_every_watch_is_cut_twice(  # noqa: PLR0917 (fixtures)
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    api_client: Any,
    sims: Any,
    unique_user: str,
    provisioned: Provisioned,
    tmp_path: Path,
) -> None:
    """Every watch stream (of every wait) is dropped mid-stream twice before one is let
    through: the waits resume from their last resourceVersion and finish."""
    set_knobs(api_client, unique_user, delays_for(unique_user, 2.0))
    proxy.set_plan(FaultPlan({"drop_watch": 1.0}, max_consecutive=2, drop_after_seconds=(0.3, 0.6)))
    run = run_runner(
        ["--user", unique_user, "--kubeconfig", str(proxied_kubeconfig)], tmp_path, timeout=240
    )
    stats = proxy.stats()
    assert run.code == 0, f"{stats}\n{run.explain()}"
    assert stats["faults"].get("drop_watch", 0) >= 2 * len(wait_steps()), stats
    assert check_converged(provisioned, unique_user) == []


def test_lost_answers_to_every_first_write(  # noqa: PLR0917 (fixtures)
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    sims: Any,
    unique_user: str,
    provisioned: Provisioned,
    tmp_path: Path,
) -> None:
    """Every write reaches the apiserver, but the runner never hears the first answer to it:
    its retry must find the object there (server-side apply, AlreadyExists) and not make it
    again."""

    def write(request: Request) -> bool:
        return request.method in WRITE_METHODS

    proxy.set_plan(FaultPlan({"lost_response": 1.0}, match=write, max_consecutive=1))
    run = run_runner(
        ["--user", unique_user, "--kubeconfig", str(proxied_kubeconfig)], tmp_path, timeout=240
    )
    stats = proxy.stats()
    assert run.code == 0, f"{stats}\n{run.explain()}"
    assert stats["faults"].get("lost_response", 0) >= 4, stats
    assert check_converged(provisioned, unique_user) == []


def test_project_request_whose_answer_is_lost(  # noqa: PLR0917 (fixtures)
    proxy: FaultProxy,
    proxied_kubeconfig: Path,
    sims: Any,
    unique_user: str,
    provisioned: Provisioned,
    tmp_path: Path,
) -> None:
    """ProjectRequest is create-only: the retry gets AlreadyExists and must still go on."""
    proxy.inject("lost_response", times=2, match=lambda r: r.path.endswith("/projectrequests"))
    run = run_runner(
        [
            "--user",
            unique_user,
            "--kubeconfig",
            str(proxied_kubeconfig),
            "--project-request",
        ],
        tmp_path,
        timeout=240,
    )
    assert run.code == 0, f"{proxy.stats()}\n{run.explain()}"
    assert proxy.stats()["faults"].get("lost_response") == 2
    assert check_converged(provisioned, unique_user) == []
