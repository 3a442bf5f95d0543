"""Every error of the API answered the same way: a FHIR OperationOutcome with the HTTP status
that the `LiaisonError` (or FastAPI's own error) carries."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from adapter import metrics
from adapter.api.html_pages import error_page
from adapter.api.page_access import csrf_token
from adapter.errors import LiaisonError, RefusedLetter, operation_outcome

logger = logging.getLogger("liaison.api")
FHIR_JSON = "application/fhir+json"

_HTTP_ISSUE_CODES = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
}


def outcome_response(
    status: int, outcome: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(outcome, status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_of(error: LiaisonError) -> dict[str, Any]:
    """The error's OperationOutcome, followed by the detailed issues it carries (validation)."""
    outcome = error.operation_outcome()
    detailed = error.details.get("outcome") if error.details else None
    if isinstance(detailed, dict):
        outcome["issue"].extend(detailed.get("issue", []))
    return outcome


async def _liaison_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, LiaisonError)
    if isinstance(error, RefusedLetter) and request.url.path.startswith("/discharge-letters"):
        metrics.LETTERS_REFUSED.labels(status=str(error.http_status)).inc()
    if getattr(request.state, "html_errors", False):  # a person in a browser (page_access)
        return error_page(error, logout_csrf=csrf_token(request))
    headers = {"WWW-Authenticate": "Bearer"} if error.http_status == 401 else None
    return outcome_response(error.http_status, outcome_of(error), headers)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = _HTTP_ISSUE_CODES.get(error.status_code, "exception")
    return outcome_response(
        error.status_code,
        operation_outcome(str(error.detail), code=code),
        dict(error.headers) if error.headers else None,
    )


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    )
    return outcome_response(400, operation_outcome(problems or "invalid request", code="invalid"))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # The message may quote the letter: the log keeps the type and the place only.
    logger.error("unexpected %s on %s %s", type(error).__name__, request.method, request.url.path)
    return outcome_response(500, operation_outcome("internal error", code="exception"))


class _UnexpectedErrors:
    """Answers an unexpected exception with the 500 OperationOutcome itself. Starlette's own
    handler for `Exception` answers and then re-raises, so the server logs the traceback with
    the exception's message — which may quote the letter or the patient."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            logger.error("unexpected %s on %s %s", type(error).__name__, scope.get("method"),
                         scope.get("path"))
            if not started:
                answer = outcome_response(500, operation_outcome("internal error"))
                await answer(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LiaisonError, _liaison_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(_UnexpectedErrors)
