"""The coordinator's page: the territory's discharges, served for a coordinator token."""

from __future__ import annotations

import os
import re
import shutil
from itertools import pairwise
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import get_settings
from adapter.coordination import coordinate
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.directory.importer import import_path
from adapter.mapping import convert_letter
from adapter.record.repository import Repository
from adapter.store.db import get_engine
from tests.coordination.letters import synthetic_conversion
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE
from tests.support.servers import serve_app

DIRECTORY = CsvCoordinators(FIXTURES / "coordination" / "local_directory.csv")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
NURSING_PLAN = (
    "Soins infirmiers à domicile : pansement quotidien",
    "Suivi par le médecin traitant",
)


def _discharge_in_the_record(**overrides: object) -> None:
    """A letter whose plan needs a nurse while its care team has none, pushed to the record."""
    values: dict[str, object] = {
        "recipients": (("801111111111", "ROCHE", "Paul", None),),  # a cardiologist, not a nurse
        "activities": NURSING_PLAN,
    }
    values.update(overrides)
    repository = Repository(get_engine())
    letter = enrich(synthetic_conversion(**values), DIRECTORY, repository)  # type: ignore[arg-type]
    repository.transaction(letter.bundle)


def _coordinator_token(cpts: str = "CPTS-PARIS-CENTRE") -> str:
    return issue_token("coordinator", cpts=cpts)


def test_page_lists_the_patient_the_pcp_and_the_missing_nurse() -> None:
    _discharge_in_the_record()
    client = TestClient(create_app(get_settings()))
    answer = client.get(
        "/coordination/page", headers={"Authorization": f"Bearer {_coordinator_token()}"}
    )
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert "DOMINIQUE PAT-TROIS" in html
    assert 'class="pcp-name">Stéphane MEDIONI' in html
    assert 'data-role="Infirmier(e)"' in html
    assert "Claire MARTIN" in html  # the coordinator in the team, with her MSSanté
    assert "claire.martin@cpts-paris-centre.mssante.fr" in html
    # the CPTS by its name, not its identifier
    assert "Sorties d'hospitalisation — CPTS Paris Centre" in html


def test_no_missing_nurse_once_a_nurse_is_in_the_team() -> None:
    _discharge_in_the_record(recipients=(("801234567896", "DUCOUT", "Elsa", "60"),))
    client = TestClient(create_app(get_settings()))
    html = client.get(
        "/coordination/page", headers={"Authorization": f"Bearer {_coordinator_token()}"}
    ).text
    assert "DOMINIQUE PAT-TROIS" in html
    assert 'data-role="Infirmier(e)"' not in html


def test_another_territorys_coordinator_sees_nothing_and_others_are_refused() -> None:
    _discharge_in_the_record()
    client = TestClient(create_app(get_settings()))
    other = client.get(
        "/coordination/page",
        headers={"Authorization": f"Bearer {_coordinator_token('CPTS-LYON-1')}"},
    )
    assert other.status_code == 200
    assert "PAT-TROIS" not in other.text
    nurse = issue_token("professional", idnat="801234567896")
    refused = client.get("/coordination/page", headers={"Authorization": f"Bearer {nurse}"})
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert client.get("/coordination/page").status_code == 401


def _example_in_the_record() -> None:
    """The official LDL-SES example, converted, coordinated (directory imported) and pushed."""
    engine = get_engine()
    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    letter = coordinate(convert_letter(LDL_SES_EXAMPLE.read_bytes()), engine)
    Repository(engine).transaction(letter.bundle)


