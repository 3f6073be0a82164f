"""Helpers of the e2e tests: run the console script as an admin would, knobs, checks."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.cluster import Cluster

JOBS_NAMESPACE = "workshop-runner"
IMAGE = "workshop-runner:dev"


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


def namespace_exists(cluster: Cluster, name: str) -> bool:
    return cluster.raw(f"/api/v1/namespaces/{name}")[0] == 200
