"""Readiness predicates, from YAML fixtures of real objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from steps import catalog_source

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / name).read_text())
    return data


@pytest.mark.parametrize(
    ("fixture", "state", "summary"),
    [
        ("catalogsource-ready.yaml", "done", "READY"),
        ("catalogsource-connecting.yaml", "pending", "lastObservedState=CONNECTING"),
        ("catalogsource-transient-failure.yaml", "pending", "TRANSIENT_FAILURE"),
        ("catalogsource-new.yaml", "pending", "(none)"),
    ],
)
def test_catalog_source_ready(fixture: str, state: str, summary: str) -> None:
    verdict = catalog_source.ready(load(fixture))
    assert verdict.state == state
    assert summary in verdict.summary


def test_catalog_source_missing_is_pending() -> None:
    assert catalog_source.ready(None).state == "pending"


def test_project_active() -> None:
    from steps._namespaces import project_active

    assert project_active(load("project-active.yaml")).state == "done"
    verdict = project_active(load("project-terminating.yaml"))
    assert (verdict.state, verdict.summary) == ("pending", "phase=Terminating")
    assert project_active({"metadata": {"name": "p"}}).summary == "phase=(none)"
    assert project_active(None).state == "pending"
