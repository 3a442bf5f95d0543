"""The pusher against real servers on loopback: target down, 503 + Retry-After, rejection and
replay, per-patient order, target killed mid-burst, two workers on one outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from adapter.config import Settings
from adapter.push.targets import HttpTarget
from adapter.push.worker import FHIR_TRANSACTION, Pusher
from adapter.store import outbox
from adapter.store.db import engine_for, init_db, session_scope
from tests.push.bundles import DOCS, INS, document_value, letter_bundle, patient_ins
from tests.push.faulty import faulty_target
from tests.push.medplum_queries import count_by_identifier, search
from tests.support.medplum import MedplumPeer
from tests.support.servers import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.medplum


def fast_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "push_backoff_base_seconds": 0.05,
        "push_backoff_max_seconds": 0.5,
        "push_lease_seconds": 10.0,
        "push_max_attempts": 200,
        "push_timeout_seconds": 5.0,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def enqueue_letters(engine: Engine, letters: list[tuple[int, int, int]]) -> list[int]:
    """(letter, version, patient) → outbox entries keyed by patient, in this order."""
    ids = []
    with session_scope(engine) as session:
        for letter, version, patient in letters:
            bundle = letter_bundle(letter, version=version, patient=patient)
            ids.append(outbox.enqueue(session, FHIR_TRANSACTION, bundle, f"patient-{patient}").id)
    return [entry_id or 0 for entry_id in ids]


def delivered(engine: Engine, number: int) -> Callable[[], bool]:
    return lambda: outbox.counts(engine)[outbox.DELIVERED] >= number


@contextmanager
def running(pusher: Pusher) -> Iterator[Pusher]:
    pusher.start()
    try:
        yield pusher
    finally:
        pusher.stop()


def test_letters_wait_while_the_target_is_down_then_all_arrive_once(outbox_engine: Engine) -> None:
    port = free_port()
    enqueue_letters(outbox_engine, [(100 + n, 1, 100 + n) for n in range(20)])
    target = HttpTarget(f"http://127.0.0.1:{port}/fhir/R4", timeout=2)
    with running(Pusher(outbox_engine, target, settings=fast_settings(), threads=2)):
        wait_for(lambda: outbox.counts(outbox_engine)[outbox.RETRYING] > 0)
        assert outbox.counts(outbox_engine)[outbox.DELIVERED] == 0
        peer = MedplumPeer(port=port).start()
        try:
            wait_for(delivered(outbox_engine, 20))
            for n in range(20):
                assert (
                    count_by_identifier(
                        peer.base_url, "DocumentReference", DOCS, document_value(100 + n)
                    )
                    == 1
                )
                assert count_by_identifier(peer.base_url, "Patient", INS, patient_ins(100 + n)) == 1
        finally:
            peer.stop()


def test_retry_after_of_a_503_is_honoured(outbox_engine: Engine, medplum_base_url: str) -> None:
    enqueue_letters(outbox_engine, [(200, 1, 200)])
    with faulty_target(medplum_base_url) as fault:
        fault.then(503, "overloaded", {"Retry-After": "1"})
        settings = fast_settings(push_backoff_base_seconds=0.01)
        now = [outbox.utcnow()]  # the pusher's clock, moved by the test
        pusher = Pusher(outbox_engine, HttpTarget(fault.base_url), settings=settings,
                        threads=1, clock=lambda: now[0])
        assert pusher.run_once() == 1  # answered 503, Retry-After: 1
        now[0] += timedelta(seconds=0.5)  # the 10 ms backoff is long past, the server's second not
        assert pusher.run_once() == 0
        now[0] += timedelta(seconds=0.6)
        assert pusher.run_once() == 1
        first, second = fault.arrivals
        assert (first.answered, second.answered) == (503, 200)
        assert outbox.counts(outbox_engine)[outbox.DELIVERED] == 1


def test_a_rejected_bundle_fails_with_the_targets_message_and_can_be_replayed(
    outbox_engine: Engine, medplum_base_url: str
) -> None:
    (entry_id,) = enqueue_letters(outbox_engine, [(300, 1, 300)])
    with faulty_target(medplum_base_url) as fault:
        fault.reject_all = (
            422,
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "invalid", "diagnostics": "Unknown profile"}
                ],
            },
        )
        with running(
            Pusher(outbox_engine, HttpTarget(fault.base_url), settings=fast_settings(), threads=1)
        ):
            wait_for(lambda: outbox.counts(outbox_engine)[outbox.FAILED] == 1)
            entry = outbox.get_entry(outbox_engine, entry_id)
            assert entry is not None and entry.last_status == 422 and entry.attempts == 1
            assert entry.last_error_json()["issue"][0]["diagnostics"] == "Unknown profile"  # type: ignore[index]
            fault.reject_all = None  # the target's administrator fixed the profile
            assert outbox.replay_failed(outbox_engine) == 1
            wait_for(delivered(outbox_engine, 1))
    assert (
        count_by_identifier(medplum_base_url, "DocumentReference", DOCS, document_value(300)) == 1
    )


def test_version_two_of_a_letter_never_overtakes_version_one(
    outbox_engine: Engine, medplum_base_url: str
) -> None:
    letters = [(400, 1, 400), *[(401 + n, 1, 401 + n) for n in range(6)], (400, 2, 400)]
    enqueue_letters(outbox_engine, letters)
    with faulty_target(medplum_base_url) as fault:
        fault.then(503, "busy").then(503, "busy")  # the first two sent (v1 among them) bounce
        with running(
            Pusher(outbox_engine, HttpTarget(fault.base_url), settings=fast_settings(), threads=3)
        ):
            wait_for(delivered(outbox_engine, len(letters)))
        order = fault.documents_in_arrival_order()
    assert order.index(document_value(400, 1)) < order.index(document_value(400, 2))
    (plan,) = search(medplum_base_url, "CarePlan", identifier="urn:liaison:test:careplan|plan-400")
    assert plan["title"] == "version 2"


def test_medplum_killed_mid_burst_still_ends_with_every_bundle_once(tmp_path: Path) -> None:
    """Medplum with its journal, SIGKILLed while bundles are in flight, then restarted.

    (The 200-letter burst against a killed record process is in tests/api/test_process_faults.)
    """
    engine = engine_for(f"sqlite:///{tmp_path / 'outbox.db'}")
    init_db(engine)
    port = free_port()
    journal = tmp_path / "medplum.journal"
    peer = MedplumPeer(journal=journal, port=port).start()
    letters = [(1000 + n, 1, 1000 + n % 50) for n in range(60)]
    enqueue_letters(engine, letters)
    try:
        with running(
            Pusher(
                engine, HttpTarget(peer.base_url, timeout=10), settings=fast_settings(), threads=4
            )
        ):
            wait_for(delivered(engine, 15))
            peer.kill()
            killed_at = outbox.counts(engine)[outbox.DELIVERED]
            wait_for(lambda: outbox.counts(engine)[outbox.RETRYING] > 0)
            peer = MedplumPeer(journal=journal, port=port).start()
            wait_for(delivered(engine, len(letters)), timeout=120)
        assert killed_at < len(letters)
        documents = Counter(
            identifier["value"]
            for resource in search(peer.base_url, "DocumentReference")
            for identifier in resource["identifier"]
        )
        assert {documents[document_value(letter)] for letter, _, _ in letters} == {1}
        patients = Counter(
            resource["identifier"][0]["value"] for resource in search(peer.base_url, "Patient")
        )
        assert len(patients) == 50 and set(patients.values()) == {1}
    finally:
        peer.stop()
        engine.dispose()


def test_two_workers_on_one_outbox_send_each_bundle_once(
    outbox_engine: Engine, medplum_base_url: str
) -> None:
    enqueue_letters(outbox_engine, [(2000 + n, 1, 2000 + n % 30) for n in range(120)])
    second_engine = engine_for(str(outbox_engine.url.render_as_string(hide_password=False)))
    with faulty_target(None) as fault:  # a target that takes anything, and counts
        settings = fast_settings()
        with (
            running(
                Pusher(outbox_engine, HttpTarget(fault.base_url), settings=settings, threads=2)
            ),
            running(
                Pusher(second_engine, HttpTarget(fault.base_url), settings=settings, threads=2)
            ),
        ):
            wait_for(delivered(outbox_engine, 120))
    sent = Counter(fault.documents_in_arrival_order())
    assert len(sent) == 120 and set(sent.values()) == {1}
    second_engine.dispose()
