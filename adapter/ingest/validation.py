"""CI-SIS validation of received letters (`validation_mode`: off | report | strict).

`strict` validates before accepting (a non-conforming letter is refused with 422). `report`
must not slow down acceptance — a schematron run costs far more than the mapping — so the
letter is accepted at once and an outbox entry of kind `cda-validation` has a pusher attach the
report to the receipt shortly after; like everything in the outbox, it survives a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapter.conformance.cda_validation import validate_letter
from adapter.errors import RefusedLetter
from adapter.store.db import session_scope
from adapter.store.letters import ReceivedLetter

CDA_VALIDATION = "cda-validation"


def check_strictly(xml: bytes) -> dict[str, Any] | None:
    """The report of a conforming letter; RefusedLetter (422) listing the problems otherwise."""
    report = validate_letter(xml)
    outcome = report.operation_outcome()
    if not report.ok:
        raise RefusedLetter(
            f"the letter does not conform to the CI-SIS rules ({len(report.errors)} problem(s))",
            details={"outcome": outcome},
        )
    return outcome


def attach_report(engine: Engine, letter_id: str) -> dict[str, Any]:
    """Validate a stored letter and keep the report on its receipt."""
    with Session(engine) as session:
        letter = session.get(ReceivedLetter, letter_id)
        content = letter.content if letter else None
    if content is None:
        return {"validated": False}
    outcome = validate_letter(content).operation_outcome()
    with session_scope(engine) as session:
        stored = session.get(ReceivedLetter, letter_id)
        if stored is not None:
            stored.validation = orjson.dumps(outcome).decode()
            session.add(stored)
    return {"validated": True}


def handler(engine: Engine) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """How a pusher runs the deferred validations of `engine`'s letters."""
    return lambda payload: attach_report(engine, payload["letter"])