@pytest.mark.browser
def test_page_renders_the_example_patient_in_a_real_headless_browser(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/test-deps installs it)")
    from playwright.sync_api import sync_playwright

    _example_in_the_record()
    screenshot = tmp_path / "coordinator-page.png"
    phone_shot = tmp_path / "coordinator-page-phone.png"
    app = create_app(get_settings())
    with serve_app(app, probe_path="/healthz") as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_extra_http_headers({"Authorization": f"Bearer {_coordinator_token()}"})
            page.goto(f"{base}/coordination/page")
            discharge = page.locator("article.discharge").first
            patient = discharge.locator("h2.patient").inner_text()
            assert patient.startswith("DOMINIQUE PAT-TROIS")  # the first birth given name
            assert discharge.locator(".pcp-name").inner_text() == "Stéphane MEDIONI"
            # "Suivi par le psychiatre à prévoir" and no psychiatrist in the team
            missing = discharge.locator(".missing-role")
            assert missing.count() == 1
            assert "Psychiatre" in missing.inner_text()
            assert missing.is_visible()
            assert discharge.get_by_text("claire.martin@cpts-paris-centre.mssante.fr").is_visible()
            page.screenshot(path=str(screenshot), full_page=True)
            text = page.locator("body").inner_text()
            assert not re.search(r"\d{4}-\d{2}-\d{2}", text)  # no ISO date or timestamp
            bundle = coordinate(convert_letter(LDL_SES_EXAMPLE.read_bytes()), get_engine()).bundle
            raw = {code for code in _codes_of(bundle) if len(code) >= 3}
            assert not raw & set(re.findall(r"[\w.-]+", text))  # no raw code

            phone = browser.new_page(viewport={"width": 375, "height": 812}, is_mobile=True)
            phone.set_extra_http_headers({"Authorization": f"Bearer {_coordinator_token()}"})
            phone.goto(f"{base}/coordination/page")
            # nothing wider than the screen: the grid is one column, tables scroll inside
            assert phone.evaluate("document.documentElement.scrollWidth") <= 375
            sections = phone.locator("article.discharge .grid > section")
            assert sections.nth(0).bounding_box()["x"] == sections.nth(1).bounding_box()["x"]
            assert phone.locator("main").count() == 1 and phone.locator("nav").count() == 1
            levels = [int(tag[1]) for tag in phone.eval_on_selector_all(
                "h1, h2, h3", "nodes => nodes.map(n => n.tagName)")]
            assert levels[0] == 1 and all(b - a <= 1 for a, b in pairwise(levels))
            unlabelled = phone.eval_on_selector_all(
                "select, textarea", "nodes => nodes.filter(n => !n.labels.length).length")
            assert unlabelled == 0
            phone.screenshot(path=str(phone_shot), full_page=True)
            # the keyboard reaches the first action, and the focus can be seen
            for _ in range(12):
                phone.keyboard.press("Tab")
                if phone.evaluate("document.activeElement.tagName") == "BUTTON":
                    break
            # the first action of the patient: the D+7 review's, then each item's
            focused = phone.evaluate("document.activeElement.getAttribute('aria-label') "
                                     "|| document.activeElement.textContent")
            assert focused.strip() == "Revue faite" or focused.startswith("Marquer comme fait")
            assert phone.evaluate("getComputedStyle(document.activeElement).outlineStyle") \
                != "none"
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000  # a real rendering, not a blank page
    assert phone_shot.stat().st_size > 10_000
    keep = os.environ.get("LIAISON_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(screenshot, keep)
        shutil.copy(phone_shot, Path(keep).with_name("phone-" + Path(keep).name))


def test_page_shows_whether_the_received_letter_reached_the_record() -> None:
    from adapter.ingest.delivery import delivery_pusher
    from adapter.ingest.ingestion import ingest_letter

    engine = get_engine()
    settings = get_settings()
    xml = LDL_SES_EXAMPLE.read_bytes()
    ingest_letter(xml, content_type="application/xml", engine=engine, settings=settings)
    client = TestClient(create_app(settings))
    admin = {"Authorization": f"Bearer {issue_token('system')}"}
    assert 'class="letters"' not in client.get("/coordination/page", headers=admin).text
    assert delivery_pusher(engine, threads=1).drain(timeout=30)
    html = client.get("/coordination/page", headers=admin).text
    assert 'letter-status">dans le dossier partagé<' in html
    # dates as a person reads them, never an ISO timestamp
    assert "mardi 3 décembre 2019, 13 h 30" in html  # when the hospital sent its messages
    # the stay: when, from which hospital, to where (the example is a transfer), and the address
    assert "Sortie le mardi 3 décembre 2019, 13 h 30 de Hôpital Européen Georges Pompidou" in html
    assert 'class="transfer">transfert</strong> vers : Autre établissement de santé' in html
    assert "Adresse : 28 Avenue de Breteuil Escalier A, 75007 PARIS" in html
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", html)


def test_a_person_named_in_several_roles_of_the_letter_is_one_row_of_the_team() -> None:
    from adapter.auth import verify_token
    from adapter.coordination.page import discharges

    _example_in_the_record()  # the example names idNat_PS 801234567897 as author,
    # recipient and performer: three participations, one person
    [discharge] = discharges(Repository(get_engine()), verify_token(_coordinator_token()))
    rows = [member.name for member in discharge.members]
    assert rows.count("Charles DAVID") == 1
    david = next(member for member in discharge.members if member.name == "Charles DAVID")
    assert {"Auteur de la lettre de liaison", "Destinataire de la lettre de liaison"} <= set(
        david.roles)


def test_a_patient_with_an_ins_is_shown_the_letters_received_under_it_alone() -> None:
    """A letter sent without INS under an IPP the record also lists for the patient may be
    another person's: the page does not show it on the patient's row."""
    from sqlmodel import Session

    from adapter.coordination.page import letter_statuses
    from adapter.store.letters import ReceivedLetter, patient_key

    ins = ("urn:oid:1.2.250.1.213.1.4.8", "279035121518989")
    ipp = ("urn:oid:1.2.250.1.999.2", "IPP-42")
    engine = get_engine()
    with Session(engine) as session:
        for n, key in enumerate((ins, ipp)):
            session.add(ReceivedLetter(sha1=f"{n:040d}", document_id=f"doc|{n}", set_id=f"s{n}",
                                       model=f"model-{n}", patient_key=patient_key([key]),
                                       content=b"<x/>"))
        session.commit()
    patient = {"identifier": [{"system": s, "value": v} for s, v in (ins, ipp)]}
    assert [row["model"] for row in letter_statuses(engine, patient)] == ["model-0"]
    without_ins = {"identifier": [{"system": ipp[0], "value": ipp[1]}]}
    assert [row["model"] for row in letter_statuses(engine, without_ins)] == ["model-1"]


def _page(client: TestClient, query: str = "", token: str | None = None) -> str:
    answer = client.get(f"/coordination/page{query}",
                        headers={"Authorization": f"Bearer {token or _coordinator_token()}"})
    assert answer.status_code == 200, answer.text
    return answer.text


def _visible_text(html: str) -> str:
    """What a person reads: the page without its tags, attributes and style sheet."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    return re.sub(r" ([,)])", r"\1", text)


def _codes_of(value: object) -> set[str]:
    """Every code of every Coding in a resource or bundle."""
    if isinstance(value, dict):
        found = {str(value["code"])} if "system" in value and "code" in value else set()
        return found.union(*(_codes_of(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_codes_of(v) for v in value))
    return set()


def test_the_example_patient_with_every_field_a_coordinator_acts_on() -> None:
    _example_in_the_record()
    html = _page(TestClient(create_app(get_settings())))
    text = _visible_text(html)
    # the stay: hospital and the care unit the letter names (the performer's organisation)
    assert "de Hôpital Européen Georges Pompidou, Service de Cardiologie" in text
    assert "Motif du séjour : Episode psychotique – cachexie/anorexie" in text
    # one line per person: the sister named as person to notify and as trusted person
    rows = re.findall(r'<tr class="member"><td>([^<]+)</td>', html)
    assert rows.count("Sophie NESSI") == 1, rows
    sophie = html[html.index("<td>Sophie NESSI</td>"):].split("</tr>")[0]
    assert "Personne à prévenir en cas d&#39;urgence" in sophie
    assert "Personne de confiance" in sophie
    # the urgent scan looks different from the appointment to fix, in words and not colour alone
    actions = re.findall(r'<li class="(action[^"]*)" data-kind="[^"]+">(.*?)</li>', html, re.S)
    scan = next(body for kind, body in actions if "Angioscanner" in body)
    appointment = next((kind, body) for kind, body in actions if "Médecin traitant" in body)
    assert ('class="action urgent"' in html) and "Urgent" in _visible_text(scan)
    assert "urgent" not in appointment[0]
    assert "à partir du jeudi 5 décembre 2019" in _visible_text(appointment[1])
    assert "(recontacter pour fixer RDV)" in _visible_text(appointment[1])
    assert "rendez-vous à fixer" in _visible_text(appointment[1])
    psychiatrist = next(body for kind, body in actions if "psychiatre" in body)
    assert "le vendredi 1er janvier 2021" in _visible_text(psychiatrist)
    # the received letter is not on this page (pushed directly): the other test asserts its link
    # no ISO timestamp and no raw code left for a person to decode
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text)
    bundle = coordinate(convert_letter(LDL_SES_EXAMPLE.read_bytes()), get_engine()).bundle
    raw = {code for code in _codes_of(bundle) if len(code) >= 3}
    shown = set(re.findall(r"[\w.-]+", text))
    assert not raw & shown, raw & shown


def test_a_nurse_named_as_such_by_her_role_in_the_team_fills_the_nurse_role() -> None:
    from adapter.coordination.page import Member, _codes, missing_roles
    from adapter.coordination.rules import load_rules

    rules = load_rules().missing_roles
    plan = ["Soins infirmiers à domicile : pansement quotidien"]
    for role in ({"text": "IDEL"}, {"text": "Infirmière libérale"},
                 {"coding": [{"system": "http://snomed.info/sct", "code": "106292003"}]}):
        _, codes = _codes([role])  # no profession: the letter did not give it
        nurse = Member(name="Elsa DUCOUT", roles=[], codes=codes)
        assert "Infirmier(e)" not in missing_roles(plan, [nurse], rules), role
    assert "Infirmier(e)" in missing_roles(plan, [], rules)
    # "AMI" (acte infirmier) is a word of its own, not the letters inside "examiné"
    assert missing_roles(["Patient examiné par le cardiologue"], [], rules) == []
    assert missing_roles(["AMI 2 à domicile"], [], rules) == ["Infirmier(e)"]


def _planned_stay_without_gp() -> None:
    """Another patient, still in hospital (a pre-discharge notice), with no GP."""
    conversion = synthetic_conversion(ins="180017512345678", set_id="1.2.250.1.999.77",
                                      pcp=None)
    encounter = next(e["resource"] for e in conversion.bundle["entry"]
                     if e["resource"]["resourceType"] == "Encounter")
    encounter["status"] = "in-progress"
    encounter["period"] = {"start": "2019-12-01"}
    encounter["extension"] = [{"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/"
                                      "fr-core-estimated-discharge-date",
                               "valueDate": "2019-12-12"}]
    repository = Repository(get_engine())
    repository.transaction(enrich(conversion, DIRECTORY, repository).bundle)


def test_filters_planned_this_week_review_due_and_no_gp() -> None:
    from datetime import UTC, datetime

    from adapter.api.coordination_routes import clock
    from adapter.auth import verify_token
    from adapter.coordination import review
    from adapter.coordination.rules import load_rules

    _example_in_the_record()  # left on 3 December 2019, a GP, its D+7 review to do
    _planned_stay_without_gp()
    app = create_app(get_settings())
    app.dependency_overrides[clock] = lambda: lambda: datetime(2019, 12, 6, 9, tzinfo=UTC)
    client = TestClient(app)

    assert _page(client).count('<article class="discharge"') == 2
    planned = _page(client, "?vue=prevues")
    assert planned.count('<article class="discharge"') == 1
    assert "sortie prévue le jeudi 12 décembre 2019" in planned
    assert 'href="/coordination/page?vue=prevues" aria-current="page"' in planned
    assert "Sorties prévues" in planned and "Sans médecin traitant" in planned
    week = _page(client, "?vue=semaine")
    assert week.count('<article class="discharge"') == 1
    assert "Sortie le mardi 3 décembre 2019" in week
    no_gp = _page(client, "?vue=sans-medecin")
    assert no_gp.count('<article class="discharge"') == 1
    assert "aucun médecin traitant connu" in no_gp
    # a week later the example is no longer "this week"
    app.dependency_overrides[clock] = lambda: lambda: datetime(2019, 12, 11, 9, tzinfo=UTC)
    assert _page(client, "?vue=semaine").count('<article class="discharge"') == 0
    # review due: the example's; once done, nobody's
    due = _page(client, "?vue=revue")
    assert "Sortie le mardi 3 décembre 2019" in due
    repository = Repository(get_engine())
    coordinator = verify_token(_coordinator_token())
    example = next(article for article in due.split('<article class="discharge"')[1:]
                   if "Sortie le mardi 3 décembre 2019" in article)
    patient_id = re.findall(r'data-patient="([^"]+)"', example)[0]
    for task in review.reviews(repository, f"Patient/{patient_id}", coordinator, load_rules()):
        review.complete(repository, coordinator, task["id"], {"checks": {}}, load_rules(),
                        now=lambda: datetime(2019, 12, 9, tzinfo=UTC))
    assert "Sortie le mardi 3 décembre 2019" not in _page(client, "?vue=revue")
    assert client.get("/coordination/page?vue=autre", headers={
        "Authorization": f"Bearer {_coordinator_token()}"}).status_code == 400
