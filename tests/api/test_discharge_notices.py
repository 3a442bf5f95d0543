"""A discharge announced before the letter: a hospital's FHIR Encounter or HL7 v2 ADT (over
HTTP and over MLLP) builds the stay's care team early (its médecin traitant, the territory's
coordinator, the carers the record knows) and tells it "sortie prévue le …"; the letter of the
same stay completes the same Encounter; a cancellation is told; a notice sent twice is one; a
hospital announces its own stays only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hl7
import pytest
from fastapi.testclient import TestClient
from hl7.mllp import open_hl7_connection

from adapter.auth import issue_token
from adapter.directory.importer import import_path
from adapter.store.db import get_engine
from tests.api.conftest import HOSPITAL, OTHER_HOSPITAL, bearer, wait_for_status
from tests.support.letter_variants import INS_SYSTEM, ins_of, letter_variant
from tests.support.paths import FIXTURES
from tests.support.waiting import wait_for

STAY_SYSTEM = f"urn:oid:1.2.250.1.71.4.2.2.{HOSPITAL}.2"  # the hospital's stay numbers
ESTIMATED = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-estimated-discharge-date"
GP = "810001234567"
COORDINATOR = "810000000017"  # CPTS Paris Centre covers the patient's 75007
FHIR = {"Content-Type": "application/fhir+json"}
HL7 = {"Content-Type": "application/hl7-v2"}
A16 = (FIXTURES / "adt" / "a16-pending-discharge.hl7").read_text()


def encounter(n: int, *, status: str = "in-progress", planned: str | None = "2026-12-09",
              stay: str | None = None, hospital: str = HOSPITAL, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter", "status": status,
        "identifier": [{"system": STAY_SYSTEM, "value": stay or f"SEJ-{n}"}],
        "contained": [{"resourceType": "Patient", "id": "p",
                       "identifier": [{"system": INS_SYSTEM, "value": ins_of(n)}],
                       "name": [{"family": "MARTIN", "given": ["Alice"]}],
                       "birthDate": "1980-05-01",
                       "address": [{"line": ["12 rue Cler"], "postalCode": "75007",
                                    "city": "Paris"}],
                       "generalPractitioner": [{"identifier": {
                           "system": "urn:oid:1.2.250.1.71.4.2.1", "value": GP},
                           "display": "Paul GENERALISTE"}]}],
        "subject": {"reference": "#p"},
        "serviceProvider": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2",
                                           "value": hospital},
                            "display": "Hôpital Européen Georges Pompidou"},
        "serviceType": {"text": "Cardiologie"},
        **extra,
    }
    if planned:
        resource["extension"] = [{"url": ESTIMATED, "valueDate": planned}]
    return resource


def delivered(client: TestClient) -> int:
    """How many outbox entries were delivered (`/metrics`), once none is left to deliver."""
    gauges = {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
              for line in client.get("/metrics").text.splitlines()
              if line.startswith("liaison_outbox_entries{")}
    left = gauges.get("pending", 0) + gauges.get("retrying", 0)
    return -1 if left else int(gauges.get("delivered", 0))


def until(find: Callable[[], Any]) -> Any:
    """What `find` returns once it returns something (the pusher works in the background)."""
    return wait_for(find, timeout=30)


def search(client: TestClient, resource_type: str, **params: str) -> list[dict[str, Any]]:
    found = client.get(f"/fhir/{resource_type}", headers=bearer(issue_token("system")),
                       params=params).json()
    return [e["resource"] for e in found.get("entry") or []
            if e.get("search", {}).get("mode", "match") == "match"]


def stay_encounters(client: TestClient, n: int) -> list[dict[str, Any]]:
    return search(client, "Encounter", **{"patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}"})


def messages(client: TestClient, n: int) -> list[str]:
    return sorted(p["contentString"] for c in search(
        client, "Communication", **{"patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}"})
        for p in c.get("payload") or [] if p.get("contentString"))


def team_idnats(client: TestClient, n: int) -> set[str]:
    """idNat_PS of the practitioners of the patient's CareTeams."""
    found = client.get("/fhir/CareTeam", headers=bearer(issue_token("system")), params={
        "patient.identifier": f"{INS_SYSTEM}|{ins_of(n)}",
        "_include": "CareTeam:participant"}).json()
    return {i["value"] for e in found.get("entry") or []
            if e["resource"]["resourceType"] == "Practitioner"
            for i in e["resource"].get("identifier") or []
            if i["system"] == "urn:oid:1.2.250.1.71.4.2.1"}


