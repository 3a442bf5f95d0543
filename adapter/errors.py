"""One exception hierarchy for liaison, translated the same way by the API, the CLI and the pusher.

Each error carries the HTTP status and the FHIR OperationOutcome issue code it maps to, so the
API answers with an OperationOutcome and the CLI prints one line, from the same object.
"""

from __future__ import annotations

from typing import Any


class LiaisonError(Exception):
    """Base of every error liaison raises on purpose."""

    http_status: int = 500
    issue_code: str = "exception"  # FHIR IssueType

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def operation_outcome(self) -> dict[str, Any]:
        return operation_outcome(self.message, code=self.issue_code)


class RefusedLetter(LiaisonError):
    """An input that is not a discharge letter liaison can take, with one sentence saying why."""

    http_status = 422
    issue_code = "invalid"


class NotXml(RefusedLetter):
    http_status = 400
    issue_code = "structure"


class LetterTooLarge(RefusedLetter):
    http_status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(RefusedLetter):
    http_status = 415
    issue_code = "not-supported"


class NotFound(LiaisonError):
    http_status = 404
    issue_code = "not-found"


class Conflict(LiaisonError):
    http_status = 409
    issue_code = "conflict"


class Misconfigured(LiaisonError):
    """Settings liaison must not serve with (say which, and what to set)."""


class StalePreparation(Conflict):
    """A letter was prepared against a version of its setId that another letter replaced
    before it was stored: it is prepared again (409 only if that keeps happening)."""


class PreconditionFailed(LiaisonError):
    http_status = 412
    issue_code = "conflict"


class InvalidResource(LiaisonError):
    http_status = 422
    issue_code = "invalid"


class BadRequest(LiaisonError):
    http_status = 400
    issue_code = "invalid"


class Unauthorized(LiaisonError):
    http_status = 401
    issue_code = "login"


class Forbidden(LiaisonError):
    http_status = 403
    issue_code = "forbidden"


class LoginFailed(LiaisonError):
    """A person's login at the identity provider that liaison does not accept (the reason is
    for the operator's log; the person is shown a page in French)."""

    http_status = 401
    issue_code = "login"


class TargetError(LiaisonError):
    """The shared record did not take a bundle."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        outcome: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.retry_after = retry_after


class TargetUnavailable(TargetError):
    """Network error, timeout, 408, 429 or 5xx: worth retrying later."""


class TargetRejected(TargetError):
    """A 4xx the target will answer again: retrying is pointless, the entry is parked as failed."""


class ValidatorUnavailable(LiaisonError):
    """The CI-SIS validation artefacts (schema, schematrons) cannot be found or compiled."""

    http_status = 503
    issue_code = "exception"


def operation_outcome(
    message: str, *, code: str = "exception", severity: str = "error", expression: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class Gone(LiaisonError):
    """A resource that existed and was deleted (FHIR read of a deleted resource)."""

    http_status = 410
    issue_code = "deleted"


class NotAcceptable(LiaisonError):
    """The client asked for a representation liaison does not produce (e.g. FHIR XML)."""

    http_status = 406
    issue_code = "not-supported"
