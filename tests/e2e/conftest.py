"""E2E: the launcher -> Jobs (real job controller) -> Pods run by the process kubelet -> the
launcher's summary. The simulated operators and the kubelet come from devcluster's fixtures
when they exist, else they are started here beside the session's control plane (and stopped
with it)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from devcluster import services
from devcluster.cluster import Cluster
from tests.e2e.support import JOBS_NAMESPACE, Ran, clean_env, command


@pytest.fixture(scope="session")
def fleet_cluster(request: pytest.FixtureRequest, cluster: Cluster) -> Cluster:
    """The session's control plane with the simulators and the process kubelet running."""
    for name, start in (
        ("simulators", services.start_simulators),
        ("kubelet", lambda c: services.start_kubelet(c, namespace=JOBS_NAMESPACE)),
    ):
        try:
            request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            start(cluster)
    services.wait_operators_installed(cluster)
    return cluster


@pytest.fixture
def prefix() -> str:
    """A user-name prefix no other test (or earlier session on a reused cluster) uses."""
    return f"e{uuid.uuid4().hex[:5]}-"


@pytest.fixture
def wr(tmp_path: Path) -> Any:
    """Run `workshop-runner ARGS --kubeconfig K` like an admin would; for launch and status
    the JSON summary is read back."""
    count = 0

    def run(kubeconfig: Path, *args: str, timeout: float = 300) -> Ran:
        nonlocal count
        count += 1
        extra: list[str] = []
        summary = tmp_path / f"summary-{count}.json"
        if args[0] in ("launch", "status"):
            extra = ["--summary-json", str(summary), "--progress", "json"]
        proc = subprocess.run(
            command(kubeconfig, *args, *extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
        )
        data = json.loads(summary.read_text()) if summary.exists() else None
        return Ran(proc.returncode, proc.stdout, proc.stderr, data)

    return run