def with_stay(letter: bytes, stay: str) -> bytes:
    """The letter numbering its stay as the hospital's notices do (encompassingEncounter/id)."""
    root = STAY_SYSTEM.removeprefix("urn:oid:")
    return letter.replace(b"<encompassingEncounter>",
                          f'<encompassingEncounter><id root="{root}" extension="{stay}"/>'
                          .encode(), 1)


@pytest.fixture
def record(liaison: Callable[..., Any]) -> Iterator[TestClient]:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")  # the CPTS
    with liaison() as client:
        yield client


def test_a_planned_discharge_builds_the_care_team_early_and_tells_it(
        record: TestClient, hospital: dict[str, str]) -> None:
    answer = record.post("/discharge-notices", json=encounter(801), headers={**hospital, **FHIR})
    assert answer.status_code == 202, answer.text
    (stay,) = until(lambda: stay_encounters(record, 801))
    assert stay["status"] == "in-progress"
    assert stay["extension"] == [{"url": ESTIMATED, "valueDate": "2026-12-09"}]
    assert {"system": STAY_SYSTEM, "value": "SEJ-801"} in stay["identifier"]
    assert team_idnats(record, 801) == {GP, COORDINATOR}
    told = until(lambda: messages(record, 801))
    assert told == ["Sortie prévue le mercredi 9 décembre 2026 de Hôpital Européen Georges "
                    "Pompidou, service Cardiologie"] * 2
    # the coordinator of the territory sees the patient before the letter
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE",
                                     idnat=COORDINATOR))
    assert record.get("/fhir/Encounter", headers=coordinator).json()["total"] == 1


def test_a_notice_sent_again_is_one_and_a_new_date_is_told_again(
        record: TestClient, hospital: dict[str, str]) -> None:
    headers = {**hospital, **FHIR}
    assert record.post("/discharge-notices", json=encounter(802), headers=headers
                       ).status_code == 202
    until(lambda: len(messages(record, 802)) == 2)
    again = record.post("/discharge-notices", json=encounter(802), headers=headers)
    assert again.status_code == 200 and "received before" in again.text
    moved = record.post("/discharge-notices", json=encounter(802, planned="2026-12-11"),
                        headers=headers)
    assert moved.status_code == 202
    told = until(lambda: (found := messages(record, 802)) and len(found) == 4 and found)
    assert sum("vendredi 11 décembre" in text for text in told) == 2
    (stay,) = stay_encounters(record, 802)
    assert stay["extension"][0]["valueDate"] == "2026-12-11"


def test_the_letter_of_the_stay_completes_the_same_encounter_and_keeps_the_early_team(
        record: TestClient, hospital: dict[str, str]) -> None:
    record.post("/discharge-notices", json=encounter(803), headers={**hospital, **FHIR})
    until(lambda: stay_encounters(record, 803))
    letter = record.post("/discharge-letters", content=with_stay(letter_variant(803), "SEJ-803"),
                         headers={**hospital, "Content-Type": "application/hl7-cda+xml"})
    assert letter.status_code == 202, letter.text
    wait_for_status(record, letter.headers["Location"], hospital, "pushed")
    (stay,) = stay_encounters(record, 803)  # one stay, not a second Encounter
    assert stay["status"] == "finished" and stay["period"]["end"].startswith("2019-12-03")
    assert {"system": STAY_SYSTEM, "value": "SEJ-803"} in stay["identifier"]
    assert GP in team_idnats(record, 803)  # the médecin traitant of the notice stays
    reviews = search(record, "Task", **{"patient.identifier": f"{INS_SYSTEM}|{ins_of(803)}"})
    assert len(reviews) == 1
    # a planned discharge notified again after the letter does not reopen the stay
    late = record.post("/discharge-notices", json=encounter(803, planned="2026-12-12"),
                       headers={**hospital, **FHIR})
    assert late.status_code == 202 and "déjà terminé" in late.text
    (stay,) = stay_encounters(record, 803)
    assert stay["status"] == "finished"


