"""Several transaction bundles applied in one database transaction (`Repository.transactions`):
the same record and the same answers as one by one, and one bad bundle costs the others
nothing. On SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapter.coordination import coordinate
from adapter.errors import LiaisonError, PreconditionFailed
from adapter.mapping import convert_letter
from adapter.record import transaction
from adapter.record.repository import Repository
from adapter.store.db import engine_for, get_engine, init_db
from tests.push.bundles import PLANS, letter_bundle
from tests.support.letter_variants import letter_variant


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Engine]]:
    """Two fresh, empty databases of the same kind: one per way of applying the bundles."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        urls = [server.create_database(f"liaison_group_{uuid.uuid4().hex[:10]}")
                for _ in range(2)]
    else:
        urls = []
        for name in ("one-by-one", "grouped"):
            (tmp_path / name).mkdir()
            urls.append(f"sqlite:///{tmp_path / name / 'liaison.db'}")
    engines = [engine_for(url) for url in urls]
    for engine in engines:
        init_db(engine)
    yield engines
    for engine in engines:
        engine.dispose()


@pytest.fixture
def restart_ids(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Ids minted from a counter, restarted by calling the fixture's value: two databases fed
    the same bundles in the same order then hold the same ids, and compare row by row."""
    counter = itertools.count()

    def restart() -> None:
        nonlocal counter
        counter = itertools.count()

    monkeypatch.setattr(transaction, "new_id", lambda: f"id-{next(counter)}")
    return restart


def mapped_letters() -> list[dict[str, Any]]:
    """Real letters as liaison maps them: they share practitioners and organisations, so a
    later bundle's conditional creates must find what an earlier one created; the last one is
    the second version of the first letter (it updates the CarePlan)."""
    engine = get_engine()
    letters = [letter_variant(n) for n in range(1, 5)] + [letter_variant(1, version=2)]
    return [coordinate(convert_letter(letter), engine, in_place=True).bundle
            for letter in letters]


def _without_moment(body: str | None) -> Any:
    if body is None:
        return None
    resource = orjson.loads(body)
    resource.get("meta", {}).pop("lastUpdated", None)
    return resource


def record_content(engine: Engine) -> dict[str, list[Any]]:
    """Everything the record holds, moments of writing left out."""
    queries = {
        "resources": "SELECT resource_type, resource_id, version_id, deleted, patient_id, body "
                     "FROM record_resource",
        "versions": "SELECT resource_type, resource_id, version_id, method, deleted, body "
                    "FROM record_version",
        "tokens": "SELECT r.resource_type, r.resource_id, t.param, t.system, t.code "
                  "FROM record_token t JOIN record_resource r ON r.pk = t.resource_pk",
        "references": "SELECT r.resource_type, r.resource_id, x.param, x.target_type, "
                      "x.target_id FROM record_reference x "
                      "JOIN record_resource r ON r.pk = x.resource_pk",
        "dates": "SELECT r.resource_type, r.resource_id, d.param, d.low, d.high "
                 "FROM record_date d JOIN record_resource r ON r.pk = d.resource_pk "
                 "WHERE d.param <> '_lastUpdated'",
        "strings": "SELECT r.resource_type, r.resource_id, s.param, s.normalized, s.exact "
                   "FROM record_string s JOIN record_resource r ON r.pk = s.resource_pk",
        "patient grants": "SELECT patient_id, kind, value, valid_from, valid_until "
                          "FROM record_patient_grant",
        "message grants": "SELECT r.resource_id, g.kind, g.value FROM record_resource_grant g "
                          "JOIN record_resource r ON r.pk = g.resource_pk",
    }
    content: dict[str, list[Any]] = {}
    with engine.connect() as connection:
        for name, query in queries.items():
            rows = [list(row) for row in connection.execute(text(query))]
            if name in ("resources", "versions"):
                for row in rows:
                    row[-1] = _without_moment(row[-1])
            content[name] = sorted(rows, key=repr)
    return content


def _answer_shape(answer: dict[str, Any] | LiaisonError) -> Any:
    """A response bundle without its moments (or the error's status and message)."""
    if isinstance(answer, LiaisonError):
        return (answer.http_status, answer.message)
    answer = copy.deepcopy(answer)
    for entry in answer["entry"]:
        entry["response"].pop("lastModified", None)
    return answer


def test_letters_applied_together_leave_the_same_record_and_answers_as_one_by_one(
    two_databases: list[Engine], restart_ids: Callable[[], None],
) -> None:
    bundles = [*mapped_letters(), letter_bundle(7), letter_bundle(8, patient=7),
               letter_bundle(7, version=2)]
    one_by_one, grouped = (Repository(engine) for engine in two_databases)
    alone = [one_by_one.transaction(copy.deepcopy(bundle)) for bundle in bundles]
    restart_ids()
    together = grouped.transactions(copy.deepcopy(bundles))
    assert [_answer_shape(a) for a in together] == [_answer_shape(a) for a in alone]
    assert {entry["response"]["status"] for a in together for entry in a["entry"]} \
        >= {"201 Created", "200 OK"}  # later letters found what earlier ones created
    assert record_content(grouped.engine) == record_content(one_by_one.engine)
    # each letter's copy in its DocumentReference is stored whole
    sent = {content["attachment"].get("data") for bundle in bundles for entry in bundle["entry"]
            if entry["resource"]["resourceType"] == "DocumentReference"
            for content in entry["resource"]["content"]}
    stored = {content["attachment"].get("data")
              for entry in grouped.search("DocumentReference", [("_count", "100")])["entry"]
              for content in entry["resource"]["content"]}
    assert stored == sent and any(data and len(data) > 50_000 for data in stored)


def test_a_bundle_the_record_refuses_fails_alone_and_the_others_are_written(
    two_databases: list[Engine],
) -> None:
    repository = Repository(two_databases[0])
    refused_on_write = letter_bundle(2)
    plan = next(e for e in refused_on_write["entry"]
                if e["resource"]["resourceType"] == "CarePlan")
    plan["request"]["ifMatch"] = 'W/"7"'  # no such version: 412 while writing, not parsing
    refused_on_read = letter_bundle(3)
    refused_on_read["entry"][0]["request"]["url"] = "NoSuchType"
    answers = repository.transactions(
        [letter_bundle(1), refused_on_write, letter_bundle(4), refused_on_read, letter_bundle(5)])
    assert isinstance(answers[1], PreconditionFailed)
    assert isinstance(answers[3], LiaisonError) and answers[3].http_status == 404
    for number in (0, 2, 4):
        assert answers[number]["type"] == "transaction-response"  # type: ignore[index]
    plans = repository.search("CarePlan", [])
    titles = sorted(entry["resource"]["identifier"][0]["value"] for entry in plans["entry"])
    assert titles == ["plan-1", "plan-4", "plan-5"]  # nothing of the refused ones


def test_two_letters_of_one_patient_in_one_group_end_in_their_order(
    two_databases: list[Engine],
) -> None:
    repository = Repository(two_databases[0])
    first, second = repository.transactions(
        [letter_bundle(1, version=1), letter_bundle(1, version=2)])
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["entry"][1]["response"]["status"] == "201 Created"
    assert second["entry"][1]["response"]["location"].endswith("/_history/2")
    plans = repository.search("CarePlan", [("identifier", f"{PLANS}|plan-1")])
    assert [e["resource"]["title"] for e in plans["entry"]] == ["version 2"]
    patients = repository.search("Patient", [])
    assert len(patients["entry"]) == 1  # the second letter found the first one's Patient
    plan_id = plans["entry"][0]["resource"]["id"]
    history = repository.history("CarePlan", plan_id)
    assert [e["resource"]["title"] for e in history["entry"]] == ["version 2", "version 1"]


def test_bundles_that_read_are_answered_one_by_one_in_their_place(
    two_databases: list[Engine],
) -> None:
    repository = Repository(two_databases[0])
    reading = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"CarePlan?identifier={PLANS}|plan-1"}}]}
    _, read, _ = repository.transactions([letter_bundle(1), reading, letter_bundle(1, version=2)])
    assert isinstance(read, dict)
    found = read["entry"][0]["resource"]
    # the read sees the first letter, not the second one that comes after it
    assert [e["resource"]["title"] for e in found["entry"]] == ["version 1"]


def _create_patient(value: str, criteria: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {"resourceType": "Patient",
                     "identifier": [{"system": "urn:test", "value": value}]},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria}}]}


def test_a_conditional_create_with_an_escaped_pipe_finds_exactly_its_resource(
    two_databases: list[Engine],
) -> None:
    repository = Repository(two_databases[0])
    escaped = "identifier=urn:test|a\\|b"
    plain = repository.transaction(_create_patient("a", "identifier=urn:test|a"))
    first, again = repository.transactions([_create_patient("a|b", escaped),
                                            _create_patient("a|b", escaped)])
    alone = repository.transaction(_create_patient("a|b", escaped))
    statuses = [answer["entry"][0]["response"]["status"]  # type: ignore[index]
                for answer in (plain, first, again, alone)]
    assert statuses == ["201 Created", "201 Created", "200 OK", "200 OK"]
    locations = {answer["entry"][0]["response"]["location"].split("/")[1]  # type: ignore[index]
                 for answer in (first, again, alone)}
    assert len(locations) == 1  # the same Patient each time, not the one whose value is "a"
    assert len(repository.search("Patient", [])["entry"]) == 2
