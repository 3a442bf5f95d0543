"""`/discharge-letters`: hospitals post CDA discharge letters and follow what became of them."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser

from adapter.api.bodies import read_capped
from adapter.api.read_admission import admission_of
from adapter.auth import Principal
from adapter.auth.dependency import current_principal
from adapter.auth.rules import token_organizations
from adapter.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    UnsupportedMediaType,
)
from adapter.ingest.ingestion import ingest_letter
from adapter.store.letters import ReceivedLetter, receipt

router = APIRouter(prefix="/discharge-letters", tags=["discharge letters"])

XML_TYPES = ("application/xml", "text/xml", "application/hl7-cda+xml")
MULTIPART = "multipart/form-data"
WRITERS = ("hospital", "system")

RECEIPT_EXAMPLE = {
    "id": "5f0c1d…",
    "status": "accepted",
    "attempts": 0,
    "resources": [
        {"resourceType": "CarePlan", "fullUrl": "urn:uuid:…", "condition": "identifier=…"}
    ],
    "unmapped": {"resourceType": "OperationOutcome", "issue": []},
}


def _writer(principal: Principal) -> Principal:
    if principal.kind not in WRITERS:
        raise Forbidden(f"a {principal.kind} token cannot submit discharge letters")
    return principal


async def _letter_from_multipart(request: Request, body: bytes) -> bytes:
    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    form = await MultiPartParser(request.headers, replay(), max_files=1, max_fields=10).parse()
    files = [value for value in form.values() if isinstance(value, UploadFile)]
    if not files:
        raise BadRequest("the multipart form holds no file part with the letter")
    return await files[0].read()


@router.post(
    "",
    status_code=202,
    summary="Submit a CDA discharge letter (LDL-SES)",
    description=(
        "Body: the CDA R2 XML (`application/xml`, `application/hl7-cda+xml`) or a "
        "`multipart/form-data` form with the letter as its file part. The letter is checked "
        "and mapped synchronously, then stored with its receipt and its outbox entry in one "
        "transaction and pushed to the shared record in the background. The same letter posted "
        "again answers 200 with the existing receipt."
    ),
    responses={
        202: {
            "description": "Accepted: the receipt",
            "content": {"application/json": {"example": RECEIPT_EXAMPLE}},
        },
        200: {"description": "Already received: the existing receipt"},
        400: {"description": "Not XML (OperationOutcome)"},
        401: {"description": "Missing or invalid bearer token"},
        403: {"description": "The token may not submit letters, or not this organisation's"},
        409: {"description": "The setId (or document id) belongs to another organisation"},
        413: {"description": "Over the size limit"},
        415: {"description": "Unsupported media type"},
        422: {"description": "Not a discharge letter liaison can take (OperationOutcome)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/hl7-cda+xml": {"schema": {"type": "string"}},
                "application/xml": {"schema": {"type": "string"}},
                MULTIPART: {
                    "schema": {
                        "type": "object",
                        "properties": {"letter": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    },
)
async def submit_letter(
    request: Request, principal: Principal = Depends(current_principal)
) -> Response:
    _writer(principal)
    settings = request.app.state.settings
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (*XML_TYPES, MULTIPART):
        raise UnsupportedMediaType(
            f"media type {media_type or '(none)'!r} is not accepted; send "
            f"{', '.join(XML_TYPES)} or {MULTIPART}"
        )
    # Headroom for the multipart envelope; the letter itself is checked against the limit again.
    limit = settings.max_letter_bytes + (64 * 1024 if media_type == MULTIPART else 0)
    body = await read_capped(request, limit)
    xml = await _letter_from_multipart(request, body) if media_type == MULTIPART else body
    async with admission_of(request.app).letter():  # reads make way while letters queue
        accepted = await run_in_threadpool(
            ingest_letter,
            xml,
            content_type=media_type,
            engine=request.app.state.engine,
            settings=settings,
            principal=principal,
            converters=request.app.state.converters,
        )
    letter_id = accepted.receipt["id"]
    return Response(  # the receipt lists every resource: orjson, not the json module
        orjson.dumps(accepted.receipt),
        media_type="application/json",
        status_code=202 if accepted.created else 200,
        headers={"Location": f"/discharge-letters/{letter_id}"},
    )


def _read_receipt(engine: Any, letter_id: str, principal: Principal) -> dict[str, Any]:
    with Session(engine) as session:
        letter = session.get(ReceivedLetter, letter_id)
        if letter is None:
            raise NotFound(f"no discharge letter {letter_id}")
        if principal.kind != "system" and not (
            principal.kind == "hospital"
            and letter.submitted_by in token_organizations(principal)
        ):  # another hospital's receipt reads as an unknown one: ids are easily guessed
            raise NotFound(f"no discharge letter {letter_id}")
        return receipt(session, letter)


@router.get(
    "/{letter_id}",
    summary="The receipt of a letter: accepted → pushed | retrying | failed",
    responses={404: {"description": "Unknown letter, or another sender's"}},
)
def get_receipt(
    letter_id: str, request: Request, principal: Principal = Depends(current_principal)
) -> dict[str, Any]:
    return _read_receipt(request.app.state.engine, letter_id, principal)
