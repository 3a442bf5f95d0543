"""Taking in one discharge notice (`coordination.notice`), from the API or the MLLP listener.

Checked (a hospital announces its own stays only), coordinated like a letter (the territory's
coordinator, the carers the record knows, consent), then its bundle, its row and its MSSanté
mail are stored in one transaction of liaison's database, queued behind the patient's letters:
accepted means certain to reach the record and the care team. A notice sent again (same
hospital, same message id) is answered with what was done the first time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from adapter.auth.principal import Principal
from adapter.auth.rules import require_notice_sender
from adapter.config import Settings
from adapter.coordination import coordinate, embedded_record
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.notice import (
    DischargeNotice,
    name_care_team,
    notice_conversion,
    notice_rules,
    word_messages,
)
from adapter.coordination.rules import load_rules
from adapter.coordination.stays import stay_identifier
from adapter.mssante.plan import plan_notice_mail
from adapter.mssante.queue import enqueue_message
from adapter.push import worker
from adapter.record.transaction import SOURCE_TAG
from adapter.store import outbox
from adapter.store.letters import ReceivedLetter, patient_key
from adapter.store.notice_tables import ReceivedNotice

logger = logging.getLogger("liaison.ingest")


@dataclass(frozen=True)
class NoticeReceipt:
    event: str
    text: str  # what the care team was told
    told: int  # how many Communications
    created: bool  # False: this notice had been received before; nothing new was queued

    def as_outcome(self) -> dict[str, object]:
        """The receipt as a FHIR OperationOutcome (the API's answer)."""
        said = "received before; nothing new queued" if not self.created else \
            f"accepted; {self.told} member(s) of the care team told"
        return {"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational",
             "diagnostics": f"discharge notice ({self.event}) {said}: {self.text}"}]}


def accept_notice(notice: DischargeNotice, *, engine: Engine, settings: Settings,
                  principal: Principal) -> NoticeReceipt:
    require_notice_sender(principal, notice.hospital)
    known = _received(engine, notice)
    if known is not None:
        return NoticeReceipt(known.event, known.text, known.told, created=False)
    stay = stay_identifier(notice.hospital, notice.stay)
    if notice.event in _BEFORE_DISCHARGE and _ended(engine, settings, stay):
        # a notice of a planned discharge that arrives once the stay has ended (an interface
        # engine's late resend) would reopen it: kept, answered, nothing changed or told
        return _store(engine, notice, stay, notice_rules()["texts"]["stay_ended"])
    rules = load_rules()
    conversion = notice_conversion(notice, rules)
    # the record grants the hospital what the notice writes, as for its letters
    conversion.bundle["meta"] = {"tag": [{"system": SOURCE_TAG, "code": notice.hospital}]}
    conversion = coordinate(conversion, engine, in_place=True, settings=settings)
    view = BundleView(conversion.bundle)
    name_care_team(view, stay)
    text = word_messages(view, notice)
    mails = plan_notice_mail(conversion.bundle, settings.mssante_sender) \
        if settings.mssante_enabled and settings.mssante_sender else []
    return _store(engine, notice, stay, text, bundle=conversion.bundle, mails=mails)


_BEFORE_DISCHARGE = ("planned", "planned-cancelled")


def _ended(engine: Engine, settings: Settings, stay: dict[str, str]) -> bool:
    """Whether the stay has ended: its discharge was notified (A03), its letter accepted
    (delivered or still queued), or the record holds its Encounter finished."""
    with Session(engine) as session:
        if session.exec(select(ReceivedNotice.id).where(
                ReceivedNotice.stay == stay["value"],
                ReceivedNotice.event == "discharged")).first() is not None:
            return True
        if session.exec(select(ReceivedLetter.id).where(
                ReceivedLetter.stay == stay["value"])).first() is not None:
            return True
    repository = embedded_record(engine, settings)
    if repository is None:
        return False
    found = repository.search("Encounter", [("identifier", f"{stay['system']}|{stay['value']}")])
    return any(entry["resource"].get("status") == "finished"
               for entry in found.get("entry") or [])


def _store(engine: Engine, notice: DischargeNotice, stay: dict[str, str], text: str, *,
           bundle: dict[str, Any] | None = None, mails: Sequence[dict[str, Any]] = ()
           ) -> NoticeReceipt:
    """The notice kept (a repeat is answered the same) with, in the same transaction, its
    bundle queued behind the patient's letters and its mail; without a bundle, nothing queued.
    """
    patient = patient_key([notice.ins])
    told = sum(1 for e in (bundle or {}).get("entry") or []
               if e["resource"]["resourceType"] == "Communication")
    try:
        with outbox.write_scope(engine, urgent=True) as session:
            entry = outbox.enqueue(session, worker.FHIR_TRANSACTION, bundle, patient) \
                if bundle is not None else None
            session.add(ReceivedNotice(hospital=notice.hospital, message_id=notice.message_id,
                                       event=notice.event, stay=stay["value"], text=text,
                                       told=told, outbox_id=entry.id if entry else None))
            for mail in mails:
                enqueue_message(session, {**mail, "patient_key": patient}, patient)
    except IntegrityError:  # the same notice, sent twice at once, was stored by the other
        known = _received(engine, notice)
        if known is None:
            raise
        return NoticeReceipt(known.event, known.text, known.told, created=False)
    if entry is not None:
        worker.notify()
        logger.info("discharge notice %s accepted (outbox entry %s)", notice.event, entry.id)
    return NoticeReceipt(notice.event, text, told, created=True)


def _received(engine: Engine, notice: DischargeNotice) -> ReceivedNotice | None:
    with Session(engine) as session:
        return session.exec(select(ReceivedNotice).where(
            ReceivedNotice.hospital == notice.hospital,
            ReceivedNotice.message_id == notice.message_id)).first()
