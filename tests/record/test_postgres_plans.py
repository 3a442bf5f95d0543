"""On PostgreSQL, what a pull or a delivery reads must follow what it asks, not how big the
record has grown. Read in PostgreSQL's plans (`EXPLAIN ANALYZE`, each statement run again
with its own parameters): the rows of a table each statement reads, kept or filtered out.

- A professional's pull reads the feed at their own resources, whatever else the record
  received since their last pull (at 20 letters/s, a pull three seconds after the last opens a
  window of ~1,800 changes, nearly none of them theirs). Between two `ANALYZE`s the newest
  changes lie past the statistics' last bucket, and the planner, free to start from the
  window's positions, walked the window (or the whole feed), looking up each change's resource
  and patient (measured under load: ~1,200 blocks, 2 ms, per pull of a reader of twenty
  patients).
- A letter's conditional look-ups read the tokens it names, not the token table.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from sqlalchemy import text

from adapter.auth.principal import Principal
from adapter.auth.rules import token_organizations
from adapter.mapping import convert_letter
from adapter.record import feed
from adapter.record.repository import Repository
from adapter.record.transaction import SOURCE_TAG
from adapter.store.db import get_engine
from tests.record.bundles import HOSPITAL, IDNAT_PS, INS
from tests.support.letter_variants import letter_variant
from tests.support.statements import caught, executions

pytestmark = pytest.mark.postgres
READER = "810000000001"
OTHERS = ("810000000002", "810000000003")
WINDOW_PATIENTS = 700  # 4 resources each: a window of 2,800 changes, none the reader's
BACKGROUND_PATIENTS = 3_000
READER_PATIENTS = 40
# Rows of the feed a statement may read: the reader's own resources are ~160; walking the
# window reads its 2,800, walking the feed whole its ~15,000.
_BOUND = 1_000


def _practitioners() -> list[dict[str, Any]]:
    """The reader and the others, as the directory knows them."""
    return [{"resourceType": "Practitioner", "id": idnat,
             "identifier": [{"system": IDNAT_PS, "value": idnat}]} for idnat in (READER, *OTHERS)]


def _patients(first: int, count: int, members: tuple[str, ...]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for n in range(first, first + count):
        patient = {"reference": f"Patient/p{n}"}
        resources += [
            {"resourceType": "Patient", "id": f"p{n}",
             "identifier": [{"system": INS, "value": f"{n:015d}"}]},
            {"resourceType": "CareTeam", "id": f"ct{n}", "status": "active", "subject": patient,
             "participant": [{"member": {"reference": f"Practitioner/{m}"}} for m in members]},
            {"resourceType": "CarePlan", "id": f"cp{n}", "status": "active", "intent": "plan",
             "identifier": [{"system": "urn:liaison:careplan", "value": f"cp{n}"}],
             "subject": patient},
            {"resourceType": "Encounter", "id": f"e{n}", "status": "finished",
             "class": {"code": "IMP"}, "subject": patient}]
    return resources


def _rows_read(engine: Any, statement: str, parameters: Any, table: str) -> int:
    """Rows of `table` the statement reads, kept or filtered out, run again under EXPLAIN
    ANALYZE."""
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        if os.environ.get("LIAISON_SHOW_PLANS"):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            print("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
        plan = cursor.fetchone()[0]
    read = 0
    nodes = [(plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == table:  # removed rows: per loop
            read += node["Actual Loops"] * (node["Actual Rows"]
                                            + node.get("Rows Removed by Filter", 0))
        nodes += node.get("Plans", [])
    return read


def _blocks_read(engine: Any, statement: str, parameters: Any) -> int:
    """Buffers (pages) the statement reads, run again under EXPLAIN (ANALYZE, BUFFERS)."""
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters)
        plan = cursor.fetchone()[0]
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    return int(top["Shared Hit Blocks"] + top["Shared Read Blocks"])


@pytest.mark.parametrize("theirs", [False, True], ids=["none-theirs", "some-theirs"])
def test_a_pull_after_a_large_window_starts_from_the_readers_patients_not_the_window(
        postgres_url: str, theirs: bool) -> None:
    engine = get_engine(postgres_url)
    try:
        repository = Repository(engine)
        repository.import_resources(_practitioners() + _patients(0, READER_PATIENTS, (READER,))
                                    + _patients(READER_PATIENTS, BACKGROUND_PATIENTS, OTHERS))
        reader = Principal(kind="professional", idnat=READER, scopes=("user/*.rs",))
        page = repository.changes(reader, count=500)
        assert len(page["entry"]) == 4 * READER_PATIENTS
        cursor = page["link"][-1]["url"].split("_cursor=")[1]
        with engine.connect() as connection:  # statistics of the record as it was then
            connection.execute(text("ANALYZE"))
            for table in ("record_change", "record_resource", "record_patient_grant"):
                connection.execute(text(f"ALTER TABLE {table} "
                                        "SET (autovacuum_enabled = false)"))
            connection.commit()
        first = READER_PATIENTS + BACKGROUND_PATIENTS
        repository.import_resources(_patients(first, WINDOW_PATIENTS, OTHERS))
        if theirs:  # one of their patients' plan revised, and a patient new to them
            plan = _patients(0, 1, (READER,))[2]
            repository.update("CarePlan", plan["id"], {**plan, "status": "completed"})
            repository.import_resources(_patients(first + WINDOW_PATIENTS, 1, (READER,)))

        with caught(engine) as ran:
            page = repository.changes(reader, cursor=cursor, count=500)
        assert len(page["entry"]) == (5 if theirs else 0)
        selects = [(statement, parameters) for statement, parameters in ran
                   if statement.lstrip().upper().startswith("SELECT")]
        assert selects
        walking = [(rows, " ".join(statement.split())[:200]) for statement, parameters in selects
                   if (rows := _rows_read(engine, statement, parameters, "record_change")) > _BOUND]
        assert walking == []
        if not theirs:  # asked by the patients' last positions: a row each, not their resources
            [quiet] = [(s, p) for s, p in selects if "record_patient_change" in s]
            assert _rows_read(engine, *quiet, "record_resource") == 0
            assert _rows_read(engine, *quiet, "record_patient_change") <= READER_PATIENTS
    finally:
        engine.dispose()


def test_each_page_of_a_big_readers_first_pull_reads_its_own_patients_not_all_of_theirs(
        postgres_url: str) -> None:
    """A professional of many patients pulls for the first time, a page at a time: each page
    reads the rows of the patients it brings, not every resource of the reader's patients
    again (sorted again at every page: thousands of rows a page, pages that grow with them)."""
    patients, page_size = 600, 100  # the reader's 2,400 resources
    engine = get_engine(postgres_url)
    try:
        repository = Repository(engine)
        # the record as letters fill it: the reader's patients among four times as many others'
        resources = _practitioners()
        for n in range(patients):
            resources += _patients(5 * n, 1, (READER,)) + _patients(5 * n + 1, 4, OTHERS)
        repository.import_resources(resources)
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
        reader = Principal(kind="professional", idnat=READER, scopes=("user/*.rs",))
        seen: list[str] = []
        heaviest = 0
        cursor = None
        while True:
            with caught(engine) as ran:
                page = repository.changes(reader, cursor=cursor, count=page_size)
            seen += [entry["fullUrl"] for entry in page["entry"]]
            heaviest = max([heaviest, *(_rows_read(engine, statement, parameters,
                                                   "record_resource")
                                        for statement, parameters in ran
                                        if statement.lstrip().upper().startswith("SELECT"))])
            cursor = page["link"][-1]["url"].split("_cursor=")[1]
            if all(link["relation"] != "next" for link in page["link"]):
                break
        assert len(seen) == len(set(seen)) == 4 * patients
        assert heaviest <= 3 * page_size
    finally:
        engine.dispose()


HOSPITAL_PATIENTS = 1_500


def _hospitals_record(engine: Any) -> Principal:
    """A record of `HOSPITAL_PATIENTS` patients, every one of them and of their resources
    granted to one hospital (as if its letters had written them all): that hospital."""
    Repository(engine).import_resources(_patients(0, HOSPITAL_PATIENTS, OTHERS))
    hospital = Principal(kind="hospital", organization=HOSPITAL, scopes=("system/*.rs",))
    [org] = token_organizations(hospital)
    with engine.connect() as connection:
        connection.execute(text(
            "INSERT INTO record_resource_grant (resource_pk, kind, value) "
            "SELECT pk, 'org', :org FROM record_resource WHERE patient_id IS NOT NULL"),
            {"org": org})
        connection.execute(text(
            "INSERT INTO record_patient_grant (patient_id, kind, value, granted_seq) "
            "SELECT DISTINCT patient_id, 'org', :org, 1 FROM record_resource "
            "WHERE patient_id IS NOT NULL"), {"org": org})
        connection.execute(text("ANALYZE"))
        connection.commit()
    return hospital


def test_a_hospitals_search_checks_the_rows_it_finds_not_every_grant_it_holds(
        postgres_url: str) -> None:
    """A hospital's grants grow with every letter it sends (a grant on each resource, on each
    patient): a search for one patient's plan checks the grants of the rows it finds, not all
    of the hospital's, hashed again at every statement."""
    engine = get_engine(postgres_url)
    try:
        hospital = _hospitals_record(engine)
        with caught(engine) as ran:
            found = Repository(engine).search(
                "CarePlan", [("patient.identifier", f"{7:015d}")], hospital)
        assert [entry["resource"]["id"] for entry in found["entry"]
                if entry.get("search", {}).get("mode") == "match"] == ["cp7"]
        [(statement, parameters)] = [(s, p) for s, p in ran if "record_resource_grant" in s]
        for table in ("record_resource_grant", "record_patient_grant"):
            assert _rows_read(engine, statement, parameters, table) <= 10
    finally:
        engine.dispose()


