"""On PostgreSQL, letters from one hospital are delivered side by side: a delivery waits only
for a transaction that writes what it writes, not for one that merely names the same hospital,
author or practitioners (every letter of a hospital does). Two pushers, or two instances, used
to deliver fewer letters a second than one. Nor does a letter deadlock with a change that
recomputes the grants of hundreds of patients.

A transaction is held open for real: a trigger makes its insert of one patient wait on an
advisory lock the test holds, with every lock it took at its start still held."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapter.mapping import convert_letter
from adapter.record.repository import Repository
from adapter.record.transaction import criteria_key, lock_keys, parse_entry
from adapter.record.write_locks import within_lock_budget
from adapter.store.db import get_engine
from adapter.store.locking import MAX_KEYS, _key_hash
from tests.record.bundles import IDNAT_PS
from tests.support.letter_variants import ins_of, letter_variant
from tests.support.waiting import wait_for

pytestmark = pytest.mark.postgres
_PAUSE = 727_001  # the advisory key the held transaction waits on
_GROUP = 8  # letters a pusher hands the record at once (push.worker.BATCH_SIZE)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = get_engine(postgres_url)
    yield engine
    engine.dispose()


def _letters(first: int, count: int) -> list[dict[str, Any]]:
    return [convert_letter(letter_variant(n)).bundle for n in range(first, first + count)]


def _pause_inserts_of_patient(engine: Engine, n: int) -> None:
    """A transaction that writes patient `n` waits, at that insert, for `_PAUSE`."""
    with engine.begin() as connection:
        connection.execute(text(f"""
            CREATE FUNCTION pause_here() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_advisory_xact_lock_shared({_PAUSE}); RETURN NEW; END $$;
            CREATE TRIGGER pause_patient AFTER INSERT ON record_resource FOR EACH ROW
            WHEN (NEW.resource_type = 'Patient' AND NEW.body LIKE '%{ins_of(n)}%')
            EXECUTE FUNCTION pause_here()"""))


def _waiting_on_pause(engine: Engine) -> bool:
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = 0 AND objid = :key AND objsubid = 1"), {"key": _PAUSE}).scalar())


def _deliver(repository: Repository, letters: list[dict[str, Any]]) -> list[Any]:
    if len(letters) == 1:
        return [repository.transaction(letters[0], validated=True)]
    return repository.transactions(letters, validated=[True] * len(letters))


@pytest.mark.parametrize("group", [1, _GROUP], ids=["one-letter", "a-pushers-group"])
def test_a_hospitals_letters_do_not_wait_for_each_other(engine: Engine, group: int) -> None:
    repository = Repository(engine)
    _deliver(repository, _letters(0, 1))  # the hospital, its authors and practitioners exist
    _pause_inserts_of_patient(engine, 1)
    held_answers: list[Any] = []
    with engine.connect() as pause:
        pause.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PAUSE})
        held = threading.Thread(target=lambda: held_answers.extend(
            _deliver(repository, _letters(1, group))))
        held.start()
        try:
            wait_for(lambda: _waiting_on_pause(engine),
                     "the first delivery never reached the pause")
            other = threading.Thread(target=_deliver, args=(repository,
                                                            _letters(1 + group, group)))
            other.start()
            other.join(timeout=60)
            # other patients of the same hospital: delivered while the first is still open
            assert not other.is_alive(), "the second delivery waited for the first"
            assert held.is_alive()
        finally:
            pause.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PAUSE})
            pause.commit()
            held.join(timeout=60)
    assert len(held_answers) == group
    assert all(isinstance(answer, dict) for answer in held_answers), held_answers
    with engine.connect() as connection:
        patients, hospitals = connection.execute(text(
            "SELECT count(*) FILTER (WHERE resource_type = 'Patient'), "
            "count(*) FILTER (WHERE resource_type = 'Organization' "
            "AND body LIKE '%1750803447%') FROM record_resource")).one()
    assert (patients, hospitals) == (1 + 2 * group, 1)


def _key_held_by_other(engine: Engine, key: str) -> bool:
    """Whether a transaction waits for the advisory lock of `key` (`locking.lock_keys`)."""
    value = _key_hash(key) & 0xFFFF_FFFF_FFFF_FFFF
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = :high AND objid = :low AND objsubid = 1"),
            {"high": value >> 32, "low": value & 0xFFFF_FFFF}).scalar())


def test_a_create_left_unlocked_locks_its_key_when_what_it_matched_is_gone(
        engine: Engine) -> None:
    """A letter names its hospital, found when its locks were taken, so left unlocked; by the
    time its plan looks, another transaction has deleted it. Creating it again without the lock
    could make two of it (another letter does the same): it must run again holding the key."""
    repository = Repository(engine)
    _deliver(repository, _letters(0, 1))
    letter = _letters(1, 1)[0]
    hospital = next(e for e in letter["entry"] if "1750803447" in
                    e["request"].get("ifNoneExist", ""))
    hospital_key = criteria_key("Organization", parse_entry(0, hospital).criteria or [])
    patient = next(e for e in letter["entry"] if e["request"]["url"] == "Patient")
    [hospital_id] = repository.search("Organization", [
        ("identifier", hospital["request"]["ifNoneExist"].split("=", 1)[1])])["entry"]
    _pause_inserts_of_patient(engine, 1)
    deleting = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE",
                     "url": f"Organization/{hospital_id['resource']['id']}"}},
        {"resource": {"resourceType": "Patient",
                      "identifier": patient["resource"]["identifier"]},
         "request": patient["request"]}]}  # the letter's patient: it waits for this one's key
    answers: list[Any] = []
    with engine.connect() as pause, engine.connect() as key_holder:
        pause.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PAUSE})
        first = threading.Thread(target=lambda: answers.append(
            repository.transaction(deleting)))
        first.start()
        second = threading.Thread(target=lambda: answers.append(
            repository.transaction(letter, validated=True)))
        try:
            wait_for(lambda: _waiting_on_pause(engine), "the deletion never reached the pause")
            second.start()
            wait_for(lambda: _key_held_by_other(engine, criteria_key(
                "Patient", parse_entry(0, patient).criteria or [])),
                "the letter did not wait for its patient's key")
            key_holder.execute(text("SELECT pg_advisory_lock(:key)"),
                               {"key": _key_hash(hospital_key)})
            pause.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PAUSE})
            first.join(timeout=60)
            wait_for(lambda: _key_held_by_other(engine, hospital_key),
                   "the letter created the hospital again without its key")
        finally:
            pause.execute(text("SELECT pg_advisory_unlock_all()"))
            key_holder.execute(text("SELECT pg_advisory_unlock_all()"))
            pause.commit()
            key_holder.commit()
            second.join(timeout=60)
    assert len(answers) == 2 and all(isinstance(a, dict) for a in answers), answers
    found = repository.search("Organization", [
        ("identifier", hospital["request"]["ifNoneExist"].split("=", 1)[1])])
    assert len(found["entry"]) == 1


def test_a_group_whose_create_was_left_unlocked_is_written_right_when_it_must_lock(
        engine: Engine) -> None:
    """In a pusher's group, a letter's hospital is deleted by an earlier bundle of the same
    group: the letter must create it again, holding its key. The group's earlier letters were
    already planned (their references rewritten to the ids chosen then): planned again, each
    must still point at what it wrote."""
    repository = Repository(engine)
    _deliver(repository, _letters(0, 1))
    [hospital] = repository.search("Organization", [
        ("identifier", "urn:oid:1.2.250.1.71.4.2.2|1750803447")])["entry"]
    deleting = {"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {
        "method": "DELETE", "url": f"Organization/{hospital['resource']['id']}"}}]}
    first, second = _letters(1, 2)
    answers = repository.transactions([first, deleting, second], validated=[True] * 3)
    assert all(isinstance(answer, dict) for answer in answers), answers
    with engine.connect() as connection:
        stored = {(kind, resource_id) for kind, resource_id in connection.execute(text(
            "SELECT resource_type, resource_id FROM record_resource WHERE NOT deleted"))}
        plans = [json.loads(body) for (body,) in connection.execute(text(
            "SELECT body FROM record_resource WHERE resource_type = 'CarePlan'"))]
    assert len(plans) == 3
    for plan in plans:  # every plan's patient is one the record holds
        assert tuple(plan["subject"]["reference"].split("/")) in stored, plan["subject"]
    assert len(repository.search("Organization", [
        ("identifier", "urn:oid:1.2.250.1.71.4.2.2|1750803447")])["entry"]) == 1


_GP_PATIENTS = 300  # more patients than MAX_KEYS: their grants' refresh locks whole slots


def _gp_in_care_teams(count: int) -> list[dict[str, Any]]:
    gp = {"reference": "Practitioner/gp"}
    resources: list[dict[str, Any]] = [{"resourceType": "Practitioner", "id": "gp",
                                        "identifier": [{"system": IDNAT_PS,
                                                        "value": "810000000999"}]}]
    for n in range(count):
        resources += [{"resourceType": "Patient", "id": f"gp-p{n}"},
                      {"resourceType": "CareTeam", "id": f"gp-ct{n}", "status": "active",
                       "subject": {"reference": f"Patient/gp-p{n}"},
                       "participant": [{"member": gp}]}]
    return resources


def _waiting_for_a_slot(engine: Engine) -> bool:
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = 1")).scalar())  # slots: locking._SLOT_CLASS


def test_a_gp_in_many_care_teams_changing_does_not_deadlock_with_a_letter(
        engine: Engine) -> None:
    """The GP's change recomputes the grants of hundreds of patients, whose locks it takes
    after its plan; a letter in flight holds some of the same slots. The GP's transaction
    waited for them while holding the feed's position, which the letter waits for at its end:
    PostgreSQL found the cycle and aborted one of them."""
    repository = Repository(engine)
    _deliver(repository, _letters(0, 1))
    repository.import_resources(_gp_in_care_teams(_GP_PATIENTS))
    _pause_inserts_of_patient(engine, 1)
    failures: list[str] = []

    def run(work: Callable[[], Any]) -> None:
        try:
            work()
        except Exception as error:  # the test's verdict, below
            failures.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")

    gp_change = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Practitioner", "id": "gp", "identifier": [
            {"system": IDNAT_PS, "value": "810000000998"}]},
        "request": {"method": "PUT", "url": "Practitioner/gp"}}]}
    with engine.connect() as pause:
        pause.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PAUSE})
        letter = threading.Thread(target=run, args=(lambda: _deliver(repository,
                                                                     _letters(1, 1)),))
        change = threading.Thread(target=run, args=(lambda: repository.transaction(gp_change),))
        try:
            letter.start()
            wait_for(lambda: _waiting_on_pause(engine), "the letter never reached the pause")
            change.start()
            wait_for(lambda: _waiting_for_a_slot(engine), "the GP's change never waited")
        finally:
            pause.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PAUSE})
            pause.commit()
            letter.join(timeout=60)
            change.join(timeout=60)
    assert failures == []
    assert not (letter.is_alive() or change.is_alive())
    with engine.connect() as connection:
        granted = connection.execute(text(
            "SELECT count(DISTINCT patient_id) FROM record_patient_grant "
            "WHERE value = '810000000998'")).scalar()
    assert granted == _GP_PATIENTS


def test_a_pushers_group_is_cut_into_runs_within_the_lock_budget(engine: Engine) -> None:
    """Every run's keys stay within MAX_KEYS, the letters in their order; a bundle over the
    budget on its own goes alone."""
    repository = Repository(engine)
    _deliver(repository, _letters(0, 1))
    group = [[parse_entry(i, raw, validated=True) for i, raw in enumerate(letter["entry"])]
             for letter in _letters(1, 12)]
    huge = [parse_entry(i, {"resource": {"resourceType": "Patient"}, "request": {
        "method": "POST", "url": "Patient",
        "ifNoneExist": f"identifier=urn:test|{i}"}}) for i in range(MAX_KEYS + 1)]
    runs, matched = within_lock_budget(engine, [*group[:6], huge, *group[6:]],
                                       lambda entries: entries)
    assert [entries for run in runs for entries in run] == [*group[:6], huge, *group[6:]]
    assert [huge] in runs and len(runs) >= 3
    for run in runs:
        if run != [huge]:
            keys = {key for entries in run for key in lock_keys(entries, matched or frozenset())}
            assert len(keys) <= MAX_KEYS
