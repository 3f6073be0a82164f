"""Translating the HTTP client's failures into runner.errors, naming the action and object.

Transient failures (connection errors, a TLS handshake cut short, 429, 5xx) become
TransientError, which runner.kube retries inside the deadline; everything else is final.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from runner.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RunnerError,
    TemplateError,
    TransientError,
)
from runner.logs import one_line

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
TYPED_PATCH = "failed to create typed patch object"
RETRY_AFTER_CAP = 30.0


def classify(e: Exception, action: str, what: str) -> RunnerError:
    """Our error for a failed call: an ApiException, or urllib3's / the OS's connection errors."""
    if isinstance(e, ApiException):
        # The client turns urllib3's SSLError into an ApiException with status 0.
        return _tls_error(e, action, what) if not e.status else translate(e, action, what)
    if isinstance(e, urllib3.exceptions.SSLError):
        return _tls_error(e, action, what)
    return TransientError(f"{action} {what}: connection error: {_reason(e)}")


def translate(e: ApiException, action: str, what: str) -> RunnerError:
    status = int(e.status or 0)
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(e.body) if e.body else {}
        body = parsed if isinstance(parsed, dict) else {}
    except (ValueError, TypeError):
        pass
    message = one_line(str(body.get("message") or e.reason or f"HTTP {status}"))
    reason = str(body.get("reason") or "")
    text = f"{action} {what}: {message}"
    if status == 401:
        return Forbidden(f"{action} {what}: unauthorized (the credentials were rejected)")
    if status == 403:
        return Forbidden(text)
    if status == 404:
        return NotFound(text, status, reason, body.get("details"))
    if status == 409:
        return Conflict(text, status, reason, body.get("details"))
    if status == 422:
        return TemplateError(f"{text} (the rendered object is invalid)")
    if status == 500 and TYPED_PATCH in message:
        # Server-side apply of a field the resource's schema does not declare: final, not a
        # server hiccup to retry.
        return TemplateError(f"{text} (a field of the rendered object is not in the API's schema)")
    if status in TRANSIENT_STATUS:
        return TransientError(text, _retry_after(e))
    return ApiError(text, status, reason, body.get("details"))


def _retry_after(e: ApiException) -> float | None:
    value = (e.headers or {}).get("Retry-After")
    try:
        return min(float(value), RETRY_AFTER_CAP) if value is not None else None
    except ValueError:
        return None


def _tls_error(e: Exception, action: str, what: str) -> RunnerError:
    if _certificate_rejected(e):
        cause = one_line(str(e.__context__ or e))
        return InvalidInput(f"{action} {what}: the API server's certificate was rejected: {cause}")
    # A handshake cut short (EOF) is what a load balancer in front of a down apiserver does:
    # a connection error like any other.
    return TransientError(f"{action} {what}: TLS error: {one_line(str(e))}")


def _certificate_rejected(e: BaseException) -> bool:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if any(isinstance(a, ssl.SSLCertVerificationError) for a in seen.args):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(e: Exception) -> str:
    inner = getattr(e, "reason", None)
    return f"{type(e).__name__}: {inner or e}"
