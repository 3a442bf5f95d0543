"""The coordinator's actions from the page: a note on the plan, an item marked done, a
professional of the living directory added to the care team and told. A coordinator of the CPTS
that owns the patient's care team may (or the system); every other caller is refused and
nothing is written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from adapter.api.app import create_app
from adapter.api.coordination_routes import clock
from adapter.auth import issue_token
from adapter.config import Settings
from adapter.coordination import coordinate, living_directory
from adapter.coordination.enrichment import enrich
from adapter.coordination.resources import assigned_by_a_coordinator
from adapter.coordination.rules import load_rules
from adapter.directory.importer import import_path
from adapter.mapping import convert_letter
from adapter.record.repository import Repository
from adapter.store import outbox
from adapter.store.db import get_engine, session_scope
from adapter.store.outbox import OutboxEntry
from tests.api.conftest import HOSPITAL, bearer
from tests.coordination.letters import synthetic_conversion
from tests.coordination.test_coordinator_page import DIRECTORY, NURSING_PLAN
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE

NOW = datetime(2019, 12, 4, 10, 15, tzinfo=UTC)
NURSE = "810000000041"  # Julie ROUX, home nurse of the local directory, 75007
GP = "801984758437"


def coordinator() -> dict[str, str]:
    """A coordinator of the CPTS of the patients' territory (tokens are signed with the key of
    each test's data directory)."""
    return bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))

CONFIRMED = "/coordination/page?fait="


@dataclass
class Patient:
    client: TestClient
    care_plan: str
    patient: str

    def plan(self) -> dict[str, Any]:
        return Repository(get_engine()).read("CarePlan", self.care_plan)

    def page(self) -> str:
        answer = self.client.get("/coordination/page", headers=coordinator())
        assert answer.status_code == 200, answer.text
        return answer.text


def _attackers() -> dict[str, str]:
    return {
        "another CPTS's coordinator": issue_token("coordinator", cpts="CPTS-LYON-1"),
        "the GP, in the care team": issue_token("professional", idnat=GP),
        "the GP, with every write scope": issue_token(
            "professional", idnat=GP,
            scope="user/*.rs user/CarePlan.u user/CareTeam.u user/Communication.c"),
        "a professional outside the team": issue_token("professional", idnat="899999999999"),
        "the hospital that sent the letter": issue_token("hospital", organization=HOSPITAL),
        "a read-only coordinator of the CPTS": issue_token(
            "coordinator", cpts="CPTS-PARIS-CENTRE", scope="user/*.rs user/Communication.c"),
    }


def _client() -> TestClient:
    settings = Settings(push_in_server=False, mssante_smtp_host="127.0.0.1",
                        mssante_sender="liaison@hopital.mssante.fr")
    app = create_app(settings)
    app.dependency_overrides[clock] = lambda: lambda: NOW
    return TestClient(app)


def _care_plan_of(repository: Repository) -> tuple[str, str]:
    (entry,) = repository.search("CarePlan", [])["entry"]
    return entry["resource"]["id"], entry["resource"]["subject"]["reference"].split("/")[1]


@pytest.fixture
def example() -> Iterator[Patient]:
    """The official example letter in the record, its CPTS's coordinator in the team."""
    engine = get_engine()
    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    repository = Repository(engine)
    repository.transaction(coordinate(convert_letter(LDL_SES_EXAMPLE.read_bytes()),
                                      engine).bundle)
    with _client() as client:
        yield Patient(client, *_care_plan_of(repository))


@pytest.fixture
def needs_a_nurse() -> Iterator[Patient]:
    """A plan of home nursing, no nurse in the team; a nurse free within 24 h near home."""
    engine = get_engine()
    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    with session_scope(engine) as session:
        living_directory.save(session, living_directory.AvailabilityUpdate.from_json(
            {"idnat": NURSE, "accepts_new_patients": "oui", "available_within": "24h",
             "postcodes": "75007"}), "test")
    repository = Repository(engine)
    conversion = synthetic_conversion(recipients=(("801111111111", "ROCHE", "Paul", None),),
                                      activities=NURSING_PLAN)
    repository.transaction(enrich(conversion, DIRECTORY, repository).bundle)
    with _client() as client:
        yield Patient(client, *_care_plan_of(repository))