def test_a_planned_discharge_resent_while_the_letter_waits_for_delivery_does_not_reopen_it(
        liaison: Callable[..., Any], hospital: dict[str, str]) -> None:
    """The letter of the stay is accepted but not delivered yet (the record holds no finished
    Encounter) when the interface engine resends its A16: the stay has ended all the same."""
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    with liaison(push_in_server=False) as held:
        assert held.post("/discharge-notices", json=encounter(806),
                         headers={**hospital, **FHIR}).status_code == 202
        letter = held.post("/discharge-letters",
                           content=with_stay(letter_variant(806), "SEJ-806"),
                           headers={**hospital, "Content-Type": "application/hl7-cda+xml"})
        assert letter.status_code == 202, letter.text
        late = held.post("/discharge-notices", json=encounter(806, planned="2026-12-12"),
                         headers={**hospital, **FHIR})
        assert late.status_code == 202 and "déjà terminé" in late.text
    with liaison() as record:  # the pusher delivers what was queued, in order
        wait_for_status(record, letter.headers["Location"], hospital, "pushed")
        until(lambda: delivered(record) == 2)  # the notice and the letter: nothing after
        (stay,) = stay_encounters(record, 806)
        assert stay["status"] == "finished"
        assert not [t for t in messages(record, 806) if "12 décembre" in t]


def test_adt_a16_then_a03_then_cancellation_over_http(
        record: TestClient, hospital: dict[str, str]) -> None:
    a16 = A16.replace("180055811101642", ins_of(804)).replace("1750000000", HOSPITAL)
    answer = record.post("/discharge-notices", content=a16, headers={**hospital, **HL7})
    assert answer.status_code == 202, answer.text
    until(lambda: messages(record, 804))
    assert team_idnats(record, 804) == {"810001234567", COORDINATOR}
    a03 = a16.replace("ADT^A16^ADT_A16", "ADT^A03^ADT_A03").replace("HEGP-0001", "HEGP-0002") \
        .replace("|8\nPV2", "|7|||||||||20261209113000\nPV2")  # PV1-36, PV1-45
    assert record.post("/discharge-notices", content=a03, headers={**hospital, **HL7}
                       ).status_code == 202
    stay = until(lambda: [e for e in stay_encounters(record, 804) if e["status"] == "finished"])
    assert stay[0]["period"]["end"] == "2026-12-09T11:30:00+01:00"
    assert search(record, "Task", **{"patient.identifier": f"{INS_SYSTEM}|{ins_of(804)}"})
    # the pending discharge resent after the discharge: kept, nothing reopened or told
    told_before = messages(record, 804)
    late = record.post("/discharge-notices", headers={**hospital, **HL7},
                       content=a16.replace("HEGP-0001", "HEGP-0001-resent"))
    assert late.status_code == 202 and "déjà terminé" in late.text
    a13 = a03.replace("ADT^A03^ADT_A03", "ADT^A13^ADT_A01").replace("HEGP-0002", "HEGP-0003")
    assert record.post("/discharge-notices", content=a13, headers={**hospital, **HL7}
                       ).status_code == 202
    told = until(lambda: [t for t in messages(record, 804) if "annulée" in t])
    assert len(told) == 2 and "le patient reste hospitalisé" in told[0]
    assert len(messages(record, 804)) == len(told_before) + 2  # the late A16 told no one


def test_a_hospital_announces_its_own_stays_only(
        record: TestClient, hospital: dict[str, str]) -> None:
    other = bearer(issue_token("hospital", organization=OTHER_HOSPITAL))
    refused = record.post("/discharge-notices", json=encounter(805), headers={**other, **FHIR})
    assert refused.status_code == 403
    # the same stay number under its own name is its own stay: the first hospital's is untouched
    record.post("/discharge-notices", json=encounter(805), headers={**hospital, **FHIR})
    until(lambda: stay_encounters(record, 805))
    own = record.post("/discharge-notices", json=encounter(
        805, status="cancelled", planned=None, hospital=OTHER_HOSPITAL),
        headers={**other, **FHIR})
    assert own.status_code == 202
    until(lambda: len(stay_encounters(record, 805)) == 2)
    mine = [e for e in stay_encounters(record, 805)
            if e.get("extension") and e["status"] == "in-progress"]
    assert len(mine) == 1
    for token in (bearer(issue_token("professional", idnat=GP)),
                  bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))):
        assert record.post("/discharge-notices", json=encounter(805),
                           headers={**token, **FHIR}).status_code == 403


