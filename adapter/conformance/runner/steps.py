"""Play one scenario step: build the request, send it, evaluate its assertions."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from fhirpathpy import evaluate

from adapter.conformance.runner.fixtures import Fixtures
from adapter.conformance.runner.results import AssertionResult, Exchange, StepResult
from adapter.conformance.runner.scenarios import Step
from adapter.errors import BadRequest

_KEPT_BODY_CHARS = 20_000
_VARIABLE = re.compile(r"\$\{([\w.-]+)\}")
_HIDDEN_HEADERS = {"authorization", "cookie", "set-cookie"}


@dataclass
class RunContext:
    """State shared by the steps of one scenario."""

    client: httpx.Client
    base: str
    token: str | None
    fixtures: Fixtures
    variables: dict[str, str] = field(default_factory=dict)
    saved: dict[str, Any] = field(default_factory=dict)
    max_entries: int | None = None  # split transactions, as liaison does for capped servers
    tokens: dict[str, str] = field(default_factory=dict)  # other callers' tokens, by name

    def substitute(self, text: str, *, url_encode: bool = False) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.variables:
                raise BadRequest(f"variable ${{{name}}} is not defined at this point")
            found = self.variables[name]
            return quote(found, safe="|:/") if url_encode else found

        return _VARIABLE.sub(value, text)

    def url(self, relative: str) -> str:
        target = self.substitute(relative, url_encode=not relative.startswith("${"))
        if target.startswith(("http://", "https://")):
            return target
        return f"{self.base.rstrip('/')}/{target.lstrip('/')}" if target else self.base

    def fhirpath_environment(self) -> dict[str, Any]:
        return {**self.variables, **self.saved}


def _truncate(text: str) -> str:
    if len(text) <= _KEPT_BODY_CHARS:
        return text
    return text[:_KEPT_BODY_CHARS] + f"\n… ({len(text) - _KEPT_BODY_CHARS} more characters)"


def _visible(headers: httpx.Headers | dict[str, str]) -> dict[str, str]:
    return {
        name: ("***" if name.lower() in _HIDDEN_HEADERS else value)
        for name, value in headers.items()
    }


def _body(spec: dict[str, Any] | None, context: RunContext) -> tuple[bytes | None, str | None]:
    if spec is None:
        return None, None
    if "fixture" in spec:
        fixture = context.fixtures.get(spec["fixture"])
        return fixture.content, spec.get("content_type", fixture.content_type)
    if "json" in spec:
        text = context.substitute(json.dumps(spec["json"], ensure_ascii=False))
        return text.encode("utf-8"), spec.get("content_type", "application/fhir+json")
    if "text" in spec:
        text = context.substitute(str(spec["text"]))
        return text.encode("utf-8"), spec.get("content_type", "text/plain")
    if "resource" in spec:  # a resource built by the runner itself: sent as is
        return json.dumps(spec["resource"]).encode("utf-8"), "application/fhir+json"
    if "saved" in spec:
        resource = dict(context.saved[spec["saved"]])
        resource.update(json.loads(context.substitute(json.dumps(spec.get("merge") or {}))))
        return json.dumps(resource).encode("utf-8"), "application/fhir+json"
    raise BadRequest(f"unknown body {sorted(spec)}: use fixture, json, text or saved")


def send(context: RunContext, request: dict[str, Any]) -> tuple[Exchange, httpx.Response | None]:
    method = request.get("method", "GET").upper()
    url = context.url(str(request.get("url", "")))
    content, content_type = _body(request.get("body"), context)
    headers = {"Accept": "application/fhir+json"}
    if content_type:
        headers["Content-Type"] = content_type
    caller = request.get("auth", True)
    token = context.tokens.get(caller) if isinstance(caller, str) else (
        context.token if caller else None)
    if isinstance(caller, str) and token is None:
        raise BadRequest(f"this scenario calls as {caller!r}: give its token with "
                         f"--as {caller}=TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for name, value in (request.get("headers") or {}).items():
        headers[name] = context.substitute(str(value))
    exchange = Exchange(
        method=method,
        url=url,
        request_headers=_visible(headers),
        request_body=_truncate(content.decode("utf-8", "replace")) if content else "",
    )
    try:
        response = context.client.request(method, url, content=content, headers=headers)
    except httpx.HTTPError as error:
        exchange.error = f"{type(error).__name__}: {error}"
        return exchange, None
    exchange.status = response.status_code
    exchange.response_headers = _visible(response.headers)
    exchange.response_body = _truncate(response.text)
    return exchange, response


def response_json(response: httpx.Response | None) -> Any:
    if response is None:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def fhirpath_true(body: Any, expression: str, context: RunContext) -> tuple[bool, str]:
    """Evaluate a boolean FHIRPath on a body; pass only on exactly `true`."""
    if not isinstance(body, dict):
        return False, "the response body is not a JSON resource"
    try:
        result = evaluate(body, expression, context.fhirpath_environment())
    except Exception as error:  # fhirpathpy raises bare Exceptions on evaluation errors
        return False, f"FHIRPath error: {error}"
    return result == [True], f"evaluated to {json.dumps(result, default=str)[:300]}"


def _check(spec: dict[str, Any], response: httpx.Response | None, context: RunContext
           ) -> AssertionResult:
    description = spec.get("description")
    if response is None:
        return AssertionResult(description or "a response", False, "no response")
    body = response_json(response)
    if "status" in spec:
        expected = spec["status"] if isinstance(spec["status"], list) else [spec["status"]]
        return AssertionResult(
            description or f"status is {' or '.join(map(str, expected))}",
            response.status_code in expected,
            f"got {response.status_code}",
        )
    if "header" in spec:
        name = spec["header"]
        value = response.headers.get(name)
        if spec.get("absent"):
            return AssertionResult(description or f"no {name} header", value is None,
                                   f"{name}: {value}")
        if value is None:
            return AssertionResult(description or f"header {name}", False, f"no {name} header")
        pattern = spec.get("matches")
        if pattern and not re.search(context.substitute(pattern), value):
            return AssertionResult(description or f"{name} matches {pattern}", False,
                                   f"{name}: {value}")
        return AssertionResult(description or f"header {name}", True, f"{name}: {value}")
    if "resource" in spec:
        found = body.get("resourceType") if isinstance(body, dict) else None
        return AssertionResult(
            description or f"body is a {spec['resource']}", found == spec["resource"],
            f"got {found or 'no FHIR resource'}",
        )
    if "operation_outcome" in spec:
        issues = body.get("issue", []) if isinstance(body, dict) else []
        ok = (
            isinstance(body, dict)
            and body.get("resourceType") == "OperationOutcome"
            and any(issue.get("severity") in ("error", "fatal") and issue.get("code")
                    for issue in issues)
        )
        found = body.get("resourceType") if isinstance(body, dict) else "no FHIR resource"
        return AssertionResult(
            description or "body is an OperationOutcome with an error issue", ok, f"got {found}"
        )
    if "fhirpath" in spec:
        passed, detail = fhirpath_true(body, context.substitute(spec["fhirpath"]), context)
        return AssertionResult(description or spec["fhirpath"], passed, detail)
    raise BadRequest(f"unknown assertion {sorted(spec)}")


def _capture(step: Step, response: httpx.Response | None, context: RunContext) -> list[str]:
    problems: list[str] = []
    body = response_json(response)
    if step.save and isinstance(body, dict):
        context.saved[step.save] = body
    for name, expression in step.capture.items():
        try:
            values = evaluate(body, expression, context.fhirpath_environment()) if body else []
        except Exception as error:  # fhirpathpy raises bare Exceptions
            values, problems = [], [*problems, f"capture {name}: {error}"]
        if values:
            context.variables[name] = str(values[0])
        else:
            problems.append(f"capture {name}: {expression} found nothing")
    for name, header in step.capture_header.items():
        value = response.headers.get(header) if response is not None else None
        if value is None:
            problems.append(f"capture {name}: no {header} header")
        else:
            context.variables[name] = value
    return problems


def _poll(
    step: Step,
    context: RunContext,
    exchange: Exchange,
    response: httpx.Response | None,
    result: StepResult,
) -> tuple[Exchange, httpx.Response | None]:
    """Repeat the request until the `until` FHIRPath holds (asynchronous pushes) or time is up."""
    assert step.poll is not None
    timeout = float(step.poll.get("timeout", 10))
    deadline = time.monotonic() + timeout
    tries = 1
    while not fhirpath_true(response_json(response), step.poll["until"], context)[0]:
        if time.monotonic() >= deadline:
            result.assertions.append(AssertionResult(
                f"within {timeout:g} s: {step.poll['until']}", False,
                f"still not true after {tries} requests"))
            break
        time.sleep(float(step.poll.get("interval", 0.25)))
        exchange, response = send(context, step.request or {})
        tries += 1
    return exchange, response


class _ChunkRefused(Exception):
    def __init__(self, exchange: Exchange, response: httpx.Response | None) -> None:
        super().__init__("a chunk of the transaction was refused")
        self.exchange = exchange
        self.response = response


def send_split(context: RunContext, request: dict[str, Any]
               ) -> tuple[Exchange, httpx.Response | None]:
    """POST a transaction fixture as liaison's pusher does for a server capping transaction size
    (`target_max_entries`): chunks of at most `max_entries`, references to earlier chunks
    rewritten; answers one combined transaction-response (or the first refused chunk)."""
    from adapter.push.splitting import send_in_chunks

    content, _ = _body(request.get("body"), context)
    bundle = json.loads(content or b"{}")
    chunks: list[Exchange] = []

    def post(chunk: dict[str, Any]) -> dict[str, Any]:
        exchange, response = send(context, {**request, "body": {"resource": chunk}})
        chunks.append(exchange)
        if response is None or response.status_code != 200:
            raise _ChunkRefused(exchange, response)
        return response_json(response) or {}

    assert context.max_entries is not None
    try:
        combined = send_in_chunks(bundle, context.max_entries, post)
    except _ChunkRefused as refused:
        refused.exchange.request_body = (
            f"(chunk {len(chunks)} of a transaction split by {context.max_entries})\n"
            + refused.exchange.request_body
        )
        return refused.exchange, refused.response
    response = httpx.Response(200, json=combined)
    exchange = Exchange(
        method="POST",
        url=chunks[-1].url if chunks else context.url(str(request.get("url", ""))),
        request_headers=chunks[-1].request_headers if chunks else {},
        request_body=f"{len(bundle.get('entry', []))} entries sent as {len(chunks)} "
        f"transactions of at most {context.max_entries}",
        status=200,
        response_headers={"content-type": "application/fhir+json"},
        response_body=_truncate(json.dumps(combined)),
    )
    return exchange, response


def run_request(step: Step, phase: str, context: RunContext) -> StepResult:
    """A step that sends a request: its exchange, the assertions on the answer, the captures."""
    result = StepResult(name=step.name, phase=phase)
    try:
        assert step.request is not None
        split = bool(step.options.get("split")) and context.max_entries is not None
        exchange, response = (send_split if split else send)(context, step.request)
        if step.poll:
            exchange, response = _poll(step, context, exchange, response, result)
        result.exchanges.append(exchange)
        if exchange.error:
            result.error = exchange.error
            return result
        result.assertions.extend(_check(spec, response, context) for spec in step.asserts)
        for problem in _capture(step, response, context):
            result.assertions.append(AssertionResult("capture a value for later steps", False,
                                                     problem))
    except BadRequest as error:
        result.error = error.message
    return result
