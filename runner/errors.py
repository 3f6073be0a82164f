"""The runner's own error tree, split by what the caller should do.

Each class carries the exit code the CLI returns for it (the contract in docs/design.md and
the README). The HTTP library's exceptions never leak past runner.kube: they are translated
into these, naming the action and the object.
"""

from __future__ import annotations

from runner.logs import one_line, redact


class RunnerError(Exception):
    """A known failure: one line for the user, a documented exit code."""

    exit_code = 1


class InternalError(RunnerError):
    """Something the runner did not expect (a bug or an unexpected API answer)."""

    exit_code = 1

    @classmethod
    def unexpected(cls, where: str, e: BaseException) -> InternalError:
        """The last resort for an exception nobody expected: its type and its message on one
        line, redacted (an HTTP library's message can quote a whole request header)."""
        return cls(f"{where}: unexpected {type(e).__name__}: {redact(one_line(e))}")


class InvalidInput(RunnerError):
    """Bad user name, unknown step, missing cluster configuration: retrying cannot help."""

    exit_code = 2


class TemplateError(RunnerError):
    """A template or parameter is malformed, unknown or renders an invalid object."""

    exit_code = 3


class Forbidden(RunnerError):
    """The identity lacks a permission (403) or is not authenticated (401)."""

    exit_code = 4


class WaitTimeout(RunnerError):
    """A wait (or the retries of a transient API failure) ran past the step's deadline."""

    exit_code = 5


class FieldConflict(TemplateError):
    """A server-side apply without force met fields another field manager set to other
    values: the template and that manager disagree, and a retry cannot settle it."""

    @classmethod
    def of(cls, e: ApiError, what: str) -> FieldConflict:
        """From the 409's Status: each cause (reason FieldManagerConflict) names a field and,
        in its message, the manager."""
        causes = e.details.get("causes") if isinstance(e.details, dict) else None
        by_manager: dict[str, list[str]] = {}
        for cause in causes if isinstance(causes, list) else []:
            if isinstance(cause, dict) and cause.get("reason") == "FieldManagerConflict":
                manager = _manager(str(cause.get("message") or ""))
                by_manager.setdefault(manager, []).append(str(cause.get("field") or "?"))
        if not by_manager:
            return cls(f"{e}")
        owners = "; ".join(f"{', '.join(f)} owned by {m}" for m, f in by_manager.items())
        return cls(
            f"apply {what}: field(s) set to another value by another field manager: {owners} "
            "(the runner takes no field over here; make the template agree, or remove that "
            "manager's value)"
        )


def _manager(message: str) -> str:
    """'conflict with "kubectl-edit" using v1' -> '"kubectl-edit"' (the message as is, else)."""
    start = message.find('"')
    end = message.find('"', start + 1)
    return message[start : end + 1] if 0 <= start < end else message or "another manager"


class TemporaryCondition(RunnerError):
    """The cluster is in a state that should pass (a write still conflicting after its
    retries, a namespace being deleted): a later run can succeed, so the Job retries."""

    exit_code = 5


class OperatorFailed(RunnerError):
    """An operator reported a terminal failure on an object (CSV Failed, plan Failed ...)."""

    exit_code = 6


class ApiMissing(RunnerError):
    """A required API (usually a CRD) is not served by the cluster."""

    exit_code = 7


class Cancelled(RunnerError):
    """The step stopped because another step of the same run failed."""

    exit_code = 1


class TransientError(RunnerError):
    """Connection error, 429 or 5xx: worth retrying until the deadline."""

    exit_code = 5

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiError(RunnerError):
    """A non-retryable API answer that is none of the above (400, 405, unexpected 404 ...)."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        status: int = 0,
        reason: str = "",
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.details = details or {}


class NotFound(ApiError):
    """The object (or its namespace) does not exist. Callers that expect this catch it."""


class Conflict(ApiError):
    """409: AlreadyExists on create, or a write conflict."""
