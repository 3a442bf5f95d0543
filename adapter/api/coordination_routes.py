"""HTTP routes of the coordination part (mounted by `adapter.api.app`: `router`, `fhir_router`).

- `POST /coordination/consent` `{ "ins": …, "decision": "oppose" | "withdraw" }`, `GET …?patient=`
- `/fhir/Subscription` (R4 rest-hook; `fhir_router`): create, read, update, delete, search
- `PUT /coordination/availability`, `POST /coordination/availability/csv`,
  `GET /coordination/fhir/PractitionerRole?available-within=24h&skill=…&address-postalcode=…`
- `GET /coordination/audit?letter=…` — why something was or was not shared
- `GET /coordination/page?vue=prevues|semaine|revue|sans-medecin` — the coordinator's page (HTML)
- `POST /coordination/review/{task_id}` — complete a D+7 review (JSON); from the page's form:
  `POST /coordination/page/review/{task_id}` (`checks`, `note`, `csrf`), back to the page
- `POST /coordination/plans/{care_plan_id}/notes` (text), `…/activities/{index}/done`,
  `…/care-team` (idnat, role: a living-directory candidate for a missing role) — the page's
  actions (`coordination.workspace`); a form is answered 303 back to the page, JSON with JSON
- `GET /coordination/letters/{letter_id}` — a received letter to read (HTML)
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from adapter.api.page_access import csrf_token, form_principal, page_principal, signed_in_as
from adapter.auth import Principal
from adapter.auth.dependency import current_principal
from adapter.auth.rules import require_consent_filer
from adapter.config import get_settings
from adapter.coordination import (
    consent,
    living_directory,
    page,
    review,
    subscriptions,
    workspace,
)
from adapter.coordination.rules import load_rules
from adapter.errors import BadRequest, Forbidden
from adapter.ingest.messages import tell
from adapter.mssante.rendering import readable_letter
from adapter.national_ids import ins_systems
from adapter.record.repository import Repository
from adapter.store.coordination_tables import SharingAudit, SubscriptionRecord
from adapter.store.db import get_engine, session_scope

router = APIRouter(prefix="/coordination", tags=["coordination"])
FHIR_JSON = "application/fhir+json"


def _engine(request: Request) -> Any:
    return getattr(request.app.state, "engine", None) or get_engine()


def _patient(body: dict[str, Any]) -> tuple[str, str]:
    if isinstance(body.get("patient"), dict):
        return str(body["patient"].get("system", "")), str(body["patient"].get("value", ""))
    if body.get("ins"):
        return str(body.get("system") or ins_systems()[0]), str(body["ins"])
    raise BadRequest("give the patient as {'ins': …} or {'patient': {'system': …, 'value': …}}")


def _cares_for(engine: Any, principal: Principal, patient: tuple[str, str]) -> bool:
    """Whether the record lets `principal` read this patient (its care team, a hospital that
    sent its letters, a coordinator of its CPTS)."""
    criteria = [("identifier", f"{patient[0]}|{patient[1]}"), ("_summary", "count")]
    return bool(Repository(engine).search("Patient", criteria, principal).get("total"))


def _require_care_of(engine: Any, principal: Principal, patient: tuple[str, str]) -> None:
    """403 unless the record lets `principal` read this patient (system tokens always may)."""
    if principal.kind == "system":
        return
    if not _cares_for(engine, principal, patient):
        raise Forbidden("only the system or those caring for this patient may do this")


def _parse_token(text: str) -> tuple[str, str]:
    system, bar, value = text.rpartition("|")
    return (system if bar else ins_systems()[0]), value


@router.post("/consent", status_code=201, summary="Record or withdraw a patient's opposition")
async def post_consent(
    request: Request,
    body: dict[str, Any] = Body(...),
    principal: Principal = Depends(current_principal),
) -> JSONResponse:
    decision = body.get("decision")
    if decision not in consent.DECISIONS:
        raise BadRequest(f"decision must be one of {consent.DECISIONS}")
    patient = _patient(body)
    reason = str(body.get("reason") or body.get("note") or "").strip()
    if not reason and principal.kind != "system":
        raise BadRequest("say why this consent is filed: 'reason' (e.g. 'patient asked by "
                         "phone on 2026-12-01')")
    engine = _engine(request)
    await run_in_threadpool(require_consent_filer, principal,
                            lambda: _cares_for(engine, principal, patient))
    by = f"{principal.kind}:{principal.actor}" if principal.actor else principal.kind
    resource = await run_in_threadpool(
        lambda: consent.register(engine, patient, str(decision), recorded_by=by, source="api",
                                 note=reason or None))
    return JSONResponse(resource, status_code=201, media_type=FHIR_JSON)


@router.get("/consent", summary="The decision in force for a patient")
def get_consent(
    request: Request,
    patient: str = Query(..., description="system|value, or an INS value"),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    wanted = _parse_token(patient)
    if principal.kind != "hospital":  # a hospital asks before it sends; others must care for them
        _require_care_of(_engine(request), principal, wanted)
    with Session(_engine(request)) as session:
        decision = consent.current_decision(session, [wanted])
    if decision is None:
        return {"decision": None, "opposed": False}
    return {
        "decision": decision.decision,
        "opposed": decision.decision == "oppose",
        "recorded_at": decision.recorded_at.isoformat(),
        "source": decision.source,
    }


# -- Subscriptions -------------------------------------------------------------------------
# Served at the FHIR base (`/fhir/Subscription`), where community software looks for them; the
# app mounts `fhir_router` before the record so these routes answer for the Subscription type.

fhir_router = APIRouter(prefix="/fhir", tags=["subscriptions"])


def _subscription_response(
    record: SubscriptionRecord, status_code: int = 200
) -> JSONResponse:
    resource = subscriptions.as_fhir(record)
    return JSONResponse(
        resource,
        status_code=status_code,
        media_type=FHIR_JSON,
        headers={"Location": f"/fhir/Subscription/{resource['id']}"},
    )


@fhir_router.post("/Subscription", status_code=201, summary="Create a rest-hook Subscription")
def create_subscription(
    request: Request,
    body: dict[str, Any] = Body(...),
    principal: Principal = Depends(current_principal),
) -> JSONResponse:
    with session_scope(_engine(request)) as session:
        record = subscriptions.create(session, body, principal)
        return _subscription_response(record, status_code=201)


def _owned(record: SubscriptionRecord, principal: Principal) -> None:
    if principal.kind == "system":
        return
    if (record.owner_kind, record.owner_idnat) != (principal.kind, principal.idnat):
        raise Forbidden("this Subscription belongs to someone else")


@fhir_router.get("/Subscription/{subscription_id}")
def read_subscription(
    request: Request, subscription_id: str, principal: Principal = Depends(current_principal)
) -> JSONResponse:
    with Session(_engine(request)) as session:
        record = subscriptions.get(session, subscription_id)
        _owned(record, principal)
        return _subscription_response(record)


@fhir_router.put("/Subscription/{subscription_id}")
def update_subscription(
    request: Request,
    subscription_id: str,
    body: dict[str, Any] = Body(...),
    principal: Principal = Depends(current_principal),
) -> JSONResponse:
    with session_scope(_engine(request)) as session:
        _owned(subscriptions.get(session, subscription_id), principal)
        record = subscriptions.replace(session, subscription_id, body, principal)
        return _subscription_response(record)


@fhir_router.get("/Subscription")
def search_subscriptions(
    request: Request, principal: Principal = Depends(current_principal)
) -> JSONResponse:
    wanted = subscriptions.search_filter(list(request.query_params.multi_items()))
    with Session(_engine(request)) as session:
        query = select(SubscriptionRecord)
        if principal.kind != "system":
            query = query.where(SubscriptionRecord.owner_kind == principal.kind).where(
                SubscriptionRecord.owner_idnat == principal.idnat
            )
        records = [r for r in session.exec(query).all() if wanted(r)]
        entries = [
            {"resource": subscriptions.as_fhir(r), "search": {"mode": "match"}} for r in records
        ]
    return JSONResponse(_searchset(entries), media_type=FHIR_JSON)


@fhir_router.delete("/Subscription/{subscription_id}", status_code=204)
def delete_subscription(
    request: Request, subscription_id: str, principal: Principal = Depends(current_principal)
) -> Response:
    with session_scope(_engine(request)) as session:
        _owned(subscriptions.get(session, subscription_id), principal)
        subscriptions.deactivate(session, subscription_id)
    return Response(status_code=204)


# -- Living directory ----------------------------------------------------------------------


def _may_edit(principal: Principal, idnat: str) -> None:
    if principal.kind in ("system", "coordinator"):
        return
    if principal.kind == "professional" and principal.idnat == idnat:
        return
    raise Forbidden("only the professional themselves or a coordinator may change availability")


@router.put("/availability", summary="Set a professional's availability and skills")
def put_availability(
    request: Request,
    body: dict[str, Any] = Body(...),
    principal: Principal = Depends(current_principal),
) -> JSONResponse:
    update = living_directory.AvailabilityUpdate.from_json(body)
    _may_edit(principal, update.identifier[1])
    with session_scope(_engine(request)) as session:
        row = living_directory.save(session, update, principal.actor)
        resource = living_directory.practitioner_role(row, {}, load_rules())
    return JSONResponse(resource, media_type=FHIR_JSON)


@router.post("/availability/csv", summary="Import availabilities from a CSV (coordinators)")
async def post_availability_csv(
    request: Request, principal: Principal = Depends(current_principal)
) -> dict[str, Any]:
    if principal.kind not in ("system", "coordinator"):
        raise Forbidden("only a coordinator may import availabilities")
    text = (await request.body()).decode("utf-8-sig", errors="replace")

    def run() -> tuple[int, list[str]]:
        with session_scope(_engine(request)) as session:
            return living_directory.import_csv(session, text, principal.actor)

    saved, problems = await run_in_threadpool(run)
    return {"saved": saved, "rejected": problems}


@router.get("/fhir/PractitionerRole", summary="Who can take the patient (living directory)")
def search_available(
    request: Request,
    available_within: str | None = Query(None, alias="available-within"),
    skill: list[str] = Query(default_factory=list),
    postcode: str | None = Query(None, alias="address-postalcode"),
    principal: Principal = Depends(current_principal),
) -> JSONResponse:
    roles = living_directory.search(
        _engine(request),
        available_within_hours=living_directory.parse_delay(available_within),
        skills=tuple(skill),
        postcode=postcode,
    )
    entries = [{"resource": r, "search": {"mode": "match"}} for r in roles]
    return JSONResponse(_searchset(entries), media_type=FHIR_JSON)


def _searchset(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset of at most LIAISON_MAX_PAGE_SIZE entries; `total` counts every match."""
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
            "entry": entries[:get_settings().max_page_size]}


