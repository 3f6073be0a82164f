"""Logging setup. Only the entrypoint calls `configure`; everything else takes a bound logger.

JSON lines when stdout is not a terminal (in the cluster), console lines on a terminal;
`--log-format` overrides. Every line carries `user`, `step` and `object` (null when a line
concerns none). Values that look like credentials are redacted as a last line of defence: the
runner never logs its configuration or HTTP headers in the first place. The credential the
process loaded is registered with `add_secret`, and `redact` removes it (and anything shaped
like a bearer token or a JWT) from any text: log values, error lines, termination messages.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

from runner._lazy import import_without

# Without rich: its pretty tracebacks only serve a console, and cost most of structlog's
# import time (runner/_lazy.py). The launcher imports rich itself for its table.
structlog = import_without("rich", "structlog")
from structlog.typing import FilteringBoundLogger  # noqa: E402

Logger = FilteringBoundLogger
SECRET_KEYS = re.compile(r"token|authorization|password|secret|bearer", re.IGNORECASE)
BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# A JWT (service-account tokens) or an OpenShift OAuth token, wherever it appears.
TOKEN_SHAPED = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*|sha256~[\w-]+")
REDACTED = "[redacted]"
_secrets: set[str] = set()


def add_secret(value: str) -> None:
    """Never show this value (the loaded token) in any output of this process."""
    if len(value) >= 4:
        _secrets.add(value)


def one_line(text: object) -> str:
    """`text` as one line: every run of white space (newlines too) folded to one space."""
    return " ".join(str(text).split())


def redact(text: str) -> str:
    """`text` without the registered secrets, bearer credentials or token-shaped strings."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = BEARER.sub(r"\1 " + REDACTED, text)
    return TOKEN_SHAPED.sub(REDACTED, text)


def _ensure_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in ("user", "step", "object"):
        event.setdefault(key, None)
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if SECRET_KEYS.search(key) and key != "event":
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact(value)
    return event


class _CurrentStdout:
    """sys.stdout as it is at write time (not at configure time), so a replaced stdout (a test
    harness capturing output) never leaves the loggers writing to a closed file."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    out: Any = stream or _CurrentStdout()
    tty = (stream or sys.stdout).isatty()
    if fmt == "auto":
        fmt = "console" if tty else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=tty)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _ensure_fields,
            structlog.processors.format_exc_info if fmt == "json" else _noop,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _noop(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event


def get_logger(**bound: Any) -> Logger:
    logger: Logger = structlog.get_logger().bind(**bound)
    return logger
