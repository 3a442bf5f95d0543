"""Where bundles go: a small interface with two implementations, the embedded record
(in-process, through its Repository) and any FHIR R4 server over HTTP.

Every failure is translated into the one hierarchy of `adapter.errors`: `TargetUnavailable`
(worth retrying later) or `TargetRejected` (retrying would get the same answer).
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import parse_qsl

import httpx
import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from adapter.config import Settings
from adapter.errors import (
    LiaisonError,
    TargetError,
    TargetRejected,
    TargetUnavailable,
    operation_outcome,
)
from adapter.push.backoff import parse_retry_after
from adapter.push.oauth import ClientCredentials
from adapter.push.splitting import send_in_chunks

# 409: servers such as HAPI answer it when two conditional creates race; every entry liaison
# sends is conditional, so a resend is harmless, and a lasting conflict still ends `failed`
# after LIAISON_PUSH_MAX_ATTEMPTS.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
FHIR_JSON = "application/fhir+json"


class Target(Protocol):
    """A FHIR server that takes transaction bundles."""

    name: str

    def send(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Send one transaction bundle; return the transaction-response bundle."""
        ...

    def find_ids(self, resource_type: str, query: str) -> list[str]:
        """Ids of the resources a search `query` (as in a conditional URL) matches, at most 2."""
        ...

    def close(self) -> None: ...


def response_locations(response_bundle: dict[str, Any]) -> list[str]:
    """The `response.location` of each entry of a transaction-response, in entry order."""
    return [
        (entry.get("response") or {}).get("location", "")
        for entry in response_bundle.get("entry", [])
    ]


class EmbeddedTarget:
    """liaison's own record, written through its Repository in this process."""

    name = "embedded record"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._repository: Any = None

    def _repo(self) -> Any:
        if self._repository is None:
            from adapter.record.repository import Repository

            self._repository = Repository(self.engine)
        return self._repository

    # Takes `validated=True` for bundles liaison checked against the FHIR models before
    # queueing them: the record then does not check them a second time (see `worker`).
    trusts_validated = True

    def send(self, bundle: dict[str, Any], *, validated: bool = False) -> dict[str, Any]:
        repository = self._repo()
        try:
            return repository.transaction(bundle, validated=validated)
        except LiaisonError as error:
            raise _target_error(error) from error
        except OperationalError as error:
            raise _unavailable() from error

    def send_many(self, bundles: list[dict[str, Any]], *, validated: list[bool] | None = None
                  ) -> list[dict[str, Any] | TargetError]:
        """Several bundles in one record transaction (see `Repository.transactions`): each
        answer is its response bundle, or the error `send` would have raised for it alone."""
        repository = self._repo()
        try:
            answers = repository.transactions(bundles, validated=validated)
        except OperationalError as error:
            raise _unavailable() from error
        return [_target_error(answer) if isinstance(answer, LiaisonError) else answer
                for answer in answers]

    def find_ids(self, resource_type: str, query: str) -> list[str]:
        try:
            found = self._repo().search(resource_type, [*parse_qsl(query), ("_count", "2")])
        except LiaisonError as error:
            raise _target_error(error) from error
        except OperationalError as error:
            raise _unavailable() from error
        return [e["resource"]["id"] for e in found.get("entry") or []
                if (e.get("resource") or {}).get("resourceType") == resource_type]

    def close(self) -> None:
        return None


def _target_error(error: LiaisonError) -> TargetError:
    # A 409 caused by a lost race with a concurrent writer (the record says "retry") succeeds
    # when sent again; parking the letter as failed would need a human.
    raced = isinstance(error.__cause__, IntegrityError)
    kind = TargetUnavailable if (error.http_status in RETRYABLE_STATUSES
                                 or error.http_status >= 500 or raced) else TargetRejected
    translated = kind(error.message, status=error.http_status,
                      outcome=error.operation_outcome())
    translated.__cause__ = error
    return translated


def _unavailable() -> TargetUnavailable:
    """The record database is locked or gone: try again later."""
    message = "the record database is unavailable"
    return TargetUnavailable(message, outcome=operation_outcome(message, code="transient"))


