"""Log lines are JSON off a terminal, carry user/step/object, and never show credentials."""

from __future__ import annotations

import io
import json

from runner import logs


def test_json_lines_with_fields_and_redaction() -> None:
    out = io.StringIO()
    logs.configure("json", "info", out)
    log = logs.get_logger(user="u1", step="rbac")
    log.info("applied", object="RoleBinding u1/x")
    log.warning("oops", error="401: header Authorization: Bearer abc.def-ghi", token="sekrit")
    log.debug("hidden")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["user"] == "u1"
    assert lines[0]["step"] == "rbac"
    assert lines[0]["object"] == "RoleBinding u1/x"
    assert lines[1]["object"] is None
    assert "abc.def" not in out.getvalue()
    assert "sekrit" not in out.getvalue()
    assert "Bearer [redacted]" in lines[1]["error"]


def test_console_format() -> None:
    out = io.StringIO()
    logs.configure("console", "info", out)
    logs.get_logger(user="u1").info("hello", object="Namespace u1")
    assert "hello" in out.getvalue()
    assert "{" not in out.getvalue().split("hello")[0]
