"""Apply the project's own manifests (`kubectl apply --server-side -k manifests`) for tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def apply_manifests(
    kubeconfig: Path, field_manager: str, directory: Path = ROOT / "manifests"
) -> None:
    """The runner's home as an admin would install it: namespace, SA, RBAC, admission guard,
    templates ConfigMap (or another kustomization, e.g. an overlay of manifests/deploy).
    Raises with kubectl's stderr when the apply fails."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    applied = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            f"--field-manager={field_manager}",
            "--force-conflicts",
            "-f",
            "-",
        ],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if applied.returncode != 0:
        raise RuntimeError(f"kubectl apply of manifests failed: {applied.stderr}")


def kubectl_events(
    kubeconfig: Path, namespace: str, reporter: str = "workshop-runner"
) -> list[Any]:
    """`kubectl get events -n NS` (the events.k8s.io view), only those `reporter` recorded,
    oldest first."""
    listed = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "get",
            "events.events.k8s.io",
            "-n",
            namespace,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    items = json.loads(listed.stdout)["items"]
    mine = [e for e in items if e.get("reportingController") == reporter]
    return sorted(mine, key=lambda e: str(e.get("eventTime") or ""))
