"""The pusher hands the embedded record several letters at once (one record transaction) and
records their outcomes together, each entry still its own: delivered, failed or in order."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapter.config import Settings
from adapter.push.targets import EmbeddedTarget
from adapter.push.worker import FHIR_TRANSACTION, Pusher, notify
from adapter.record.repository import Repository
from adapter.store import outbox
from adapter.store.db import session_scope
from tests.push.bundles import PLANS, letter_bundle


class CountingTarget(EmbeddedTarget):
    """The real embedded record, remembering how many bundles each call carried."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.calls: list[int] = []

    def send(self, bundle: dict[str, Any], **options: Any) -> dict[str, Any]:
        self.calls.append(1)
        return super().send(bundle, **options)

    def send_many(self, bundles: list[dict[str, Any]], **options: Any) -> list[Any]:
        self.calls.append(len(bundles))
        return super().send_many(bundles, **options)


def settings() -> Settings:
    return Settings(push_backoff_base_seconds=0.01, push_backoff_max_seconds=0.05)


def enqueue(engine: Engine, bundles: list[tuple[dict[str, Any], str]]) -> list[int]:
    with session_scope(engine) as session:
        return [outbox.enqueue(session, FHIR_TRANSACTION, bundle, key).id or 0
                for bundle, key in bundles]


def plan_titles(repository: Repository, letter: int) -> list[str]:
    found = repository.search("CarePlan", [("identifier", f"{PLANS}|plan-{letter}")])
    return [entry["resource"]["title"] for entry in found.get("entry", [])]


def test_a_batch_of_letters_goes_in_one_call_and_every_entry_is_marked_delivered(
    outbox_engine: Engine,
) -> None:
    ids = enqueue(outbox_engine, [(letter_bundle(n), f"patient-{n}") for n in range(8)])
    target = CountingTarget(outbox_engine)
    pusher = Pusher(outbox_engine, target, settings=settings(), batch_size=8)
    assert pusher.run_once() == 8
    assert target.calls == [8]
    for entry_id in ids:
        entry = outbox.get_entry(outbox_engine, entry_id)
        assert entry is not None and entry.status == outbox.DELIVERED
        locations = (entry.result_json() or {})["locations"]
        assert [loc.split("/")[0] for loc in locations] == [
            "Patient", "CarePlan", "DocumentReference", "Provenance"]
    # nothing is sent twice: the next pass finds nothing, and each letter landed once
    assert pusher.run_once() == 0 and target.calls == [8]
    repository = Repository(outbox_engine)
    documents = repository.search("DocumentReference", [])
    assert len(documents["entry"]) == 8
    assert all(entry["resource"]["meta"]["versionId"] == "1" for entry in documents["entry"])
    # every write is on the audit trail, committed with it (no wait for the audit thread)
    with repository.engine.connect() as connection:
        trail = connection.execute(text(
            "SELECT actor_kind, action, resource_type, outcome FROM record_audit")).all()
    assert sorted(trail) == sorted(
        [("internal", "post", "Patient", 201), ("internal", "put", "CarePlan", 201),
         ("internal", "post", "DocumentReference", 201), ("internal", "post", "Provenance", 201)]
        * 8)


def test_a_letter_the_record_rejects_fails_alone_and_its_batch_is_delivered(
    outbox_engine: Engine,
) -> None:
    rejected = letter_bundle(2)
    rejected["entry"][1]["request"]["ifMatch"] = 'W/"9"'  # the CarePlan has no version 9
    ids = enqueue(outbox_engine, [(letter_bundle(1), "patient-1"), (rejected, "patient-2"),
                                  (letter_bundle(3), "patient-3")])
    target = CountingTarget(outbox_engine)
    Pusher(outbox_engine, target, settings=settings()).run_once()
    assert target.calls == [3]
    statuses = [outbox.get_entry(outbox_engine, i).status for i in ids]  # type: ignore[union-attr]
    assert statuses == [outbox.DELIVERED, outbox.FAILED, outbox.DELIVERED]
    failed = outbox.get_entry(outbox_engine, ids[1])
    assert failed is not None and failed.last_status == 412
    repository = Repository(outbox_engine)
    assert (plan_titles(repository, 1), plan_titles(repository, 2), plan_titles(repository, 3)) \
        == (["version 1"], [], ["version 1"])


