"""The FHIR R4 REST endpoint of the shared record (`/fhir`), JSON only.

Routes stay thin: they parse HTTP (headers, body, query), call the Repository and shape the
answer. Every error leaves as an OperationOutcome with its status, wherever the router is
mounted (the route class translates errors itself), and every interaction is audited.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from adapter.api.bodies import read_capped
from adapter.api.read_admission import Busy, admission_of
from adapter.auth import Principal
from adapter.auth.dependency import current_principal
from adapter.config import get_settings
from adapter.errors import (
    BadRequest,
    LiaisonError,
    NotAcceptable,
    UnsupportedMediaType,
    operation_outcome,
)
from adapter.record import audit
from adapter.record.capability import capability_statement
from adapter.record.repository import Repository
from adapter.record.transaction import Result, parse_criteria

log = logging.getLogger("liaison.record")
FHIR_JSON = "application/fhir+json"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_XML_ONLY = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")


class FhirResponse(Response):
    media_type = "application/fhir+json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return b"" if content is None else orjson.dumps(content)


def outcome_response(error: LiaisonError) -> FhirResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="liaison"'} if error.http_status == 401 else None
    return FhirResponse(error.operation_outcome(), status_code=error.http_status, headers=headers)


class FhirRoute(APIRoute):
    """Translates liaison errors (including those of dependencies) into OperationOutcomes and
    writes one audit row per interaction."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        action = self.name
        # an endpoint of the request alone leaves FastAPI nothing to inject or convert: called
        # as it is, a pull skips the dependency machinery, a good part of what it costs
        call = self.endpoint if _takes_request_only(self.endpoint, self.dependant) else original

        async def handler(request: Request) -> Response:
            audited = action != "capabilities"
            try:
                if request.method in ("GET", "HEAD"):
                    async with admission_of(request.app).slot():
                        response = await call(request)
                else:
                    response = await call(request)
            except Busy as busy:
                # turned away before anything was read or the caller identified: no audit
                # row (under load it would cost a write per refusal, as much as a read)
                audited = False
                response = FhirResponse(
                    operation_outcome(str(busy), code="throttled"), status_code=503,
                    headers={"Retry-After": str(busy.retry_after)})
            except LiaisonError as error:
                response = outcome_response(error)
            except RequestValidationError as error:
                message = "; ".join(str(e.get("msg")) for e in error.errors()[:3])
                response = outcome_response(BadRequest(f"invalid request: {message}"))
            except OperationalError as error:  # database locked or unreachable: retry later
                log.error("record database unavailable during %s: %s", action,
                          error.__class__.__name__)
                response = FhirResponse(
                    operation_outcome("the record database is unavailable", code="transient"),
                    status_code=503, headers={"Retry-After": "5"})
            except Exception as error:
                # only the class: messages of database errors can carry submitted values
                log.error("unexpected %s during %s", error.__class__.__name__, action)
                response = FhirResponse(
                    operation_outcome("internal error", code="exception"), status_code=500)
            if audited:
                try:  # answered only once its audit row is committed
                    await _audit(request, action, response.status_code)
                except Exception:
                    response = FhirResponse(operation_outcome(
                        "the audit trail is unavailable", code="transient"),
                        status_code=503, headers={"Retry-After": "5"})
            return response

        return handler


def _takes_request_only(endpoint: Callable[..., Any], dependant: Any) -> bool:
    parameters = list(inspect.signature(endpoint).parameters)
    return parameters == [dependant.request_param_name] and not dependant.dependencies


# Reads leave the event loop for threads of their own: anyio's thread hop (run_in_threadpool)
# costs several times the loop's own, and a pull that finds nothing new is mostly overhead.
# The read admission bounds how many run at once; the pool only needs as many threads.
@functools.cache
def _read_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(32, get_settings().read_concurrency),
                              thread_name_prefix="record-read")


async def _read_in_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(
        _read_threads(), functools.partial(call, *args, **kwargs))


async def _audit(request: Request, action: str, status: int) -> None:
    path = request.path_params
    await audit.record(
        _repository(request).engine,
        getattr(request.state, "principal", None) or _ANONYMOUS,
        getattr(request.state, "audit_action", None) or action,
        resource_type=path.get("resource_type"),
        resource_id=path.get("resource_id") or getattr(request.state, "audit_id", None),
        outcome=status,
        result_count=getattr(request.state, "audit_count", None),
    )


router = APIRouter(prefix="/fhir", route_class=FhirRoute, tags=["FHIR record"])
_ANONYMOUS = Principal(kind="anonymous")


def _repository(request: Request) -> Repository:
    repository = getattr(request.app.state, "record_repository", None)
    if repository is None:
        repository = Repository()
        request.app.state.record_repository = repository
    return repository


async def _principal(request: Request) -> Principal:
    # async: verifying a signature is quick, and a sync dependency would cost a thread hop
    principal = current_principal(request)
    request.state.principal = principal
    return principal


