"""Taking in one discharge letter: check, convert, then store the letter, its receipt and its
outbox entry in one database transaction — so a letter is either refused with a reason or
accepted and certain to be pushed, never half-accepted.

Routes (REST, MHD) stay thin and call `ingest_letter`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from adapter.api import metrics
from adapter.api.preparation import ConversionPool, prepare_here
from adapter.api.validation import CDA_VALIDATION, check_strictly, validator
from adapter.config import Settings
from adapter.errors import Conflict, LetterTooLarge
from adapter.push import worker
from adapter.store import outbox
from adapter.store.letters import ReceivedLetter, find_letter, receipt

logger = logging.getLogger("liaison.ingest")


@dataclass(frozen=True)
class Accepted:
    receipt: dict[str, Any]
    created: bool  # False: this letter had already been received, nothing was created


def _receipt_for(session: Session, letter: ReceivedLetter, submitted_by: str | None
                 ) -> dict[str, Any]:
    """The receipt of a letter already received, for the sender who posts it again. Another
    hospital gets no receipt: it lists the patient's identifiers (INS) of a letter it did not
    send (a document id is easily guessed: the hospital's OID and a sequence number)."""
    if submitted_by is not None and letter.submitted_by != submitted_by:
        raise Conflict("a letter with this document id was already received from another sender")
    return receipt(session, letter)


def existing_receipt(
    engine: Engine, sha1: str, submitted_by: str | None = None
) -> dict[str, Any] | None:
    with Session(engine) as session:
        letter = find_letter(session, sha1=sha1)
        return _receipt_for(session, letter, submitted_by) if letter else None


def ingest_letter(
    xml: bytes,
    *,
    content_type: str,
    engine: Engine,
    settings: Settings,
    submitted_by: str | None = None,
    converters: ConversionPool | None = None,
) -> Accepted:
    """Accept one CDA letter (or refuse it with a `RefusedLetter` saying why)."""
    if len(xml) > settings.max_letter_bytes:
        raise LetterTooLarge(
            f"the letter is {len(xml)} bytes, over the limit of {settings.max_letter_bytes} bytes"
        )
    sha1 = hashlib.sha1(xml).hexdigest()
    known = existing_receipt(engine, sha1, submitted_by)
    if known is not None:  # the same bytes again: answer before spending time converting
        metrics.LETTERS_DUPLICATE.inc()
        return Accepted(known, created=False)

    validation = check_strictly(xml) if settings.validation_mode == "strict" else None
    letter = (converters.prepare(xml, engine) if converters is not None
              else prepare_here(xml, engine))
    document_id = letter.document_id
    try:
        with outbox.write_scope(engine, urgent=True) as session:
            already = find_letter(session, sha1=sha1, document_id=document_id)
            if already is not None:
                answer = _receipt_for(session, already, submitted_by)
                metrics.LETTERS_DUPLICATE.inc()
                return Accepted(answer, created=False)
            entry = outbox.enqueue(
                session, worker.FHIR_TRANSACTION, letter.payload, letter.patient_key
            )
            received = ReceivedLetter(
                sha1=sha1,
                document_id=document_id,
                set_id=letter.set_id,
                version=letter.version,
                kind=letter.kind,
                model=letter.model,
                patient_key=letter.patient_key,
                content_type=content_type,
                content=xml,
                submitted_by=submitted_by,
                outbox_id=entry.id,
                resources=letter.resources,
                report=letter.report,
                validation=orjson.dumps(validation).decode() if validation else None,
            )
            session.add(received)
            session.flush()
            if settings.validation_mode == "report" and validator() is not None:
                outbox.enqueue(
                    session, CDA_VALIDATION, {"letter": received.id}, f"validate:{received.id}"
                )
            answer = receipt(session, received)
    except IntegrityError:
        # The same letter was accepted concurrently by another request: answer with its receipt.
        with Session(engine) as session:
            already = find_letter(session, sha1=sha1, document_id=document_id)
            if already is None:
                raise
            answer = _receipt_for(session, already, submitted_by)
            metrics.LETTERS_DUPLICATE.inc()
            return Accepted(answer, created=False)
    metrics.LETTERS_ACCEPTED.inc()
    worker.notify()
    logger.info("letter %s accepted (outbox entry %s)", answer["id"], entry.id)
    return Accepted(answer, created=True)
