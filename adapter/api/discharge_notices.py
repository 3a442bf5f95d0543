"""`POST /discharge-notices`: a hospital announces a discharge before the letter — a FHIR
Encounter (`application/fhir+json`) or an HL7 v2 ADT message (`application/hl7-v2`, as its
interface engine would send it over MLLP, `adapter.api.mllp`). 202 with what the care team
was told; 200 when the notice had been received before; 403 for another hospital's stay."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adapter.api.bodies import read_capped
from adapter.auth import Principal
from adapter.auth.dependency import current_principal
from adapter.errors import BadRequest, Forbidden, UnsupportedMediaType
from adapter.ingest.adt import decode, parse_adt
from adapter.ingest.fhir_notices import notice_from_encounter
from adapter.ingest.notices import accept_notice

router = APIRouter(tags=["discharge notices"])
FHIR_TYPES = ("application/fhir+json", "application/json")
HL7_TYPES = ("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain")
_MAX_BYTES = 256 * 1024


@router.post("/discharge-notices", status_code=202,
             summary="Announce a planned, done or cancelled discharge before the letter")
async def submit_notice(request: Request,
                        principal: Principal = Depends(current_principal)) -> JSONResponse:
    if principal.kind not in ("hospital", "system"):
        raise Forbidden(f"a {principal.kind} token cannot announce discharges")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_capped(request, _MAX_BYTES)
    if media_type in HL7_TYPES:
        message = parse_adt(decode(body), default_hospital=principal.organization)
        if message.notice is None:
            return JSONResponse(_said(f"ADT {message.event} acknowledged: it tells the care "
                                      "team nothing, nothing was done"), status_code=200)
        notice = message.notice
    elif media_type in FHIR_TYPES:
        try:
            encounter = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest(f"the body is not JSON: {error}") from None
        notice = notice_from_encounter(encounter, default_hospital=principal.organization)
    else:
        raise UnsupportedMediaType(f"media type {media_type or '(none)'!r} is not accepted; "
                                   f"send {FHIR_TYPES[0]} or {HL7_TYPES[0]}")
    settings = request.app.state.settings
    receipt = await run_in_threadpool(lambda: accept_notice(
        notice, engine=request.app.state.engine, settings=settings, principal=principal))
    return JSONResponse(receipt.as_outcome(), status_code=202 if receipt.created else 200,
                        media_type="application/fhir+json")




def _said(text: str) -> dict[str, object]:
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "information", "code": "informational", "diagnostics": text}]}
