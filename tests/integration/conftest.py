"""Fixtures shared by the runner and step integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from devcluster.cluster import Cluster
from devcluster.sim.kube import Kube
from devcluster.sim.testkit import namespaces
from tests.integration.test_runner_support import Objects, Outcome, run_inprocess
from tests.manifests import apply_manifests

# The deploy base's identity (manifests/deploy): namespace and ServiceAccount.
NAMESPACE = "workshop-runner"
SERVICE_ACCOUNT = "workshop-runner"


@pytest.fixture
def objects(api_client: Any) -> Objects:
    return Objects(api_client)


@pytest.fixture
def runner(kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `workshop-runner run ARGV` in-process with the admin kubeconfig: an Outcome."""

    def run(*argv: str, env: dict[str, str] | None = None) -> Outcome:
        return run_inprocess(
            list(argv), tmp_path, capsys, {"KUBECONFIG": str(kubeconfig), **(env or {})}
        )

    return run


@pytest.fixture(scope="module")
def deployed(cluster: Cluster) -> Path:
    """`kubectl apply --server-side -k manifests` as the admin; returns the SA's kubeconfig."""
    apply_manifests(cluster.kubeconfig, "workshop-runner-tests")
    return cluster.sa_kubeconfig(NAMESPACE, SERVICE_ACCOUNT)


@pytest.fixture(scope="module")
def sa(deployed: Path) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(deployed))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube(simulators: Any) -> Kube:
    """The simulators' own client (a module may override it, as the kubelet tests do)."""
    k: Kube = simulators.kube
    return k


@pytest.fixture
def istio(kube: Kube, unique_user: str) -> Iterator[str]:
    """The user's `-istio` namespace, removed afterwards."""
    with namespaces(kube, unique_user, f"{unique_user}-istio"):
        yield f"{unique_user}-istio"
