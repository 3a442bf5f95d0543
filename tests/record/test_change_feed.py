"""The change feed (`GET /fhir/_history`, `Repository.changes`): each change a reader may see
comes once, in commit order, paged with an opaque cursor."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from adapter.auth import Principal, issue_token
from adapter.errors import BadRequest
from adapter.record import audit, feed
from adapter.record.pull import cursor_of, pull
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.record.bundles import IDNAT_PS, PCP, letter_bundle, location, post_bundle
from tests.record.conftest import client_for
from tests.support.statements import caught

NURSE = "801111111111"


@pytest.fixture(autouse=True, params=["recent", "long-history"])
def window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test on both ways a window is read: in steps along the feed (what changed in the
    last minutes), and along the reader's own paths (a first pull over a long history)."""
    if request.param == "long-history":
        monkeypatch.setattr(feed, "_SMALL_WINDOW", 0)


def reader(idnat: str = PCP) -> Principal:
    return Principal(kind="professional", idnat=idnat, scopes=("user/*.rs",))


def changed(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, version) of each change, in feed order."""
    found = []
    for entry in bundle["entry"]:
        kind = entry["request"]["url"].split("/")[0]
        found.append((kind, entry["response"]["etag"]))
    return found


def test_pages_give_every_change_once_and_resume_after_the_last(database_url) -> None:  # type: ignore[no-untyped-def]
    repository = Repository(get_engine(database_url) if database_url else None)
    for n in range(4):
        repository.transaction(letter_bundle(ins=str(n), set_id=f"s{n}"))
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = repository.changes(reader(), cursor=cursor, count=3)
        assert len(page["entry"]) <= 3
        seen += page["entry"]
        cursor = cursor_of(page)
        if cursor_of(page, "next") is None:
            break
    urls = [entry["fullUrl"] for entry in seen]
    assert len(urls) == len(set(urls))
    assert sum(url.split("/")[-2] == "CarePlan" for url in urls) == 4
    assert repository.changes(reader(), cursor=cursor)["entry"] == []
    # a new version moves the plan forward: it comes again, once; nothing else of patient 0
    repository.transaction(letter_bundle(ins="0", set_id="s0", version=2))
    again = repository.changes(reader(), cursor=cursor)
    kinds = sorted(kind for kind, _ in changed(again))
    assert kinds == ["CarePlan", "Communication", "DocumentReference", "Provenance"]
    assert all(etag in ('W/"1"', 'W/"2"') for _, etag in changed(again))


def test_a_deletion_is_a_change_without_a_resource(database_url) -> None:  # type: ignore[no-untyped-def]
    repository = Repository(get_engine(database_url) if database_url else None)
    answer = repository.transaction(letter_bundle())
    cursor = cursor_of(pull(repository, reader()))
    plan = location(answer, "CarePlan")
    repository.delete(*plan.split("/"))
    [entry] = repository.changes(reader(), cursor=cursor)["entry"]
    assert entry["request"] == {"method": "DELETE", "url": plan}
    assert entry["response"]["status"] == "204" and "resource" not in entry


def test_a_plan_revoked_between_two_pulls_reaches_the_reader_already_caught_up(
        database_url: str | None) -> None:
    """The hospital revokes a plan the GP has already pulled: nothing else of the patient
    moves (no grant, no other resource), and the GP's next pull brings the plan revoked."""
    repository = Repository(get_engine(database_url) if database_url else None)
    resource_type, plan_id = location(repository.transaction(letter_bundle()),
                                      "CarePlan").split("/")
    repository.transaction(letter_bundle(ins="2", set_id="s2"))
    cursor = cursor_of(pull(repository, reader()))
    plan = repository.read(resource_type, plan_id)
    repository.update(resource_type, plan_id, {**plan, "status": "revoked"})
    [entry] = repository.changes(reader(), cursor=cursor)["entry"]
    assert entry["resource"]["id"] == plan_id and entry["resource"]["status"] == "revoked"