def test_letters_of_one_patient_are_delivered_in_order_across_batches(
    outbox_engine: Engine,
) -> None:
    enqueue(outbox_engine, [(letter_bundle(1, version=1), "patient-1"),
                            (letter_bundle(1, version=2), "patient-1"),
                            (letter_bundle(2), "patient-2"),
                            (letter_bundle(1, version=3), "patient-1")])
    target = CountingTarget(outbox_engine)
    pusher = Pusher(outbox_engine, target, settings=settings())
    assert pusher.drain(timeout=30)
    # only the oldest unfinished letter of a patient is ever claimed: never two in one batch
    assert target.calls == [2, 1, 1]
    assert outbox.counts(outbox_engine)[outbox.DELIVERED] == 4
    repository = Repository(outbox_engine)
    assert plan_titles(repository, 1) == ["version 3"]
    plan_id = repository.search("CarePlan", [("identifier", f"{PLANS}|plan-1")])["entry"][0][
        "resource"]["id"]
    history = repository.history("CarePlan", plan_id)
    assert [e["resource"]["title"] for e in history["entry"]] == [
        "version 3", "version 2", "version 1"]


def test_a_batch_the_target_fails_on_unexpectedly_is_sent_again_letter_by_letter(
    outbox_engine: Engine,
) -> None:
    class BrokenBatches(CountingTarget):
        def send_many(self, bundles: list[dict[str, Any]], **options: Any) -> list[Any]:
            self.calls.append(len(bundles))
            raise RuntimeError("a bug in the batch path")  # cannot be produced for real

    enqueue(outbox_engine, [(letter_bundle(n), f"patient-{n}") for n in range(3)])
    target = BrokenBatches(outbox_engine)
    Pusher(outbox_engine, target, settings=settings()).run_once()
    assert target.calls == [3, 1, 1, 1]
    assert outbox.counts(outbox_engine)[outbox.DELIVERED] == 3


def test_results_of_a_batch_are_recorded_only_for_claims_still_held(
    outbox_engine: Engine,
) -> None:
    enqueue(outbox_engine, [(letter_bundle(n), f"patient-{n}") for n in range(2)])
    first, second = outbox.claim(outbox_engine, lease_seconds=-1, limit=2)  # expired at once
    outbox.renew(outbox_engine, first, lease_seconds=60)
    [taken_over] = outbox.claim(outbox_engine, lease_seconds=60, limit=2)  # another worker
    assert taken_over.entry_id == second.entry_id
    recorded = outbox.mark_delivered_many(outbox_engine, [(first, {"locations": ["a"]}),
                                                         (second, {"locations": ["b"]})])
    assert recorded == [True, False]
    entry = outbox.get_entry(outbox_engine, second.entry_id)
    assert entry is not None and entry.status == outbox.PENDING
    assert entry.claim_token == taken_over.token
    done = outbox.get_entry(outbox_engine, first.entry_id)
    assert done is not None and done.status == outbox.DELIVERED
    assert done.result_json() == {"locations": ["a"]}


def test_each_letter_of_a_batch_queues_its_subscription_notifications_before_delivered() -> None:
    from sqlmodel import Session

    from adapter.coordination import subscriptions
    from adapter.coordination.coordinators import CsvCoordinators
    from adapter.coordination.enrichment import enrich
    from adapter.store.db import get_engine
    from tests.coordination.letters import synthetic_conversion
    from tests.support.paths import FIXTURES

    engine = get_engine()
    with Session(engine) as session:
        subscriptions.create(session, {
            "resourceType": "Subscription", "status": "requested", "reason": "test",
            "criteria": "CommunicationRequest?event-type=SOR",
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}})
        session.commit()
    directory = CsvCoordinators(FIXTURES / "coordination" / "local_directory.csv")
    letters = [enrich(synthetic_conversion(ins=f"27903512151{n:04d}", set_id=f"1.2.250.1.99.{n}"),
                      directory).bundle for n in range(3)]
    enqueue(engine, [(bundle, f"patient-{n}") for n, bundle in enumerate(letters)])
    target = CountingTarget(engine)
    pusher = Pusher(engine, target, settings=settings(), after_push=subscriptions.after_push)
    pusher.run_once()
    assert target.calls == [3]
    assert outbox.counts(engine)[outbox.DELIVERED] == 3
    notifications = [entry for entry in outbox.entries(engine)
                     if entry.kind == subscriptions.OUTBOX_KIND]
    assert len(notifications) == 3  # one per letter of the batch
    references = {entry.payload_json()["reference"] for entry in notifications}
    assert len(references) == 3 and all(r.startswith("CommunicationRequest/") for r in references)