class HttpTarget:
    """Any FHIR R4 server: POST the transaction bundle to its base URL with httpx."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        credentials: ClientCredentials | None = None,
        max_entries: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_entries = max_entries
        self.name = self.base_url
        self.credentials = credentials
        self.client = httpx.Client(timeout=timeout, transport=transport)

    def send(self, bundle: dict[str, Any]) -> dict[str, Any]:
        if self.max_entries and len(bundle.get("entry", [])) > self.max_entries:
            return send_in_chunks(bundle, self.max_entries, self._send_one)
        return self._send_one(bundle)

    def _send_one(self, bundle: dict[str, Any]) -> dict[str, Any]:
        answer = self._exchange("POST", self.base_url, orjson.dumps(bundle))
        if answer.status_code < 300:
            try:
                return answer.json()
            except ValueError as error:
                raise TargetUnavailable(
                    "the target answered success without a JSON bundle", status=answer.status_code
                ) from error
        raise self._refusal(answer, f"{self.base_url} answered {answer.status_code}")

    def find_ids(self, resource_type: str, query: str) -> list[str]:
        url = f"{self.base_url}/{resource_type}?{query}&_count=2&_elements=id"
        answer = self._exchange("GET", url)
        if answer.status_code >= 300:
            raise self._refusal(answer, f"{self.base_url} answered {answer.status_code} to a "
                                        "search")
        return [e["resource"]["id"] for e in answer.json().get("entry") or []
                if (e.get("resource") or {}).get("resourceType") == resource_type]

    def _exchange(self, method: str, url: str, body: bytes | None = None) -> httpx.Response:
        answer = self._request(method, url, body)
        if answer.status_code == 401 and self.credentials is not None:
            # The cached token may have been revoked or expired early: one fresh try.
            self.credentials.invalidate()
            answer = self._request(method, url, body)
        return answer

    @staticmethod
    def _refusal(answer: httpx.Response, message: str) -> TargetError:
        """Worth retrying (408, 429, 5xx: with the server's Retry-After) or not (other 4xx)."""
        outcome = _outcome_of(answer)
        if answer.status_code in RETRYABLE_STATUSES or answer.status_code >= 500:
            return TargetUnavailable(
                message,
                status=answer.status_code,
                outcome=outcome,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            )
        return TargetRejected(message, status=answer.status_code, outcome=outcome)

    def _request(self, method: str, url: str, body: bytes | None = None) -> httpx.Response:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self.credentials is not None:
            headers["Authorization"] = f"Bearer {self.credentials.token()}"
        try:
            return self.client.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            raise TargetUnavailable(
                f"{self.base_url} timed out",
                outcome=operation_outcome(f"{self.base_url} timed out", code="timeout"),
            ) from error
        except httpx.HTTPError as error:
            message = f"{self.base_url} unreachable ({type(error).__name__})"
            raise TargetUnavailable(
                message, outcome=operation_outcome(message, code="transient")
            ) from error

    def close(self) -> None:
        self.client.close()
        if self.credentials is not None:
            self.credentials.close()


def _outcome_of(answer: httpx.Response) -> dict[str, Any]:
    """The target's OperationOutcome, or one wrapping whatever it answered instead."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body
    text = answer.text[:500] if answer.text else answer.reason_phrase
    return operation_outcome(f"HTTP {answer.status_code}: {text}", code="exception")


def credentials_from_settings(settings: Settings) -> ClientCredentials | None:
    if not (settings.target_token_url and settings.target_client_id):
        return None
    return ClientCredentials(
        settings.target_token_url,
        settings.target_client_id,
        scope=settings.target_scope,
        client_secret=settings.target_client_secret,
        private_key=settings.target_private_key,
        timeout=settings.push_timeout_seconds,
    )


def target_from_settings(settings: Settings, engine: Engine) -> Target:
    """`LIAISON_TARGET_URL` when set, else the embedded record."""
    if settings.target_url:
        return HttpTarget(
            settings.target_url,
            timeout=settings.push_timeout_seconds,
            credentials=credentials_from_settings(settings),
            max_entries=settings.target_max_entries,
        )
    return EmbeddedTarget(engine)