def test_a_note_is_added_with_its_author_and_time(example: Patient) -> None:
    url = f"/coordination/plans/{example.care_plan}/notes"
    before = example.plan()
    for who, token in _attackers().items():
        refused = example.client.post(url, headers=bearer(token), data={"text": "intrus"},
                                      follow_redirects=False)
        assert refused.status_code == 403, (who, refused.text)
    assert example.client.post("/coordination/plans/unknown/notes", headers=coordinator(),
                               data={"text": "x"}).status_code == 404
    assert example.plan() == before
    answer = example.client.post(url, headers=coordinator(), follow_redirects=False,
                                 data={"text": "IDEL prévenue, passage demain matin.",
                                       "csrf": ""})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"{CONFIRMED}note#patient-{example.patient}")
    note = example.plan()["note"][-1]
    assert note == {"authorString": "Coordination CPTS Paris Centre",
                    "time": "2019-12-04T10:15:00+00:00",
                    "text": "IDEL prévenue, passage demain matin."}
    html = example.client.get(answer.headers["location"], headers=coordinator()).text
    assert 'role="status">Note ajoutée au plan de soins.' in html
    assert "IDEL prévenue, passage demain matin." in html
    assert "Coordination CPTS Paris Centre, mercredi 4 décembre 2019, 11 h 15" in html
    # an API client sends JSON and gets JSON
    api = example.client.post(url, headers=coordinator(), json={"text": "par l'API"})
    assert api.status_code == 200 and api.json()["done"] == "note"
    assert example.client.post(url, headers=coordinator(),
                               json={"text": "  "}).status_code == 400