# -- Audit and the coordinator's page --------------------------------------------------------


@router.get("/audit", summary="Sharing decisions and their reasons")
def get_audit(
    request: Request,
    letter: str | None = None,
    limit: int = Query(200, le=1000),
    principal: Principal = Depends(current_principal),
) -> list[dict[str, Any]]:
    # The audit names letters and professionals of every hospital: administrators only.
    if principal.kind != "system":
        raise Forbidden("the sharing audit is for administrators (system token)")
    with Session(_engine(request)) as session:
        query = select(SharingAudit).order_by(col(SharingAudit.id).desc()).limit(limit)
        if letter:
            query = query.where(SharingAudit.letter_id == letter)
        rows = session.exec(query).all()
    return [
        {
            "at": row.at.isoformat(),
            "letter": row.letter_id,
            "action": row.action,
            "target": row.target,
            "outcome": row.outcome,
            "reason": row.reason,
        }
        for row in rows
    ]


@router.post("/review/{task_id}", summary="Complete a D+7 review (a coordinator of its CPTS)")
async def complete_review(
    task_id: str,
    request: Request,
    body: dict[str, Any] = Body(...),
    principal: Principal = Depends(current_principal),
) -> JSONResponse:
    """Body: `{"checks": {"gp-appointment": true, …}, "note": "…"}`; answers the Task."""
    repository = Repository(_engine(request))
    result = await run_in_threadpool(lambda: review.complete(
        repository, principal, task_id, body, load_rules(), now=lambda: datetime.now(UTC)))
    return JSONResponse(result.stored(), media_type=FHIR_JSON)