def test_an_entry_queued_with_its_body_in_its_row_is_still_sent_whole(
    outbox_engine: Engine,
) -> None:
    # entries queued before bodies got a table of their own keep them in `outbox_entry.payload`
    with session_scope(outbox_engine) as session:
        old = outbox.OutboxEntry(kind=FHIR_TRANSACTION, key="patient-1",
                                 payload=orjson.dumps(letter_bundle(1)))
        session.add(old)
        session.flush()
        old_id = old.id or 0
    [new_id] = enqueue(outbox_engine, [(letter_bundle(2), "patient-2")])
    held = outbox.claim(outbox_engine, lease_seconds=60, limit=5)
    assert [claim.payload_json() for claim in held] == [letter_bundle(1), letter_bundle(2)]
    for entry_id, letter in ((old_id, 1), (new_id, 2)):
        entry = outbox.get_entry(outbox_engine, entry_id)
        assert entry is not None and entry.payload_json() == letter_bundle(letter)
    assert [e.payload_json() for e in outbox.entries(outbox_engine)] == [
        letter_bundle(1), letter_bundle(2)]


def _delivered(engine: Engine, ids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = [outbox.get_entry(engine, entry_id) for entry_id in ids]
        if all(entry is not None and entry.status == outbox.DELIVERED for entry in entries):
            return True
        time.sleep(0.01)
    return False


def test_after_a_small_batch_letters_gather_before_the_next_one(outbox_engine: Engine) -> None:
    target = CountingTarget(outbox_engine)
    gathering = Settings(push_gather_seconds=1.0)
    pusher = Pusher(outbox_engine, target, settings=gathering, threads=1, batch_size=8).start()
    try:
        first = enqueue(outbox_engine, [(letter_bundle(0), "patient-0")])
        notify()
        assert _delivered(outbox_engine, first, timeout=10)
        # the pusher now waits for more: letters arriving one by one meanwhile go together
        later = []
        for n in range(1, 4):
            later += enqueue(outbox_engine, [(letter_bundle(n), f"patient-{n}")])
            notify()
        assert _delivered(outbox_engine, later, timeout=10)
    finally:
        pusher.stop()
    assert target.calls == [1, 3]


def test_full_batches_go_one_after_the_other_without_waiting(outbox_engine: Engine) -> None:
    target = CountingTarget(outbox_engine)
    ids = enqueue(outbox_engine, [(letter_bundle(n), f"patient-{n}") for n in range(16)])
    waiting_long = Settings(push_gather_seconds=60.0)
    pusher = Pusher(outbox_engine, target, settings=waiting_long, threads=1, batch_size=8)
    pusher.start()
    try:
        # a wait after either full batch would hold the last letters for a minute
        assert _delivered(outbox_engine, ids, timeout=30)
    finally:
        pusher.stop()
    assert target.calls == [8, 8]


def test_only_a_target_taking_several_letters_at_once_makes_them_gather(
        outbox_engine: Engine) -> None:
    class OneAtATime:  # an HTTP server's shape: one bundle per request
        def send(self, bundle: dict[str, Any], **options: Any) -> dict[str, Any]:
            raise AssertionError("not sent in this test")

        def close(self) -> None:
            pass

    assert Pusher(outbox_engine, CountingTarget(outbox_engine), settings=settings())._gathers()
    assert not Pusher(outbox_engine, OneAtATime(), settings=settings())._gathers()  # type: ignore[arg-type]
    no_wait = Settings(push_gather_seconds=0)
    assert not Pusher(outbox_engine, CountingTarget(outbox_engine), settings=no_wait)._gathers()
