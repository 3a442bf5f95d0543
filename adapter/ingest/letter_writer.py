"""Storing accepted letters: one writer thread per database, several letters per transaction.

Each letter is stored with its receipt and its outbox entry in one transaction, so it is either
refused or certain to be pushed. When every request thread wrote its own letter, the threads
queued on the database's single writer, and the one holding it kept losing Python's lock to the
others: a 1.5 ms write took 14 ms at the median and 100 ms at p95 with 16 hospitals posting
(measured). One thread now takes whatever letters are waiting and commits them together (group
commit); each request waits for its own answer. A letter that cannot be stored fails alone:
the group is then written again one letter per transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from adapter import metrics
from adapter.errors import Conflict, LiaisonError, StalePreparation
from adapter.ingest.preparation import PreparedLetter
from adapter.ingest.validation import CDA_VALIDATION
from adapter.mssante.queue import enqueue_message
from adapter.push import worker
from adapter.store import outbox
from adapter.store.engine import reading
from adapter.store.letters import LetterStory, ReceivedLetter, find_letter, receipt, story_of

logger = logging.getLogger("liaison.ingest")

_GROUP = 32  # letters per transaction at most: a group holds the writer a few tens of ms
_IDLE_SECONDS = 5.0


@dataclass(frozen=True)
class Accepted:
    receipt: dict[str, Any]
    created: bool  # False: this letter had already been received, nothing was created


@dataclass
class Pending:
    """A prepared letter waiting to be stored, and the answer its request waits for."""

    xml: bytes
    sha1: str
    letter: PreparedLetter
    content_type: str
    submitted_by: str | None  # the organisation (idNat_Struct) the letter is accepted for
    validation: dict[str, Any] | None
    deferred_validation: bool  # queue the schematron check after acceptance (`report` mode)
    # the organisations the sender acts for (None: the system), for an already received letter
    senders: frozenset[str] | None
    answer: Future[Accepted] = field(default_factory=Future)


def receipt_for(session: Session, letter: ReceivedLetter, senders: frozenset[str] | None
                ) -> dict[str, Any]:
    """The receipt of a letter already received, for the sender who posts it again (`senders`:
    the organisations the caller acts for; None: the system). Another hospital gets no
    receipt: it lists the patient's identifiers (INS) of a letter it did not send (a document
    id is easily guessed: the hospital's OID and a sequence number)."""
    if senders is not None and letter.submitted_by not in senders:
        raise Conflict("a letter with this document id was already received from another sender")
    return receipt(session, letter)


def _claim_story(session: Session, pending: Pending) -> LetterStory:
    """The story the letter belongs to, refused when its setId is another organisation's."""
    letter = pending.letter
    story = story_of(session, letter.set_id)
    if story is not None and story.organization and pending.submitted_by \
            and story.organization != pending.submitted_by:
        raise Conflict("this letter's setId belongs to another organisation: only the "
                       "organisation that sent its first version sends the next ones")
    if (story.version if story is not None else 0) != letter.based_on:
        raise StalePreparation("another version of this letter was received meanwhile")
    if story is None:
        return LetterStory(set_id=letter.set_id, organization=pending.submitted_by,
                           version=letter.version, letter_id="")
    return story


def outbox_kind(letter: PreparedLetter) -> str:
    """How the letter's bundle is queued: vouched for when it passed the FHIR model check."""
    return worker.VALIDATED_TRANSACTION if letter.validated else worker.FHIR_TRANSACTION


def _store(session: Session, pending: Pending) -> tuple[Accepted, int | None]:
    """Add one letter to the open transaction; (its answer, its outbox entry if created)."""
    letter = pending.letter
    already = find_letter(session, sha1=pending.sha1, document_id=letter.document_id)
    if already is not None:
        return Accepted(receipt_for(session, already, pending.senders), created=False), None
    story = _claim_story(session, pending)
    entry = outbox.enqueue(session, outbox_kind(letter), letter.payload, letter.patient_key)
    received = ReceivedLetter(
        sha1=pending.sha1,
        document_id=letter.document_id,
        set_id=letter.set_id,
        version=letter.version,
        kind=letter.kind,
        model=letter.model,
        patient_key=letter.patient_key,
        content_type=pending.content_type,
        content=pending.xml,
        submitted_by=pending.submitted_by,
        outbox_id=entry.id,
        resources=letter.resources,
        report=letter.report,
        validation=orjson.dumps(pending.validation).decode() if pending.validation else None,
        stay=letter.stay,
    )
    session.add(received)
    session.flush()
    if story.version <= letter.version:
        story.version, story.letter_id = letter.version, received.id
    session.merge(story)
    if pending.deferred_validation:
        outbox.enqueue(session, CDA_VALIDATION, {"letter": received.id}, f"validate:{received.id}")
    for message in orjson.loads(letter.messages):
        message.update(letter=received.id, patient_key=letter.patient_key)
        enqueue_message(session, message, letter.patient_key)
    return Accepted(receipt(session, received), created=True), entry.id