@pytest.mark.parametrize(("change", "says"), [
    ({"contained": []}, "contained Patient"),
    ({"identifier": []}, "number of the stay"),
    ({"status": "entered-in-error"}, "Encounter.status"),
    ({"extension": []}, "planned discharge gives its date"),
])
def test_a_notice_that_cannot_be_told_is_refused_saying_why(
        record: TestClient, hospital: dict[str, str], change: dict[str, Any], says: str) -> None:
    answer = record.post("/discharge-notices", json={**encounter(806), **change},
                         headers={**hospital, **FHIR})
    assert answer.status_code == 400 and says in answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_a_notice_too_large_is_refused_before_it_is_read(
        record: TestClient, hospital: dict[str, str]) -> None:
    padded = {**encounter(808), "text": {"status": "generated",
                                         "div": f"<div>{'x' * 300_000}</div>"}}
    answer = record.post("/discharge-notices", json=padded, headers={**hospital, **FHIR})
    assert answer.status_code == 413 and "over the limit" in answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_adt_over_mllp_is_acknowledged_once_stored(liaison: Callable[..., Any],
                                                   tmp_path: Path) -> None:
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    a16 = A16.replace("180055811101642", ins_of(807)).replace("1750000000", HOSPITAL)
    foreign = a16.replace(f"HEGP^{HOSPITAL}^ISO", f"X^{OTHER_HOSPITAL}^ISO", 1) \
        .replace("HEGP-0001", "X-1")
    no_ins = a16.replace(f"~{ins_of(807)}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS",
                         "").replace("HEGP-0001", "HEGP-9")
    with liaison(mllp_port=0, mllp_organizations=[HOSPITAL]) as client:
        port = client.app.state.mllp.port  # type: ignore[attr-defined]

        async def exchange(*messages_: str) -> list[str]:
            reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
            answers = []
            for text in messages_:
                writer.writemessage(hl7.parse(text))
                await writer.drain()
                ack = await asyncio.wait_for(reader.readmessage(), 30)
                answers.append(f"{ack.segment('MSA')[1]}|{ack.segment('MSA')[3]}")
            writer.close()
            return answers

        answers = asyncio.run(exchange(a16, a16, no_ins, foreign, a16.replace(
            "ADT^A16^ADT_A16", "ADT^A01^ADT_A01").replace("HEGP-0001", "HEGP-10")))
        assert answers[0].startswith("AA|Sortie prévue le mercredi 9 décembre")
        assert answers[1] == answers[0]  # resent: acknowledged again, queued once
        assert answers[2].startswith("AE|PID-3 names no INS")
        assert answers[3].startswith("AR|a hospital announces the discharges of its own")
        assert answers[4].startswith("AA|A01")
        until(lambda: len(messages(client, 807)) == 2)
        assert client.get("/fhir/Encounter", headers=bearer(issue_token("system"))
                          ).json()["total"] == 1


def test_carers_with_an_mssante_mailbox_hear_of_the_planned_discharge_by_mail(
        liaison: Callable[..., Any], hospital: dict[str, str], tmp_path: Path) -> None:
    from tests.support.mail import MailRelay, make_tls

    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")
    with MailRelay(make_tls(tmp_path)) as relay, liaison(**relay.settings()) as client:
        answer = client.post("/discharge-notices", json=encounter(808),
                             headers={**hospital, **FHIR})
        assert answer.status_code == 202, answer.text
        (mail,) = relay.wait_for(1)  # the coordinator has a mailbox; the GP, in no directory, not
        assert mail.recipients == ["claire.martin@cpts-paris-centre.mssante.fr"]
        assert str(mail.message["Subject"]).startswith("Sortie prévue le mercredi 9 décembre")
        assert "Patient : Alice MARTIN, né(e) le" in mail.message.get_content()
