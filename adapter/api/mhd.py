"""The letter the FHIR way: an IHE MHD "Provide Document Bundle" posted to `POST /fhir`.

Registered in `app.state.bundle_interceptors`: a transaction Bundle holding a DocumentReference
whose attachment is a CDA (inline base64 `data`, or a `url` pointing at a Binary of the same
bundle) is ingested exactly like `POST /discharge-letters`; any other bundle goes on to the record.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine

from adapter.api.read_admission import ReadAdmission
from adapter.auth.principal import SYSTEM
from adapter.config import Settings
from adapter.errors import BadRequest, Forbidden
from adapter.ingest.ingestion import ingest_letter
from adapter.ingest.preparation import ConversionPool

CDA_TYPES = ("application/hl7-cda+xml", "text/xml", "application/xml")
MHD_PROFILE_PREFIX = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD."
# What a Provide Document Bundle holds (SubmissionSet List, DocumentReference, Binary). A bundle
# with anything else — e.g. the bundle liaison itself produces, which also carries the CDA as a
# DocumentReference, pushed to another liaison — is a record transaction, not a submission.
SUBMISSION_TYPES = frozenset({"DocumentReference", "List", "Binary"})
WRITERS = ("hospital", "system")

Interceptor = Callable[[dict[str, Any], Any], Awaitable[Response | None]]


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's entries that are objects (anything else is the record's to refuse)."""
    entries = bundle.get("entry")
    return [entry for entry in entries if isinstance(entry, dict)] \
        if isinstance(entries, list) else []


def _resource(entry: dict[str, Any]) -> dict[str, Any]:
    resource = entry.get("resource")
    return resource if isinstance(resource, dict) else {}


def _cda_attachment(bundle: dict[str, Any]) -> dict[str, Any] | None:
    for entry in _entries(bundle):
        resource = _resource(entry)
        if resource.get("resourceType") != "DocumentReference":
            continue
        contents = resource.get("content")
        for content in contents if isinstance(contents, list) else []:
            attachment = content.get("attachment") if isinstance(content, dict) else None
            if not isinstance(attachment, dict):
                continue
            media_type = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
            if media_type in CDA_TYPES:
                return attachment
    return None


def _binary_data(bundle: dict[str, Any], url: str) -> str | None:
    for entry in _entries(bundle):
        resource = _resource(entry)
        if resource.get("resourceType") == "Binary" and url in (
            entry.get("fullUrl"),
            f"Binary/{resource.get('id')}",
        ):
            return resource.get("data")
    return None


def is_submission(bundle: dict[str, Any]) -> bool:
    """A transaction Bundle declared as MHD, or holding only what a submission holds."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" \
            or bundle.get("type") != "transaction":
        return False
    profiles = (bundle.get("meta") or {}).get("profile") or []
    if any(str(profile).startswith(MHD_PROFILE_PREFIX) for profile in profiles):
        return True
    types = {_resource(entry).get("resourceType") for entry in _entries(bundle)}
    return bool(types) and types <= SUBMISSION_TYPES


def letter_of(bundle: dict[str, Any]) -> tuple[bytes, str] | None:
    """The CDA bytes and media type carried by a Provide Document Bundle; None if not one."""
    if not is_submission(bundle):
        return None
    attachment = _cda_attachment(bundle)
    if attachment is None:
        return None
    data = attachment.get("data")
    if data is None and attachment.get("url"):
        data = _binary_data(bundle, attachment["url"])
    if not data:
        raise BadRequest("the DocumentReference attachment carries no CDA data")
    try:
        xml = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest("the CDA attachment is not valid base64") from error
    return xml, attachment["contentType"].split(";")[0].strip().lower()


def _transaction_response(bundle: dict[str, Any], receipt: dict[str, Any]) -> dict[str, Any]:
    """Every entry of the submission answered 202: the letter is accepted, pushed later."""
    location = f"/discharge-letters/{receipt['id']}"
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "202 Accepted", "location": location}}
            for _ in bundle.get("entry", [])
        ],
    }


def provide_document_interceptor(
    engine: Engine, settings: Settings, converters: Callable[[], ConversionPool | None],
    admission: Callable[[], ReadAdmission],
) -> Interceptor:
    """`converters`: the app's conversion pool once started (None: prepare in this process);
    `admission`: the app's read admission, which lets letters go first."""
    async def intercept(bundle: dict[str, Any], principal: Any) -> Response | None:
        found = letter_of(bundle)
        if found is None:
            return None
        if principal is not None and getattr(principal, "kind", None) not in WRITERS:
            raise Forbidden(f"a {principal.kind} token cannot submit discharge letters")
        xml, media_type = found
        async with admission().letter():
            accepted = await run_in_threadpool(
                ingest_letter,
                xml,
                content_type=media_type,
                engine=engine,
                settings=settings,
                principal=principal or SYSTEM,
                converters=converters(),
            )
        return JSONResponse(
            _transaction_response(bundle, accepted.receipt),
            status_code=200,
            media_type="application/fhir+json",
            headers={"Content-Location": f"/discharge-letters/{accepted.receipt['id']}"},
        )

    return intercept
