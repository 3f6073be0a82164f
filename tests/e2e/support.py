"""Helpers of the e2e tests: run the console script as an admin would, knobs, checks."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.cluster import Cluster

JOBS_NAMESPACE = "workshop-runner"
IMAGE = "workshop-runner:dev"
KNOBS = ("devcluster-system", "devcluster-sim-knobs")


@dataclass(frozen=True)
class Ran:
    rc: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None

    def users(self) -> dict[str, dict[str, Any]]:
        assert self.summary is not None, self.stderr
        return {u["user"]: u for u in self.summary["users"]}

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.stdout.splitlines() if x.startswith("{")]


def command(kubeconfig: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner", *args, "--kubeconfig", str(kubeconfig)]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "WORKSHOP_USER")}


def set_knob(cluster: Cluster, key: str, document: dict[str, Any] | None) -> None:
    """One key of the simulators' knobs ConfigMap (None removes it)."""
    namespace, name = KNOBS
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        try:
            core.create_namespace({"metadata": {"name": namespace}})
        except client.exceptions.ApiException as e:
            if e.status != 409:
                raise
        body = {"data": {key: json.dumps(document) if document is not None else None}}
        try:
            core.patch_namespaced_config_map(name, namespace, body)
        except client.exceptions.ApiException as e:
            if e.status != 404 or document is None:
                raise
            core.create_namespaced_config_map(
                namespace, {"metadata": {"name": name}, "data": body["data"]}
            )


def namespace_exists(cluster: Cluster, name: str) -> bool:
    return cluster.raw(f"/api/v1/namespaces/{name}")[0] == 200
