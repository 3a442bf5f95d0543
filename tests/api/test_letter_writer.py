"""Accepted letters are stored by one writer thread, several per transaction (group commit):
each request still gets its own answer, and a letter refused inside a group fails alone."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from adapter.auth import Principal
from adapter.config import get_settings
from adapter.errors import Conflict
from adapter.ingest.ingestion import ingest_letter
from adapter.ingest.letter_writer import Pending, writer_for
from adapter.ingest.preparation import prepare_here
from adapter.store import locking, outbox
from adapter.store.db import get_engine
from adapter.store.letters import get_letter
from tests.api.conftest import HOSPITAL, OTHER_HOSPITAL
from tests.support.letter_variants import letter_variant
from tests.support.waiting import wait_for


def _pending(n: int, submitted_by: str) -> Pending:
    xml = letter_variant(n)
    return Pending(xml=xml, sha1=hashlib.sha1(xml).hexdigest(),
                   letter=prepare_here(xml, get_engine()), content_type="application/xml",
                   submitted_by=submitted_by, validation=None, deferred_validation=False,
                   senders=frozenset({submitted_by}))


def test_letters_posted_together_are_each_stored_with_their_own_receipt() -> None:
    engine, settings = get_engine(), get_settings()

    def accept(n: int) -> str:
        accepted = ingest_letter(letter_variant(n), content_type="application/xml",
                                 engine=engine, settings=settings,
                                 principal=Principal(kind="hospital", organization=HOSPITAL))
        assert accepted.created
        return accepted.receipt["id"]

    with ThreadPoolExecutor(12) as pool:
        ids = list(pool.map(accept, range(12)))
    assert len(set(ids)) == 12
    entries = {letter.outbox_id for letter in map(lambda i: get_letter(engine, i), ids)
               if letter is not None}
    assert len(entries) == 12
    with engine.connect() as connection:
        bundles = connection.execute(
            text("SELECT COUNT(*) FROM outbox_entry WHERE kind LIKE 'fhir-transaction%'")
        ).scalar()
    assert bundles == 12


def test_a_letter_refused_inside_a_group_fails_alone() -> None:
    engine = get_engine()
    writer = writer_for(engine)
    writer.store(_pending(1, HOSPITAL))  # letter 1, from the first hospital
    first, clash, *others = [_pending(2, HOSPITAL), _pending(1, OTHER_HOSPITAL),
                             _pending(3, HOSPITAL), _pending(4, HOSPITAL)]
    answers: dict[int, object] = {}

    def store(pending: Pending) -> None:
        try:
            answers[id(pending)] = writer.store(pending)
        except Conflict as refused:
            answers[id(pending)] = refused

    # The database's writer is held while letters queue up: the writer thread takes `first`
    # and waits; the three others then go together, in one transaction.
    holder = outbox.write_scope(engine, urgent=True)
    holder.__enter__()
    threads = [threading.Thread(target=store, args=(first,))]
    threads[0].start()
    database = locking._process_lock(engine)
    wait_for(lambda: database._urgent_waiting >= 1, "the writer thread waiting", timeout=10)
    assert database._urgent_waiting == 1  # the writer thread took `first`, waits for the lock
    for pending in (clash, *others):
        threads.append(threading.Thread(target=store, args=(pending,)))
        threads[-1].start()
    wait_for(lambda: writer._waiting.qsize() >= 3, "three letters queued", timeout=10)
    assert writer._waiting.qsize() == 3
    holder.__exit__(None, None, None)
    for thread in threads:
        thread.join(30)
    assert isinstance(answers[id(clash)], Conflict)  # another hospital's copy of letter 1
    for pending in (first, *others):
        assert answers[id(pending)].created  # type: ignore[attr-defined]
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT COUNT(*) FROM received_letter")).scalar()
    assert stored == 4


@pytest.mark.parametrize("same", ["bytes", "document"])
def test_the_same_letter_twice_in_one_group_is_stored_once(same: str) -> None:
    engine = get_engine()
    one = _pending(5, HOSPITAL)
    again = one if same == "bytes" else _pending(5, HOSPITAL)
    again = Pending(xml=again.xml + (b" " if same == "document" else b""),
                    sha1=again.sha1 if same == "bytes" else "0" * 40, letter=again.letter,
                    content_type=again.content_type, submitted_by=HOSPITAL, validation=None,
                    deferred_validation=False, senders=frozenset({HOSPITAL}))
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(writer_for(engine).store, [one, again]))
    assert sorted(answer.created for answer in answers) == [False, True]
    assert answers[0].receipt["id"] == answers[1].receipt["id"]
