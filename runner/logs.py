"""Logging setup. Only the entrypoint calls `configure`; everything else takes a bound logger.

JSON lines when stdout is not a terminal (in the cluster), console lines on a terminal;
`--log-format` overrides. Every line carries `user`, `step` and `object` (null when a line
concerns none). Values that look like credentials are redacted as a last line of defence: the
runner never logs its configuration or HTTP headers in the first place.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger

Logger = FilteringBoundLogger
SECRET_KEYS = re.compile(r"token|authorization|password|secret|bearer", re.IGNORECASE)
BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# A JSON Web Token (ServiceAccount tokens are JWTs), and `token=...` / `password: ...` pairs.
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
SECRET_PAIR = re.compile(
    r"(?i)\b(token|password|secret|authorization)(\s*[=:]\s*)(?!bearer\b|\[redacted\])[^\s,;'\"]+"
)


def _ensure_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in ("user", "step", "object"):
        event.setdefault(key, None)
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if SECRET_KEYS.search(key) and key != "event":
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


def redact_text(text: str) -> str:
    """A free text (a log value, an Event's note) with anything credential-like replaced."""
    text = BEARER.sub(r"\1 [redacted]", text)
    text = JWT.sub("[redacted]", text)
    return SECRET_PAIR.sub(r"\1\2[redacted]", text)


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
            _redact,
            structlog.processors.format_exc_info if fmt == "json" else _noop,
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
