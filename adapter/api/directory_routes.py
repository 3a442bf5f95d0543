"""The directory as its own read-only FHIR endpoint: /annuaire/fhir/{Practitioner,
PractitionerRole,Organization}, searchset Bundles paged with _count / _offset.

Supported search parameters: Practitioner `identifier`, `name` (starts-with on any name part),
`name:contains`, `family`; PractitionerRole `specialty`, `address-postalcode`, `role`,
`practitioner`, `organization`, `identifier` (of the professional); Organization `identifier`,
`name`, `name:contains`, `address-postalcode`. Unknown parameters are refused with an
OperationOutcome rather than silently ignored, so a client never mistakes a wider result for
the one it asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapter.auth.dependency import bearer_token, current_principal
from adapter.config import Settings, get_settings
from adapter.directory import fhir
from adapter.directory.search import (
    NATIONAL,
    Criteria,
    Match,
    Page,
    mailboxes,
    mailboxes_of,
    organizations,
    practitioners,
    roles,
    search_organizations,
    search_practitioners,
    search_roles,
)
from adapter.errors import BadRequest, LiaisonError, NotFound
from adapter.store.db import get_engine

router = APIRouter(prefix="/annuaire/fhir", tags=["directory"])
FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 20
PAGING = {"_count", "_offset", "_format"}
PARAMETERS = {
    "Practitioner": {"identifier", "name", "name:contains", "family", "_id"},
    "PractitionerRole": {
        "specialty",
        "address-postalcode",
        "role",
        "practitioner",
        "organization",
        "identifier",
        "_id",
    },
    "Organization": {"identifier", "name", "name:contains", "address-postalcode", "_id"},
}


def _engine(request: Request) -> Engine:
    engine = getattr(request.app.state, "directory_engine", None)
    return engine if engine is not None else get_engine()


def _fhir(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def _outcome(error: LiaisonError) -> JSONResponse:
    return _fhir(error.operation_outcome(), error.http_status)


def _settings(request: Request) -> Settings:
    return getattr(request.app.state, "settings", None) or get_settings()


def public_only(request: Request) -> bool:
    """Whether the caller gets the public national subset only: a call without a token, when
    `LIAISON_ANNUAIRE_PUBLIC` allows it. Otherwise a valid bearer token is required (the
    directory holds MSSanté addresses and local lists that are not public)."""
    settings = _settings(request)
    if bearer_token(request) is None and settings.annuaire_public:
        return True
    current_principal(request)  # 401 without a valid token (when auth is required)
    return False


def _params(request: Request, kind: str) -> tuple[dict[str, str], int, int]:
    given = dict(request.query_params)
    unknown = sorted(set(given) - PARAMETERS[kind] - PAGING)
    if unknown:
        raise BadRequest(f"{kind} search does not support {', '.join(unknown)}")
    try:
        count = int(given.get("_count", DEFAULT_COUNT))
        offset = int(given.get("_offset", 0))
    except ValueError:
        raise BadRequest("_count and _offset must be integers") from None
    # a larger page than the maximum is served as the maximum (FHIR lets a server give fewer)
    return given, min(count, _settings(request).max_page_size), offset


def _bundle(
    request: Request, page: Page, entries: list[dict[str, Any]], count: int, offset: int
) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + request.url.path
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_count", "_offset")]

    def link(relation: str, at: int) -> dict[str, str]:
        return {
            "relation": relation,
            "url": f"{base}?{urlencode([*kept, ('_count', count), ('_offset', at)])}",
        }

    links = [link("self", offset)]
    if offset + count < page.total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    resource_base = str(request.base_url).rstrip("/") + router.prefix
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{resource_base}/{entry['resourceType']}/{entry['id']}",
                "resource": entry,
                "search": {"mode": "match"},
            }
            for entry in entries
        ],
    }


def _guarded(handler: Callable[[Request], dict[str, Any]]) -> Callable[..., Any]:
    def endpoint(request: Request) -> JSONResponse:
        try:
            return _fhir(handler(request))
        except LiaisonError as error:
            return _outcome(error)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _practitioner_search(request: Request) -> dict[str, Any]:
    """Search professionals (Practitioner)."""
    public = public_only(request)
    given, count, offset = _params(request, "Practitioner")
    criteria = Criteria(identifier=given.get("identifier") or given.get("_id"),
                        national_only=public)
    if "name:contains" in given:
        criteria.name, criteria.name_mode = given["name:contains"], "contains"
    elif "name" in given or "family" in given:
        criteria.name, criteria.name_mode = given.get("name") or given["family"], "starts"
    engine = _engine(request)
    page = search_practitioners(engine, criteria, limit=count, offset=offset)
    with engine.connect() as connection:
        boxes = {} if public else mailboxes_of(connection, [row.idnat for row in page.items])
    entries = [fhir.practitioner_resource(row, boxes.get(row.idnat, [])) for row in page.items]
    return _bundle(request, page, entries, count, offset)


def _role_search(request: Request) -> dict[str, Any]:
    """Search activities (PractitionerRole) by specialty, postcode, local role…"""
    public = public_only(request)
    given, count, offset = _params(request, "PractitionerRole")
    practitioner = given.get("practitioner", "").removeprefix("Practitioner/") or None
    organization = given.get("organization", "").removeprefix("Organization/") or None
    criteria = Criteria(
        identifier=given.get("identifier") or practitioner,
        specialty=given.get("specialty"),
        postcode=given.get("address-postalcode"),
        role=given.get("role"),
        organization=organization,
        national_only=public,
    )
    if "_id" in given:
        row_id = given["_id"].removeprefix("role-")
        if not row_id.isdigit():
            raise BadRequest(f"no PractitionerRole has id {given['_id']!r}")
        page = _role_by_id(_engine(request), int(row_id), public)
        return _bundle(
            request,
            page,
            [fhir.role_resource(r.role, r.practitioner) for r in page.items],
            count,
            offset,
        )
    page = search_roles(_engine(request), criteria, limit=count, offset=offset)
    entries = [fhir.role_resource(match.role, match.practitioner) for match in page.items]
    return _bundle(request, page, entries, count, offset)


def _organization_search(request: Request) -> dict[str, Any]:
    """Search structures (Organization)."""
    public = public_only(request)
    given, count, offset = _params(request, "Organization")
    name = given.get("name:contains") or given.get("name")
    engine = _engine(request)
    page = search_organizations(
        engine,
        identifier=given.get("identifier") or given.get("_id"),
        name=name,
        postcode=given.get("address-postalcode"),
        national_only=public,
        limit=count,
        offset=offset,
    )
    entries = [
        fhir.organization_resource(row, [] if public else _org_mailboxes(engine, row.idnat_struct))
        for row in page.items
    ]
    return _bundle(request, page, entries, count, offset)


def _role_by_id(engine: Engine, row_id: int, public: bool) -> Page:
    with engine.connect() as connection:
        role = connection.execute(select(roles).where(roles.c.id == row_id)).first()
        if role is None or (public and role.source != NATIONAL):
            return Page(0, [])
        person = connection.execute(
            select(practitioners).where(practitioners.c.idnat == role.practitioner_idnat)
        ).first()
    return Page(1, [Match(person, role)])


def _org_mailboxes(engine: Engine, idnat_struct: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(mailboxes).where(
                    mailboxes.c.organization_idnat == idnat_struct,
                    mailboxes.c.practitioner_idnat.is_(None),
                    mailboxes.c.active.is_(True),
                )
            ).all()
        )


router.add_api_route("/Practitioner", _guarded(_practitioner_search), methods=["GET"])
router.add_api_route("/PractitionerRole", _guarded(_role_search), methods=["GET"])
router.add_api_route("/Organization", _guarded(_organization_search), methods=["GET"])


def _read_practitioner(request: Request) -> dict[str, Any]:
    public = public_only(request)
    resource_id = request.path_params["resource_id"]
    with _engine(request).connect() as connection:
        row = connection.execute(
            select(practitioners).where(practitioners.c.idnat == resource_id)
        ).first()
        if row is None or (public and row.source != NATIONAL):
            raise NotFound(f"Practitioner/{resource_id} is not in the directory")
        boxes = [] if public else mailboxes_of(connection, [row.idnat]).get(row.idnat, [])
    return fhir.practitioner_resource(row, boxes)


def _read_practitioner_role(request: Request) -> dict[str, Any]:
    public = public_only(request)
    resource_id = request.path_params["resource_id"]
    row_id = resource_id.removeprefix("role-")
    page = _role_by_id(_engine(request), int(row_id), public) if row_id.isdigit() \
        else Page(0, [])
    if not page.items:
        raise NotFound(f"PractitionerRole/{resource_id} is not in the directory")
    match = page.items[0]
    return fhir.role_resource(match.role, match.practitioner)


def _read_organization(request: Request) -> dict[str, Any]:
    public = public_only(request)
    resource_id = request.path_params["resource_id"]
    engine = _engine(request)
    with engine.connect() as connection:
        row = connection.execute(
            select(organizations).where(organizations.c.idnat_struct == resource_id)
        ).first()
    if row is None or (public and row.source != NATIONAL):
        raise NotFound(f"Organization/{resource_id} is not in the directory")
    return fhir.organization_resource(row, [] if public else _org_mailboxes(engine, resource_id))


router.add_api_route("/Practitioner/{resource_id}", _guarded(_read_practitioner),
                     methods=["GET"])
router.add_api_route("/PractitionerRole/{resource_id}", _guarded(_read_practitioner_role),
                     methods=["GET"])
router.add_api_route("/Organization/{resource_id}", _guarded(_read_organization),
                     methods=["GET"])


def create_directory_app(engine: Engine | None = None) -> Any:
    """A standalone app serving only the directory (tests, or a directory-only deployment)."""
    from fastapi import FastAPI

    app = FastAPI(title="liaison directory")
    app.state.directory_engine = engine
    app.include_router(router)
    return app
