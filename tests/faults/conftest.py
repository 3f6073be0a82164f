"""Fixtures of the fault suite, and its figures printed at the end of the pytest run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.faultproxy import FaultPlan, FaultProxy
from tests.faults.support import (
    FIGURES,
    RUNNER_NAMESPACE,
    RUNNER_SA,
    Provisioned,
    deploy_runner_identity,
)


@pytest.fixture(scope="session")
def runner_kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifests' ServiceAccount (least-privilege RBAC + admission guard), as a kubeconfig
    straight to the apiserver."""
    deploy_runner_identity(cluster.kubeconfig)
    path = tmp_path_factory.mktemp("faults-identity") / "runner.kubeconfig"
    return cluster.sa_kubeconfig(RUNNER_NAMESPACE, RUNNER_SA, path=path)


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[FaultProxy]:
    """A fault proxy in front of the apiserver, injecting nothing until told to."""
    with FaultProxy(
        cluster.server, cluster.pki.ca_crt, cluster.pki.ca_key, FaultPlan(), workdir=tmp_path
    ) as started:
        yield started
        FIGURES.record_proxy(started.stats())


@pytest.fixture
def proxied_kubeconfig(proxy: FaultProxy, runner_kubeconfig: Path, tmp_path: Path) -> Path:
    return proxy.kubeconfig(runner_kubeconfig, tmp_path / "proxied.kubeconfig")


@pytest.fixture(scope="session")
def sims(request: pytest.FixtureRequest) -> Any:
    """The simulated operators (devcluster.sim); the tests that need them skip without them."""
    try:
        return request.getfixturevalue("simulators")
    except pytest.FixtureLookupError:
        pytest.skip("the simulated operators (fixture `simulators`) are not available")


@pytest.fixture
def provisioned(api_client: Any) -> Provisioned:
    return Provisioned(api_client)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES.runs and not FIGURES.bad_inputs:
        return
    terminalreporter.section("fault suite figures")
    for line in FIGURES.lines():
        terminalreporter.write_line(line)
