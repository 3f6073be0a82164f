"""Support for the runner integration tests (no tests here): run the CLI in-process or as a
subprocess, and read what it made with the admin client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from runner.cli import main

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    code: int
    result: dict[str, Any]
    stderr: str
    stdout: str = ""

    @property
    def statuses(self) -> dict[str, str]:
        return {s["name"]: s["status"] for s in self.result.get("steps", [])}

    def detail(self, step: str) -> str:
        return str(next(s["detail"] for s in self.result["steps"] if s["name"] == step))


def run_inprocess(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
) -> Outcome:
    term = tmp_path / f"termination-{len(list(tmp_path.glob('termination-*')))}"
    code = main(["run", "--log-format", "json", "--termination-log", str(term), *argv], env=env)
    captured = capsys.readouterr()
    result = json.loads(term.read_text()) if term.exists() else {}
    return Outcome(code, result, captured.err, captured.out)


def run_subprocess(
    argv: list[str], tmp_path: Path, env: dict[str, str], timeout: float = 120
) -> Outcome:
    term = tmp_path / "termination-sub"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "run", "--termination-log", str(term), *argv],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    result = json.loads(term.read_text()) if term.exists() else {}
    return Outcome(proc.returncode, result, proc.stderr, proc.stdout)


class Objects:
    """The admin's view of a user's objects."""

    def __init__(self, api_client: Any) -> None:
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.dyn = DynamicClient(api_client)
        self.catalogs = self.dyn.resources.get(
            api_version="operators.coreos.com/v1alpha1", kind="CatalogSource"
        )

    def namespace(self, name: str) -> Any | None:
        try:
            return self.core.read_namespace(name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def exists(self, user: str) -> dict[str, bool]:
        return {
            "namespace": self.namespace(user) is not None,
            "istio": self.namespace(f"{user}-istio") is not None,
        }

    def resource_versions(self, user: str) -> dict[str, str]:
        """resourceVersion of everything the runner made for `user` (and the LimitRanges)."""
        rvs: dict[str, str] = {}
        for ns in (user, f"{user}-istio"):
            found = self.namespace(ns)
            if found is not None:
                rvs[f"Namespace {ns}"] = found.metadata.resource_version
                for rb in self.rbac.list_namespaced_role_binding(ns).items:
                    rvs[f"RoleBinding {ns}/{rb.metadata.name}"] = str(rb.metadata.resource_version)
                for lr in self.core.list_namespaced_limit_range(ns).items:
                    rvs[f"LimitRange {ns}/{lr.metadata.name}"] = str(lr.metadata.resource_version)
        for cs in self.catalogs.get(namespace=user).items:
            rvs[f"CatalogSource {user}/{cs.metadata.name}"] = cs.metadata.resourceVersion
        return rvs
