"""Taking in one discharge letter: check, prepare (convert and coordinate, in a conversion
process when the server has them), then store the letter, its receipt and its outbox entry in
one database transaction (`letter_writer`) — so a letter is either refused with a reason or
accepted and certain to be pushed, never half-accepted.

Routes (REST, MHD) stay thin and call `ingest_letter`.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.engine import Engine

from adapter import metrics
from adapter.auth.principal import SYSTEM, Principal
from adapter.auth.rules import token_organizations
from adapter.config import Settings
from adapter.errors import LetterTooLarge, StalePreparation
from adapter.ingest.letter_writer import Accepted, Pending, existing_receipt, writer_for
from adapter.ingest.preparation import ConversionPool, prepare_here
from adapter.ingest.validation import check_strictly

__all__ = ["Accepted", "existing_receipt", "ingest_letter"]

# A letter prepared against a version of its setId replaced before it was stored is prepared
# again; versions of one letter racing this often are sent by a faulty client.
_PREPARATIONS = 3


def ingest_letter(
    xml: bytes,
    *,
    content_type: str,
    engine: Engine,
    settings: Settings,
    principal: Principal = SYSTEM,
    converters: ConversionPool | None = None,
) -> Accepted:
    """Accept one CDA letter sent by `principal` (or refuse it with a `RefusedLetter`, or
    `Forbidden` when it is another organisation's letter, saying why)."""
    if len(xml) > settings.max_letter_bytes:
        raise LetterTooLarge(
            f"the letter is {len(xml)} bytes, over the limit of {settings.max_letter_bytes} bytes"
        )
    senders = None if principal.kind == "system" else frozenset(token_organizations(principal))
    sha1 = hashlib.sha1(xml).hexdigest()
    known = existing_receipt(engine, sha1, senders)
    if known is not None:  # the same bytes again: answer before spending time converting
        metrics.LETTERS_DUPLICATE.inc()
        return Accepted(known, created=False)

    validation = check_strictly(xml) if settings.validation_mode == "strict" else None
    for attempt in range(_PREPARATIONS):
        letter = (converters.prepare(xml, engine, principal) if converters is not None
                  else prepare_here(xml, engine, principal, settings))
        try:
            return writer_for(engine).store(Pending(
                xml=xml,
                sha1=sha1,
                letter=letter,
                content_type=content_type,
                submitted_by=letter.organization,
                validation=validation,
                deferred_validation=settings.validation_mode == "report",
                senders=senders,
            ))
        except StalePreparation:  # another version of the letter was stored meanwhile
            if attempt + 1 == _PREPARATIONS:
                raise
    raise AssertionError("unreachable")
