"""Fixtures shared by the runner and step integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runner_support import Objects, Outcome, run_inprocess


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