def clock() -> Callable[[], datetime]:
    """What the page and its actions take as now (tests put their own clock here)."""
    return lambda: datetime.now(UTC)


@router.post("/page/review/{task_id}", include_in_schema=False)
async def complete_review_from_the_page(
    task_id: str, request: Request, principal: Principal = Depends(form_principal),
    now: Callable[[], datetime] = Depends(clock),
) -> RedirectResponse:
    """The page's form of a D+7 review: `checks` (each code ticked), `note`; back to the page."""
    form = await request.form()
    answers = {"checks": {str(code): True for code in form.getlist("checks")},
               "note": str(form.get("note") or "")}
    repository = Repository(_engine(request))
    await run_in_threadpool(lambda: review.complete(
        repository, principal, task_id, answers, load_rules(), now=now))
    return RedirectResponse("/coordination/page", status_code=303)


@router.get("/page", response_class=HTMLResponse, summary="The coordinator's page")
def coordinator_page(
    request: Request,
    vue: str | None = Query(None, description="prevues | semaine | revue | sans-medecin"),
    fait: str | None = Query(None, description="the action just done (its confirmation)"),
    principal: Principal = Depends(page_principal),
    now: Callable[[], datetime] = Depends(clock),
) -> HTMLResponse:
    if principal.kind not in ("coordinator", "system"):
        raise Forbidden("the coordinator's page needs a coordinator token")
    if vue is not None and vue not in page.VIEWS:
        raise BadRequest(f"vue is one of {', '.join(page.VIEWS)}")
    engine = _engine(request)
    repository = Repository(engine)
    rules = load_rules()
    found = page.discharges(repository, principal, rules, letters_engine=engine, view=vue,
                            now=now)
    return HTMLResponse(page.render(found, principal, repository, csrf=csrf_token(request),
                                    person=signed_in_as(request), view=vue,
                                    confirmation=page.confirmation(rules, fait), rules=rules))