def _as_the_previous_version(engine: Any) -> None:
    """The record's database as the version before `record_patient_change` left it."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("DROP FUNCTION record_note_patient_changes() CASCADE")
        else:
            for event_name in ("insert", "update"):
                connection.exec_driver_sql(f"DROP TRIGGER record_patient_change_on_{event_name}")
        connection.exec_driver_sql("DROP TABLE record_patient_change")


def test_a_record_from_the_previous_version_knows_its_patients_last_changes_once_upgraded(
        database_url: str | None) -> None:
    """A change written before the upgrade, in a window the GP has not pulled yet, is in the
    GP's next pull (the patients' positions are filled from the feed); so is one written
    after it (the database notes it, whoever writes)."""
    from adapter.store.db import init_db

    repository = Repository(get_engine(database_url) if database_url else None)
    resource_type, plan_id = location(repository.transaction(letter_bundle()),
                                      "CarePlan").split("/")
    cursor = cursor_of(pull(repository, reader()))
    _as_the_previous_version(repository.engine)
    repository.delete(resource_type, plan_id)
    init_db(repository.engine)  # this version starts
    [entry] = repository.changes(reader(), cursor=cursor)["entry"]
    assert entry["request"] == {"method": "DELETE", "url": f"{resource_type}/{plan_id}"}
    cursor = cursor_of(repository.changes(reader(), cursor=cursor))
    repository.transaction(letter_bundle(version=2))
    assert "CarePlan" in [kind for kind, _ in changed(
        repository.changes(reader(), cursor=cursor))]


def test_a_record_without_the_feeds_position_row_finds_it_from_its_changes(
        database_url: str | None) -> None:
    """A record written before the feed's position had a row of its own: a reader's pull
    asks where the feed stands from the changes themselves, and brings what is new."""
    from sqlalchemy import text

    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(ins="1", set_id="s1"))
    cursor = cursor_of(pull(repository, reader()))
    repository.transaction(letter_bundle(ins="2", set_id="s2"))
    with repository.engine.begin() as connection:
        connection.execute(text("DELETE FROM record_feed"))
    page = repository.changes(reader(), cursor=cursor)
    assert "CarePlan" in [kind for kind, _ in changed(page)]
    assert repository.changes(reader(), cursor=cursor_of(page))["entry"] == []


@pytest.mark.parametrize("many", [True, False], ids=["many-patients", "few-patients"])
def test_bulk_loaded_patients_come_once_in_a_first_pull_and_their_changes_after(
        database_url: str | None, monkeypatch: pytest.MonkeyPatch, many: bool) -> None:
    """Patients loaded in bulk (their grants have no position in the feed): the first pull
    brings each of their resources once, the next one a plan revised since, and nothing of
    another professional's patient — read by their many patients' paths, or, for a reader
    of few, after asking their grants what the window holds."""
    if many:
        monkeypatch.setattr(feed, "_FEW_PATIENTS", 1)
    repository = Repository(get_engine(database_url) if database_url else None)
    practitioners = [{"resourceType": "Practitioner", "id": idnat,
                      "identifier": [{"system": IDNAT_PS, "value": idnat}]}
                     for idnat in (PCP, NURSE)]
    patients = []
    for n, carer in enumerate((PCP, PCP, PCP, NURSE)):
        subject = {"reference": f"Patient/p{n}"}
        patients += [
            {"resourceType": "Patient", "id": f"p{n}"},
            {"resourceType": "CareTeam", "id": f"ct{n}", "status": "active", "subject": subject,
             "participant": [{"member": {"reference": f"Practitioner/{carer}"}}]},
            {"resourceType": "CarePlan", "id": f"cp{n}", "status": "active", "intent": "plan",
             "subject": subject}]
    repository.import_resources(practitioners + patients)
    seen, cursor = [], None
    while True:
        page = repository.changes(reader(), cursor=cursor, count=2)
        seen += [entry["fullUrl"].split("/fhir/")[-1] for entry in page["entry"]]
        cursor = cursor_of(page)
        if cursor_of(page, "next") is None:
            break
    assert sorted(seen) == sorted(f"{kind}/{prefix}{n}" for n in range(3)
                                  for kind, prefix in (("Patient", "p"), ("CareTeam", "ct"),
                                                       ("CarePlan", "cp")))
    plan = repository.read("CarePlan", "cp1")
    repository.update("CarePlan", "cp1", {**plan, "status": "revoked"})
    [entry] = repository.changes(reader(), cursor=cursor)["entry"]
    assert entry["resource"]["id"] == "cp1" and entry["resource"]["status"] == "revoked"


def _first_pull(repository: Repository, count: int, types: tuple[str, ...] = (),
                cursor: str | None = None) -> list[str]:
    """The resources (Type/id) a first pull brings, page after page, in order."""
    seen: list[str] = []
    while True:
        page = repository.changes(reader(), cursor=cursor, count=count, types=types)
        seen += [entry["fullUrl"].split("/fhir/")[-1] for entry in page["entry"]]
        cursor = cursor_of(page)
        if cursor_of(page, "next") is None:
            return seen


def _bulk_patients(count: int, carer: str = PCP) -> list[dict[str, Any]]:
    """Patients of `carer`, each with a care team; a plan for one in three."""
    practitioner = {"resourceType": "Practitioner", "id": carer,
                    "identifier": [{"system": IDNAT_PS, "value": carer}]}
    resources = [practitioner]
    for n in range(count):
        subject = {"reference": f"Patient/p{n}"}
        resources += [
            {"resourceType": "Patient", "id": f"p{n}"},
            {"resourceType": "CareTeam", "id": f"ct{n}", "status": "active", "subject": subject,
             "participant": [{"member": {"reference": f"Practitioner/{carer}"}}]}]
        if n % 3 == 0:
            resources.append({"resourceType": "CarePlan", "id": f"cp{n}", "status": "active",
                              "intent": "plan", "subject": subject})
    return resources


@pytest.mark.parametrize("first", [1, 8], ids=["a-patient-at-first", "eight-at-first"])
def test_a_first_pull_of_many_patients_brings_each_resource_once_whatever_its_pages_hold(
        database_url: str | None, monkeypatch: pytest.MonkeyPatch, first: int) -> None:
    """The first phase reads the reader's patients a few at a time: pages that end inside a
    patient, patients with nothing of the asked types, all come right."""
    monkeypatch.setattr(feed, "_FIRST_PATIENTS", first)
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.import_resources(_bulk_patients(25))
    plans = _first_pull(repository, count=2, types=("CarePlan",))
    assert sorted(plans) == sorted(f"CarePlan/cp{n}" for n in range(0, 25, 3))
    everything = _first_pull(repository, count=3, types=("Patient", "CarePlan"))
    assert len(everything) == len(set(everything)) == 25 + 9


def test_a_next_link_of_the_previous_version_misses_nothing(database_url: str | None) -> None:
    """A page link given before an upgrade (its first phase ordered by resource alone) goes on
    after it: the first phase is read again, so a resource may come twice, none is missed."""
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.import_resources(_bulk_patients(6))
    first = repository.changes(reader(), count=4)
    position = feed.Cursor.decode(cursor_of(first, "next") or "")
    assert (position.phase, position.patient) == (feed.GRANTED, "p1")
    old = f"1.{position.after}.{position.until}.{position.phase}.{position.last}"
    token = base64.urlsafe_b64encode(old.encode()).decode().rstrip("=")
    rest = _first_pull(repository, count=4, cursor=token)
    seen = [entry["fullUrl"].split("/fhir/")[-1] for entry in first["entry"]] + rest
    assert set(seen) == {f"{kind}/{prefix}{n}" for n in range(6)
                         for kind, prefix in (("Patient", "p"), ("CareTeam", "ct"))} | {
        "CarePlan/cp0", "CarePlan/cp3"}


def test_a_professional_added_to_a_care_team_gets_what_was_written_before(database_url) -> None:  # type: ignore[no-untyped-def]
    """The nurse joins the care team with version 2: her next pull brings the patient's
    resources written with version 1 too (the grant is a change for her), each once."""
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(team=(PCP,), recipients=(PCP,)))
    nurse_cursor = cursor_of(pull(repository, reader(NURSE)))
    assert pull(repository, reader(NURSE))["total"] == 0
    repository.transaction(letter_bundle(version=2, team=(PCP, NURSE), recipients=(PCP,)))
    joined = pull(repository, reader(NURSE), cursor=nurse_cursor)
    urls = [entry["fullUrl"] for entry in joined["entry"]]
    assert len(urls) == len(set(urls))
    kinds = sorted(url.split("/")[-2] for url in urls)
    # the patient's compartment (of the pulled types), both versions: each resource once
    assert kinds == ["CarePlan", "CareTeam", "Communication", "Communication",
                     "DocumentReference", "DocumentReference", "Patient"]


def test_a_carer_outside_the_care_team_pulls_only_the_messages_addressed_to_them(
        database_url: str | None) -> None:
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(team=(PCP,), recipients=(PCP, NURSE)))
    repository.transaction(letter_bundle(ins="2", set_id="other", team=(PCP,), recipients=(PCP,)))
    kinds = sorted(kind for kind, _ in changed(pull(repository, reader(NURSE))))
    assert kinds == ["Communication"]
    assert [kind for kind, _ in changed(pull(repository, reader()))].count("CarePlan") == 2


def test_a_message_to_a_professional_outside_the_care_team_is_in_their_pull(database_url) -> None:  # type: ignore[no-untyped-def]
    """The nurse is not in the care team: what she reads of the patient is the Communication
    addressed to her (a grant on that resource alone), and her next pull brings it."""
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(ins="1", set_id="s1"))
    nurse_cursor = cursor_of(pull(repository, reader(NURSE)))
    repository.transaction(letter_bundle(ins="2", set_id="s2", recipients=(PCP, NURSE)))
    kinds = [kind for kind, _ in changed(pull(repository, reader(NURSE), cursor=nurse_cursor))]
    assert kinds == ["Communication"]


def test_a_pull_reads_no_change_of_the_window_when_none_is_of_the_readers_patients(
        database_url) -> None:  # type: ignore[no-untyped-def]
    """Letters for others' patients arrive between two pulls of a professional: the pull asks
    once, by their grants, where the feed stands and whether anything of theirs is in the
    window up to there, and reads none of the window's changes (on both ways a window is read:
    fixture `window`)."""
    from sqlmodel import Session

    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(ins="1", set_id="s1"))
    with Session(repository.engine) as session:
        cursor = feed.Cursor(after=feed.head(session))
    for n in range(2, 5):
        repository.transaction(letter_bundle(ins=str(n), set_id=f"s{n}", team=(NURSE,),
                                             recipients=(NURSE,)))
    with Session(repository.engine) as session, caught(repository.engine) as ran:
        page = feed.read_page(session, reader(), cursor, (), 100)
    assert page.rows == [] and page.caught_up
    [(asked, _)] = ran  # one statement, one round trip: caught up
    assert "record_feed" in asked and "record_patient_change" in asked
    assert pull(repository, reader(NURSE))["total"] > 0  # the window held changes


def test_a_pull_bringing_a_new_patient_reads_none_of_the_windows_changes(
        database_url: str | None) -> None:
    """A letter names the professional for a patient new to them, nothing else of theirs
    changed: the pull reads that patient's resources, and none of the window's changes (the
    question that opens the window told it which of its phases can hold anything)."""
    from sqlmodel import Session

    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(ins="1", set_id="s1"))
    with Session(repository.engine) as session:
        cursor = feed.Cursor(after=feed.head(session))
    repository.transaction(letter_bundle(ins="2", set_id="s2", team=(NURSE,),
                                         recipients=(NURSE,)))
    repository.transaction(letter_bundle(ins="3", set_id="s3", team=(PCP,), recipients=()))
    with Session(repository.engine) as session, caught(repository.engine) as ran:
        page = feed.read_page(session, reader(), cursor, (), 100)
    assert {row.resource_type for row in page.rows} >= {"Patient", "CarePlan", "CareTeam"}
    assert {row.patient_id for row in page.rows} == {page.rows[0].patient_id}
    assert [" ".join(statement.split())[:80] for statement, _ in ran
            if "FROM record_change" in statement and "record_feed" not in statement] == []


def test_a_hospital_pulls_only_its_own_letters_changes(database_url) -> None:  # type: ignore[no-untyped-def]
    repository = Repository(get_engine(database_url) if database_url else None)
    repository.transaction(letter_bundle(ins="1", hospital="1750000001"))
    repository.transaction(letter_bundle(ins="1", hospital="1750000002", set_id="set-2"))
    first = Principal(kind="hospital", organization="1750000001", scopes=("system/*.rs",))
    plans = [e for e in pull(repository, first)["entry"]
             if e["request"]["url"].startswith("CarePlan")]
    assert len(plans) == 1 and plans[0]["resource"]["identifier"][0]["value"] == "set-1"


def test_a_forged_cursor_is_refused_with_a_clear_error() -> None:
    repository = Repository()
    for forged in ("not-a-cursor", "MS4xLjIuMw", "Mi4wLjAuMS4w"):
        with pytest.raises(BadRequest, match="cursor"):
            repository.changes(reader(), cursor=forged)


def test_the_feed_over_http(writer: httpx.Client, base_url: str) -> None:
    post_bundle(writer, letter_bundle())
    with client_for(base_url, issue_token("professional", idnat=PCP)) as member, \
            client_for(base_url, issue_token("professional", idnat="809999999999")) as stranger:
        page = member.get("_history", params={"_type": "CarePlan,CareTeam"})
        assert page.status_code == 200, page.text
        assert page.json()["type"] == "history"
        assert sorted(e["resource"]["resourceType"] for e in page.json()["entry"]) == [
            "CarePlan", "CareTeam"]
        resume = next(link["url"] for link in page.json()["link"]
                      if link["relation"] == "resume")
        assert member.get(resume).json()["entry"] == []
        assert stranger.get("_history").json()["entry"] == []
        assert member.get("_history", params={"_cursor": "garbage"}).status_code == 400
        first = member.get("_history", params={"_since": "2000-01-01T00:00:00Z"})
        assert len(first.json()["entry"]) >= 5


def test_the_feed_answers_only_a_valid_token_and_audits_every_pull(
        writer: httpx.Client, base_url: str, record_app) -> None:  # type: ignore[no-untyped-def]
    """The feed's endpoint is called without FastAPI's injection: the caller is still proven
    by the token, refusals are OperationOutcomes, and each pull is on the audit trail."""
    post_bundle(writer, letter_bundle())
    with client_for(base_url, None) as anonymous, \
            client_for(base_url, "not.a.token") as forged, \
            client_for(base_url, issue_token("professional", idnat=PCP)) as member:
        for refused in (anonymous.get("_history"), forged.get("_history")):
            assert refused.status_code == 401
            assert refused.json()["resourceType"] == "OperationOutcome"
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert member.get("_history", params={"_count": "0"}).status_code == 400
        pulled = member.get("_history", params={"_type": "CarePlan"})
        assert pulled.status_code == 200 and len(pulled.json()["entry"]) == 1
    audit.flush()
    pulls = [(row.actor_kind, row.actor, row.outcome, row.result_count)
             for row in audit.trail(record_app.state.record_repository.engine)
             if row.action == "changes"]
    assert pulls == [("anonymous", None, 401, None), ("anonymous", None, 401, None),
                     ("professional", PCP, 400, None), ("professional", PCP, 200, 1)]


def test_a_pull_with_nothing_new_reads_only_the_feeds_position() -> None:
    """Thousands of professionals' software pull every few minutes, nearly always for
    nothing: that answer costs one primary-key read, whatever the record holds."""
    from sqlmodel import Session

    repository = Repository()
    repository.transaction(letter_bundle(ins="1", set_id="s1"))
    with Session(repository.engine) as session:
        caught_up = feed.Cursor(after=feed.head(session))
        with caught(repository.engine) as ran:
            page = feed.read_page(session, reader(), caught_up, (), 100)
    assert page.rows == [] and page.caught_up
    assert len(ran) == 1 and "record_feed" in ran[0][0]