def test_a_hospitals_pull_asks_for_the_grants_given_in_its_window_not_all_of_them(
        postgres_url: str) -> None:
    """Between two pulls of a hospital, others' letters arrive: which of its patients were
    granted to it in that window is read from the few grants given there, and whether the
    window's rows are its own from each row's grant, not from all the grants it ever
    received."""
    engine = get_engine(postgres_url)
    try:
        hospital = _hospitals_record(engine)
        repository = Repository(engine)
        with engine.connect() as connection:
            cursor = feed.Cursor(feed.head(connection)).encode()
        repository.import_resources(_patients(HOSPITAL_PATIENTS, 50, OTHERS))
        with caught(engine) as ran:
            page = repository.changes(hospital, cursor=cursor, count=100)
        assert page["entry"] == []
        granted = [(s, p) for s, p in ran if "SELECT DISTINCT record_patient_grant" in s]
        rows = [(s, p) for s, p in ran if "record_patient_grant" in s
                and "SELECT record_resource.pk, record_resource.resource_type" in s]
        assert granted and rows
        asked = granted + rows
        for statement, parameters in asked:
            assert _rows_read(engine, statement, parameters, "record_patient_grant") <= 10
    finally:
        engine.dispose()


def test_a_letters_look_ups_read_its_own_identifiers_not_the_whole_token_index(
        postgres_url: str) -> None:
    """Delivering a letter looks up, in one statement, every identifier its conditional
    creates name (patient, professionals, organisations, its Provenance's tag): given them as
    three lists (types, parameters, codes), PostgreSQL scanned every token of the record
    (measured under load at 100,000 resources: 45 ms a letter, more than the rest of its
    delivery)."""
    engine = get_engine(postgres_url)
    try:
        repository = Repository(engine)
        repository.import_resources(_patients(0, BACKGROUND_PATIENTS, OTHERS))
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
        letter = convert_letter(letter_variant(1)).bundle  # the official example, mapped
        with caught(engine) as ran:
            repository.transaction(letter, validated=True)
        selects = [(statement, parameters) for statement, parameters in ran
                   if statement.lstrip().upper().startswith("SELECT")]
        assert any("record_token" in statement for statement, _ in selects)
        scanning = [(rows, " ".join(statement.split())[:200]) for statement, parameters in selects
                    if (rows := _rows_read(engine, statement, parameters, "record_token"))
                    > _BOUND]
        assert scanning == []
    finally:
        engine.dispose()