def _base_url(request: Request) -> str:
    """The record's base URL as the caller reached it. Finding a route by name walks the
    app's routers, at each request else: it is remembered per app and server address."""
    served = str(request.base_url)
    known: dict[str, str] | None = getattr(request.app.state, "record_bases", None)
    if known is None:
        known = request.app.state.record_bases = {}
    base = known.get(served)
    if base is None:
        base = str(request.url_for("capabilities")).removesuffix("/metadata")
        if len(known) < _BASES_KEPT:  # the Host header is the caller's: bounded
            known[served] = base
    return base


_BASES_KEPT = 64


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept", "")
    wanted = [part.split(";")[0].strip() for part in accept.split(",") if part.strip()]
    if wanted and all(w in _XML_ONLY for w in wanted):
        raise NotAcceptable("this server speaks FHIR JSON only (application/fhir+json)")
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", *_JSON_TYPES):
        raise NotAcceptable("this server speaks FHIR JSON only (_format=json)")


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", FHIR_JSON).split(";")[0].strip()
    if content_type not in _JSON_TYPES:
        raise UnsupportedMediaType(f"send {FHIR_JSON}, not {content_type}")
    body = await read_capped(request, get_settings().max_letter_bytes)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not JSON ({error.msg})") from None
    if _deeper_than(parsed, MAX_JSON_DEPTH):
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    return parsed