# -- The page's actions ----------------------------------------------------------------------


async def _fields(request: Request) -> tuple[dict[str, Any], bool]:
    """An action's fields, and whether an API client sent them (a JSON body) rather than the
    page (a form)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        if not isinstance(body, dict):
            raise BadRequest("give the action's fields as a JSON object")
        return body, True
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}, False


def _answer(done: str, plan: workspace.Plan, api: bool) -> Response:
    """Back to the page, at the patient, saying what was done; JSON for an API client."""
    if api:
        return JSONResponse({"done": done, "patient": f"Patient/{plan.patient_id}",
                             "message": page.confirmation(load_rules(), done)})
    return RedirectResponse(f"/coordination/page?fait={done}#patient-{plan.patient_id}",
                            status_code=303)


@router.post("/plans/{care_plan_id}/notes", summary="Add a note to a patient's plan")
async def post_plan_note(
    care_plan_id: str,
    request: Request,
    principal: Principal = Depends(form_principal),
    now: Callable[[], datetime] = Depends(clock),
) -> Response:
    fields, api = await _fields(request)
    plan = await run_in_threadpool(lambda: workspace.add_note(
        Repository(_engine(request)), principal, care_plan_id, fields.get("text"), now=now))
    return _answer("note", plan, api)


@router.post("/plans/{care_plan_id}/activities/{index}/done",
             summary="Mark an item of a patient's plan done")
async def post_activity_done(
    care_plan_id: str,
    index: int,
    request: Request,
    principal: Principal = Depends(form_principal),
    now: Callable[[], datetime] = Depends(clock),
) -> Response:
    _, api = await _fields(request)
    plan = await run_in_threadpool(lambda: workspace.mark_done(
        Repository(_engine(request)), principal, care_plan_id, index, load_rules(), now=now))
    return _answer("done", plan, api)


@router.post("/plans/{care_plan_id}/care-team",
             summary="Add a living-directory professional to the care team, and tell them")
async def post_care_team_member(
    care_plan_id: str,
    request: Request,
    principal: Principal = Depends(form_principal),
    now: Callable[[], datetime] = Depends(clock),
) -> Response:
    fields, api = await _fields(request)
    engine = _engine(request)
    repository = Repository(engine)

    def run() -> workspace.Plan:
        posted = workspace.assign(repository, engine, principal, care_plan_id,
                                  fields.get("idnat"), fields.get("role"), load_rules(), now=now)
        tell(engine, request.app.state.settings, posted)  # the message's Subscriptions, mail
        patient = posted.bundle["entry"][0]["resource"]["subject"]["reference"]
        return workspace.Plan({}, patient.split("/", 1)[1])

    return _answer("assigned", await run_in_threadpool(run), api)


@router.get("/letters/{letter_id}", response_class=HTMLResponse,
            summary="A received letter, to read (its sections as text), with its version")
def read_letter(
    letter_id: str, request: Request, principal: Principal = Depends(page_principal)
) -> HTMLResponse:
    """For a coordinator, a professional or the system the record lets read that letter."""
    if principal.kind not in ("coordinator", "professional", "system"):
        raise Forbidden("a letter is read here by the patient's carers and coordinators")
    engine = _engine(request)
    letter = page.letter_to_read(engine, Repository(engine), principal, letter_id)
    reading = readable_letter(letter.content, max_bytes=request.app.state.settings
                              .max_letter_bytes)
    heading = (f'<p><a href="/coordination/page">Retour à la page de coordination</a></p>'
               f'<p class="version">Version {letter.version}, reçue le '
               f'{html.escape(page.french_moment(letter.received))} ({html.escape(letter.model)})'
               f'</p>')
    return HTMLResponse(reading.replace("<body>", f"<body>{heading}", 1), headers={
        # the letter's own words only: nothing runs, nothing is fetched
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "X-Content-Type-Options": "nosniff"})