def test_a_letters_new_resources_are_found_by_their_own_keys_not_every_type_by_every_id(
        postgres_url: str) -> None:
    """Once a letter's new resources are written (COPY returns no key), their keys are read
    back by (type, id) pair: given as two lists, types and ids, PostgreSQL probed the identity
    index for each type with each id (~20 × ~30: 1,400 pages a letter, measured under load)."""
    engine = get_engine(postgres_url)
    try:
        repository = Repository(engine)
        repository.import_resources(_patients(0, BACKGROUND_PATIENTS, OTHERS))
        letter = convert_letter(letter_variant(1)).bundle
        with caught(engine) as ran:
            repository.transaction(letter, validated=True)
        look_ups = [(statement, parameters) for statement, parameters in ran if re.match(
            r"SELECT (record_resource\.)?pk, (record_resource\.)?resource_type, "
            r"(record_resource\.)?resource_id FROM ", " ".join(statement.split()))]
        assert look_ups
        keys = len(letter["entry"])
        read = [_blocks_read(engine, *look_up) for look_up in look_ups]
        assert max(read) <= 8 * keys, read
    finally:
        engine.dispose()


def test_a_letters_grants_go_in_one_statement_not_one_per_resource(postgres_url: str) -> None:
    """Each statement is a message the server executes and answers, and its client waits for:
    the sending hospital's grant on each resource of its letter was an INSERT of its own (21 of
    the 38 statements of a letter's delivery)."""
    engine = get_engine(postgres_url)
    try:
        repository = Repository(engine)
        letter = convert_letter(letter_variant(1)).bundle
        letter["meta"] = {"tag": [{"system": SOURCE_TAG, "code": HOSPITAL}]}  # as accepted
        with executions(engine) as sent:
            repository.transaction(letter, validated=True)
        with engine.connect() as connection:
            granted = connection.execute(text(
                "SELECT count(*) FROM record_resource_grant WHERE kind = 'org' AND value = :org"),
                {"org": HOSPITAL}).scalar_one()
        assert granted >= 10
        assert [(" ".join(statement.split())[:120], times)
                for statement, times in sent if times > 1] == []
    finally:
        engine.dispose()
