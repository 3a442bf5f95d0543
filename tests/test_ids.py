"""Ids liaison assigns are time-ordered UUIDs (RFC 9562 version 7): keys made one after the
other sit side by side in the B-trees that hold them (see `adapter.ids`)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from adapter import ids
from adapter.record.repository import Repository
from adapter.store.db import engine_for, init_db
from adapter.store.letters import ReceivedLetter

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def test_an_id_is_a_version_7_uuid_starting_with_the_millisecond_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = ids.time_ordered_uuid()
    after = time.time_ns() // 1_000_000
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert FHIR_ID.match(ids.new_id())


def test_ids_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(5):
        made.append(ids.new_id())
        time.sleep(0.002)
    assert made == sorted(made)
    assert len({identifier[:13] for identifier in made}) == 5  # a new millisecond each


def test_ids_of_one_millisecond_share_their_prefix_and_never_collide(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_795_000_000_123_456_789)
    made = [ids.time_ordered_uuid() for _ in range(10_000)]
    assert len(set(made)) == 10_000
    assert {value.int >> 80 for value in made} == {1_795_000_000_123}
    assert {(value.version, value.variant) for value in made} == {(7, uuid.RFC_4122)}
    # the 74 random bits do vary: each of them is set in some id and clear in another
    random_bits = [(value.int >> 64 & 0xFFF) << 62 | (value.int & (1 << 62) - 1)
                   for value in made]
    assert all(any(bits >> n & 1 for bits in random_bits)
               and not all(bits >> n & 1 for bits in random_bits) for n in range(74))


def test_the_record_gives_created_resources_time_ordered_ids(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'record.db'}")
    init_db(engine)
    try:
        repository = Repository(engine)
        created = []
        for family in ("Martin", "Durand"):
            stored = repository.create({"resourceType": "Patient",
                                        "name": [{"family": family}]}).stored()
            assert stored is not None
            created.append(stored["id"])
            time.sleep(0.002)
        assert [uuid.UUID(identifier).version for identifier in created] == [7, 7]
        assert created == sorted(created)
    finally:
        engine.dispose()


def test_a_received_letter_gets_a_time_ordered_id() -> None:
    letter = ReceivedLetter(sha1="0" * 40, document_id="1.2.3|x", set_id="1.2.3|s",
                            patient_key="k", content=b"<x/>")
    assert uuid.UUID(hex=letter.id).version == 7