def test_an_item_is_marked_done_with_who_and_when(example: Patient) -> None:
    activities = example.plan()["activity"]
    scan = next(i for i, a in enumerate(activities)
                if "ServiceRequest" in str(Repository(get_engine()).read(
                    *a["reference"]["reference"].split("/")).get("resourceType"))
                and Repository(get_engine()).read(
                    *a["reference"]["reference"].split("/")).get("priority") == "urgent")
    url = f"/coordination/plans/{example.care_plan}/activities/{scan}/done"
    before = example.plan()
    for who, token in _attackers().items():
        refused = example.client.post(url, headers=bearer(token), follow_redirects=False)
        assert refused.status_code == 403, (who, refused.text)
    assert example.plan() == before
    answer = example.client.post(url, headers=coordinator(), follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(f"{CONFIRMED}done#")
    activity = example.plan()["activity"][scan]
    assert activity["progress"][-1]["authorString"] == "Coordination CPTS Paris Centre"
    request = Repository(get_engine()).read(*activity["reference"]["reference"].split("/"))
    assert request["status"] == "completed"
    html = example.page()
    done = re.search(r'<li class="action done"[^>]*>(.*?)</li>', html, re.S)
    assert done and "Angioscanner" in done.group(1)
    assert "fait le mercredi 4 décembre 2019, 11 h 15 par Coordination CPTS Paris Centre" in \
        re.sub(r"\s+", " ", done.group(1))
    assert "Urgent" not in done.group(1)
    assert example.client.post(url, headers=coordinator()).status_code == 409
    # the appointment keeps its status (a fixed one needs its start); the page says it is done
    appointment = next(i for i, a in enumerate(activities)
                       if a["reference"]["reference"].startswith("Appointment/"))
    assert example.client.post(
        f"/coordination/plans/{example.care_plan}/activities/{appointment}/done",
        headers=coordinator(), json={}).status_code == 200
    assert len(re.findall(r'<li class="action done"', example.page())) == 2
    assert example.client.post(f"/coordination/plans/{example.care_plan}/activities/99/done",
                               headers=coordinator()).status_code == 404


def test_an_inline_item_of_the_plan_is_marked_done(needs_a_nurse: Patient) -> None:
    url = f"/coordination/plans/{needs_a_nurse.care_plan}/activities/0/done"
    assert needs_a_nurse.client.post(url, headers=coordinator(),
                                     json={}).status_code == 200
    assert needs_a_nurse.plan()["activity"][0]["detail"]["status"] == "completed"


def test_a_nurse_of_the_living_directory_joins_the_team_and_is_told(
        needs_a_nurse: Patient) -> None:
    html = needs_a_nurse.page()
    assert 'data-role="Infirmier(e)"' in html
    offered = re.search(r'<select id="assign-[^"]+" name="idnat">(.*?)</select>', html, re.S)
    assert offered and f'value="{NURSE}"' in offered.group(1)
    assert "Julie ROUX — Infirmier — disponible sous 24 h" in offered.group(1)
    url = f"/coordination/plans/{needs_a_nurse.care_plan}/care-team"
    choice = {"idnat": NURSE, "role": "Infirmier(e)"}
    before = needs_a_nurse.plan()
    for who, token in _attackers().items():
        refused = needs_a_nurse.client.post(url, headers=bearer(token), data=choice,
                                            follow_redirects=False)
        assert refused.status_code == 403, (who, refused.text)
    # only a candidate the page offers, for a role: not any professional, not any role
    for wrong in ({"idnat": "810000000017", "role": "Infirmier(e)"},
                  {"idnat": NURSE, "role": "Psychiatre"}):
        assert needs_a_nurse.client.post(url, headers=coordinator(),
                                         data=wrong).status_code == 400
    nurse = bearer(issue_token("professional", idnat=NURSE))
    assert needs_a_nurse.client.get(f"/fhir/CarePlan/{needs_a_nurse.care_plan}",
                                    headers=nurse).status_code == 404
    assert needs_a_nurse.plan() == before

    answer = needs_a_nurse.client.post(url, headers=coordinator(), data=choice,
                                       follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(f"{CONFIRMED}assigned#")
    html = needs_a_nurse.page()
    assert 'data-role="Infirmier(e)"' not in html  # the role is filled
    assert re.search(r"<td>Julie ROUX</td>\s*<td>.*Infirmier\(e\)", html)
    # she now reads the patient's plan, and the coordination's message to her
    assert needs_a_nurse.client.get(f"/fhir/CarePlan/{needs_a_nurse.care_plan}",
                                    headers=nurse).status_code == 200
    messages = needs_a_nurse.client.get("/fhir/Communication", headers=nurse).json()
    (message,) = [e["resource"] for e in messages.get("entry") or []
                  if "Coordination" in str(e["resource"].get("sender"))]
    assert "vous a ajouté(e) à l'équipe de soins de DOMINIQUE PAT-TROIS" in \
        message["payload"][0]["contentString"]
    assert message["sender"] == {"display": "Coordination CPTS-PARIS-CENTRE"}
    # told by MSSanté mail through the thread's path (one outbox queue per recipient)
    with Session(get_engine()) as session:
        queued = [e.id for e in session.exec(select(OutboxEntry)).all()
                  if e.kind == "mssante-message"]
    mails = [outbox.get_entry(get_engine(), entry_id) for entry_id in queued]
    assert [mail.payload_json()["to"] for mail in mails if mail] == [
        "julie.roux@infirmiers.mssante.fr"]
    # marked as the coordinator's, so a corrected letter of the stay keeps her
    team = Repository(get_engine()).search("CareTeam", [("status", "active")])["entry"][0]
    assert any(assigned_by_a_coordinator(p, load_rules())
               for p in team["resource"]["participant"])
    # twice is once
    assert needs_a_nurse.client.post(url, headers=coordinator(),
                                     data=choice).status_code in (400, 409)
