from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """runner.logs.configure binds the current stdout; give every test a fresh setup."""
    yield
    structlog.reset_defaults()
