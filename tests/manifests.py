"""Apply the project's own manifests (`kubectl apply --server-side -k manifests`) for tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
