"""pytest fixtures for the local control plane.

`cluster` starts one real control plane (OpenShift flavour: project.openshift.io registered) per
test session in a temporary directory and stops it at the end. With DEVCLUSTER_REUSE=1 it uses
the one `python -m devcluster up --openshift` started instead (faster edit-test loops); that
cluster is left running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster, default_state_dir, start_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.environ.get("DEVCLUSTER_REUSE"):
        running = Cluster.load(default_state_dir())
        if running is None or not running.is_ready():
            pytest.fail("DEVCLUSTER_REUSE is set but no devcluster is running: devcluster up")
        yield running
        return
    # Not under tmp_path_factory's base: that is pruned between sessions, this is ours to stop.
    state = tmp_path_factory.mktemp("devcluster")
    started = start_cluster(state, openshift=True, tied=True)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def kubeconfig(cluster: Cluster) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Iterator[Any]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture
def unique_user() -> str:
    """A user name no other test uses (DNS-1123 label, short enough for `<user>-istio`)."""
    return f"u{uuid.uuid4().hex[:8]}"