def existing_receipt(engine: Engine, sha1: str, senders: frozenset[str] | None = None,
                     document_id: str | None = None) -> dict[str, Any] | None:
    """The receipt of the letter already received with these bytes (or this document id)."""
    with Session(reading(engine)) as session:
        already = find_letter(session, sha1=sha1, document_id=document_id)
        return receipt_for(session, already, senders) if already is not None else None


class LetterWriter:
    """The writer thread of one database (it ends after a few idle seconds, and starts again
    with the next letter; it holds its engine weakly, so a dropped engine is not kept open)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self._waiting: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def store(self, pending: Pending) -> Accepted:
        with self._lock:  # with `_run`'s exit: a letter is never left without a writer
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="liaison-letter-writer",
                                                daemon=True)
                self._thread.start()
            self._waiting.put(pending)
        return pending.answer.result()

    def _next_group(self) -> list[Pending] | None:
        try:
            group = [self._waiting.get(timeout=_IDLE_SECONDS)]
        except queue.Empty:
            with self._lock:
                if self._waiting.empty():
                    self._thread = None
                    return None
            group = [self._waiting.get()]
        while len(group) < _GROUP:
            try:
                group.append(self._waiting.get_nowait())
            except queue.Empty:
                break
        return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            try:
                engine = self._engine()
                if engine is None:
                    raise RuntimeError("the database of these letters was closed")
                self._write(engine, group)
                del engine
            except BaseException as error:  # never leave a request waiting for ever
                for pending in group:
                    if not pending.answer.done():
                        pending.answer.set_exception(error)

    def _write(self, engine: Engine, group: list[Pending]) -> None:
        outcomes: list[Accepted | LiaisonError] = []
        entries: list[int | None] = []
        answer: Accepted | LiaisonError
        try:
            with outbox.write_scope(engine, urgent=True) as session:
                for pending in group:
                    try:
                        answer, entry = _store(session, pending)
                    except LiaisonError as refused:  # e.g. another sender's document id
                        answer, entry = refused, None
                    outcomes.append(answer)
                    entries.append(entry)
        except Exception as error:
            if len(group) > 1:  # one letter spoilt the group: each alone, it fails by itself
                for pending in group:
                    try:
                        self._write(engine, [pending])
                    except Exception as alone:
                        pending.answer.set_exception(alone)
                return
            # the same letter accepted meanwhile by another process: its receipt
            pending = group[0]
            found = existing_receipt(engine, pending.sha1, pending.senders,
                                     pending.letter.document_id) \
                if isinstance(error, IntegrityError) else None
            if found is None:
                raise
            outcomes, entries = [Accepted(found, created=False)], [None]
        for pending, outcome, entry in zip(group, outcomes, entries, strict=True):
            self._answer(pending, outcome, entry)
        if any(entries):
            worker.notify()

    @staticmethod
    def _answer(pending: Pending, outcome: Accepted | LiaisonError, entry: int | None) -> None:
        if isinstance(outcome, LiaisonError):
            pending.answer.set_exception(outcome)
            return
        if outcome.created:
            metrics.LETTERS_ACCEPTED.inc()
            logger.info("letter %s accepted (outbox entry %s)", outcome.receipt["id"], entry)
        else:
            metrics.LETTERS_DUPLICATE.inc()
        pending.answer.set_result(outcome)


_writers: weakref.WeakKeyDictionary[Engine, LetterWriter] = weakref.WeakKeyDictionary()
_registry = threading.Lock()


def writer_for(engine: Engine) -> LetterWriter:
    with _registry:
        if engine not in _writers:
            _writers[engine] = LetterWriter(engine)
        return _writers[engine]