# FHIR resources nest a few tens of levels at most (contained, extensions of extensions);
# what goes deeper is refused before any code walks it recursively.
MAX_JSON_DEPTH = 64


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` levels of arrays and objects (iterative)."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(
            node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children
                       if isinstance(child, dict | list))
    return False


def _prefer(request: Request, key: str) -> str | None:
    for part in request.headers.get("prefer", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip() == key:
            return value.strip().strip('"')
    return None


def _written(request: Request, result: Result) -> FhirResponse:
    base = _base_url(request)
    request.state.audit_id = result.resource_id
    headers = {"ETag": f'W/"{result.version}"',
               "Location": f"{base}/{result.resource_type}/{result.resource_id}"
                           f"/_history/{result.version}"}
    if result.last_updated:
        headers["Last-Modified"] = _http_date(result.last_updated)
    prefer = _prefer(request, "return")
    if prefer == "minimal":
        return FhirResponse(None, status_code=result.status, headers=headers)
    if prefer == "OperationOutcome":
        outcome = {"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": "created" if result.status == 201 else "stored"}]}
        return FhirResponse(outcome, status_code=result.status, headers=headers)
    return FhirResponse(result.resource, status_code=result.status, headers=headers)


def _http_date(instant: str) -> str:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _resource_response(resource: dict[str, Any]) -> FhirResponse:
    meta = resource.get("meta") or {}
    headers = {}
    if meta.get("versionId"):
        headers["ETag"] = f'W/"{meta["versionId"]}"'
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = _http_date(meta["lastUpdated"])
    return FhirResponse(resource, headers=headers)


# --- routes (order matters: literal paths before path parameters) ---------------------------


_statements: dict[str, dict[str, Any]] = {}


@router.get("/metadata", name="capabilities")
async def capabilities(request: Request) -> FhirResponse:
    _check_accept(request)
    base = _base_url(request)
    if base not in _statements:
        _statements[base] = await run_in_threadpool(capability_statement, base)
    return FhirResponse(_statements[base])


@router.get("/_history", name="changes")
async def changes(request: Request) -> FhirResponse:
    """The change feed (system history): what changed for the caller, each change once.
    `_cursor` (from the `resume` or `next` link), or `_since` (an instant, first pull only),
    `_type` (comma list), `_count`."""
    principal = await _principal(request)
    _check_accept(request)
    query = request.query_params
    types = tuple(t for t in (query.get("_type") or "").split(",") if t)
    count = _count(query.get("_count"))
    page = await _read_in_thread(
        _repository(request).changes, principal, cursor=query.get("_cursor"),
        since=query.get("_since"), types=types, count=count, base_url=_base_url(request))
    request.state.audit_count = len(page["entry"])
    return FhirResponse(page)


def _count(value: str | None) -> int:
    if value is None:
        return 100
    if not value.isdigit() or int(value) < 1:
        raise BadRequest("_count must be a positive number")
    return min(int(value), get_settings().max_page_size)


@router.post("", name="bundle")
@router.post("/", name="bundle", include_in_schema=False)
async def bundle(request: Request, principal: Principal = Depends(_principal)) -> Response:
    """transaction / batch Bundles; the registered bundle interceptors are asked first."""
    _check_accept(request)
    submitted = await _json_body(request)
    for interceptor in getattr(request.app.state, "bundle_interceptors", None) or []:
        if inspect.iscoroutinefunction(interceptor):
            answer = await interceptor(submitted, principal)
        else:
            answer = await run_in_threadpool(interceptor, submitted, principal)
            if inspect.isawaitable(answer):
                answer = await answer
        if answer is not None:
            request.state.audit_action = "intercepted"
            return answer
    if isinstance(submitted, dict):
        request.state.audit_action = str(submitted.get("type") or "bundle")
        request.state.audit_count = len(submitted.get("entry") or [])
    representation = _prefer(request, "return") == "representation"
    answer = await run_in_threadpool(
        _repository(request).transaction, submitted, principal,
        base_url=_base_url(request), return_resources=representation,
    )
    return FhirResponse(answer)


async def _search(request: Request, resource_type: str, principal: Principal,
                  params: list[tuple[str, str]]) -> FhirResponse:
    _check_accept(request)
    lenient = _prefer(request, "handling") == "lenient"
    found = await _read_in_thread(
        _repository(request).search, resource_type, params, principal,
        lenient=lenient, base_url=_base_url(request),
    )
    request.state.audit_count = len(found.get("entry") or []) if "entry" in found else found.get(
        "total")
    return FhirResponse(found)


@router.get("/{resource_type}", name="search")
async def search_type(resource_type: str, request: Request,
                      principal: Principal = Depends(_principal)) -> FhirResponse:
    return await _search(request, resource_type, principal, request.query_params.multi_items())


@router.post("/{resource_type}/_search", name="search")
async def search_post(resource_type: str, request: Request,
                      principal: Principal = Depends(_principal)) -> FhirResponse:
    form = await request.form()
    params = [*request.query_params.multi_items(),
              *[(k, str(v)) for k, v in form.multi_items()]]
    return await _search(request, resource_type, principal, params)


@router.get("/{resource_type}/{resource_id}/_history/{version}", name="vread")
async def vread(resource_type: str, resource_id: str, version: str, request: Request,
                principal: Principal = Depends(_principal)) -> FhirResponse:
    _check_accept(request)
    resource = await _read_in_thread(
        _repository(request).vread, resource_type, resource_id, version, principal)
    return _resource_response(resource)


@router.get("/{resource_type}/{resource_id}/_history", name="history")
async def history(resource_type: str, resource_id: str, request: Request,
                  principal: Principal = Depends(_principal)) -> FhirResponse:
    _check_accept(request)
    found = await _read_in_thread(
        _repository(request).history, resource_type, resource_id, principal,
        base_url=_base_url(request))
    return FhirResponse(found)


@router.get("/{resource_type}/{resource_id}", name="read")
async def read(resource_type: str, resource_id: str, request: Request,
               principal: Principal = Depends(_principal)) -> FhirResponse:
    _check_accept(request)
    resource = await _read_in_thread(
        _repository(request).read, resource_type, resource_id, principal)
    return _resource_response(resource)


@router.post("/{resource_type}", name="create")
async def create(resource_type: str, request: Request,
                 principal: Principal = Depends(_principal)) -> FhirResponse:
    _check_accept(request)
    resource = await _json_body(request)
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        raise BadRequest(f"POST /{resource_type} takes a {resource_type} resource")
    # a part that takes some creates itself (the patient's thread: Communications written by
    # the care team) answers first; None: the record's own create
    interceptor = (getattr(request.app.state, "create_interceptors", None) or {}).get(
        resource_type)
    if interceptor is not None:
        taken = await run_in_threadpool(interceptor, resource, principal)
        if taken is not None:
            return _written(request, taken)
    result = await run_in_threadpool(
        lambda: _repository(request).create(
            resource, principal=principal, if_none_exist=request.headers.get("if-none-exist")))
    return _written(request, result)


@router.put("/{resource_type}/{resource_id}", name="update")
async def update(resource_type: str, resource_id: str, request: Request,
                 principal: Principal = Depends(_principal)) -> FhirResponse:
    _check_accept(request)
    resource = await _json_body(request)
    result = await run_in_threadpool(
        lambda: _repository(request).update(
            resource_type, resource_id, resource, principal=principal,
            if_match=request.headers.get("if-match")))
    return _written(request, result)


@router.put("/{resource_type}", name="conditional-update")
async def conditional_update(resource_type: str, request: Request,
                             principal: Principal = Depends(_principal)) -> FhirResponse:
    _check_accept(request)
    resource = await _json_body(request)
    criteria = parse_criteria(request.url.query)
    criteria = [(k, v) for k, v in criteria if k != "_format"]
    result = await run_in_threadpool(
        lambda: _repository(request).conditional_update(
            resource_type, criteria, resource, principal=principal))
    return _written(request, result)


@router.delete("/{resource_type}", name="conditional-delete")
async def conditional_delete(resource_type: str, request: Request,
                             principal: Principal = Depends(_principal)) -> Response:
    criteria = [(k, v) for k, v in parse_criteria(request.url.query) if k != "_format"]
    await run_in_threadpool(lambda: _repository(request).conditional_delete(
        resource_type, criteria, principal=principal))
    return Response(status_code=204)


@router.delete("/{resource_type}/{resource_id}", name="delete")
async def delete(resource_type: str, resource_id: str, request: Request,
                 principal: Principal = Depends(_principal)) -> Response:
    await run_in_threadpool(
        lambda: _repository(request).delete(resource_type, resource_id, principal=principal))
    return Response(status_code=204)
