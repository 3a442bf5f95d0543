"""The coordination step on converted letters: coordinator, consent, discharge event."""

from __future__ import annotations

from pathlib import Path

import yaml
from fhir.resources.R4B.bundle import Bundle
from sqlmodel import select

from adapter.coordination import consent
from adapter.coordination.bundle_tools import BundleView
from adapter.coordination.coordinators import CsvCoordinators
from adapter.coordination.enrichment import enrich
from adapter.coordination.rules import load_rules, parse_rules
from adapter.store.coordination_tables import SharingAudit
from adapter.store.db import get_engine, session_scope
from tests.coordination.letters import INS, addressed, synthetic_conversion
from tests.support.paths import FIXTURES, REPO

DIRECTORY_CSV = FIXTURES / "coordination" / "local_directory.csv"
COORDINATOR = "810000000017"
SOR = "https://mos.esante.gouv.fr/NOS/TRE_R254-TypeEvenement/FHIR/TRE-R254-TypeEvenement"


def _coordinator_participants(bundle: dict) -> list[dict]:
    view = BundleView(bundle)
    care_team = view.first("CareTeam") or {}
    return [
        p
        for p in care_team.get("participant") or []
        if any(
            c.get("code") == "coordinator"
            for r in p.get("role") or []
            for c in r.get("coding") or []
        )
    ]


def test_coordinator_of_the_territory_joins_the_care_team_and_gets_a_communication() -> None:
    conversion = synthetic_conversion(postal_code="75007")
    enriched = enrich(conversion, CsvCoordinators(DIRECTORY_CSV))
    [participant] = _coordinator_participants(enriched.bundle)
    view = BundleView(enriched.bundle)
    assert view.idnats_of(participant["member"]["reference"]) == {COORDINATOR}
    assert participant["period"]["start"] == conversion.letter.effective_time
    origin = participant["extension"][0]["extension"]
    assert any("CPTS-PARIS-CENTRE" in part.get("valueString", "") for part in origin)
    assert COORDINATOR in addressed(enriched.bundle)
    assert conversion.bundle is not enriched.bundle  # the input is left untouched
    assert COORDINATOR not in addressed(conversion.bundle)


def test_without_a_covering_rule_no_coordinator_is_added(tmp_path: Path) -> None:
    conversion = synthetic_conversion(postal_code="13001")
    enriched = enrich(conversion, CsvCoordinators(DIRECTORY_CSV))
    assert _coordinator_participants(enriched.bundle) == []
    assert COORDINATOR not in addressed(enriched.bundle)
    messages = [i["diagnostics"] for i in enriched.report["issue"]]
    assert any("no pathway coordinator" in m for m in messages)
    # and with the rule switched off in the YAML, not even in the covered territory
    raw = yaml.safe_load((REPO / "mappings" / "coordination.yaml").read_text(encoding="utf-8"))
    raw["coordinator"]["enabled"] = False
    rules = parse_rules(raw)
    off = enrich(
        synthetic_conversion(postal_code="75007"), CsvCoordinators(DIRECTORY_CSV), rules=rules
    )
    assert _coordinator_participants(off.bundle) == []


def test_a_directory_without_a_coordinator_for_the_postcode_adds_nobody(tmp_path: Path) -> None:
    directory = tmp_path / "directory.csv"
    lines = DIRECTORY_CSV.read_text(encoding="utf-8").splitlines()
    directory.write_text(
        "\n".join(line for line in lines if "CPTS-PARIS-CENTRE" not in line or "member" in line)
    )
    enriched = enrich(synthetic_conversion(postal_code="75007"), CsvCoordinators(directory))
    # the DAC still covers Paris: its coordinator comes instead
    [participant] = _coordinator_participants(enriched.bundle)
    assert BundleView(enriched.bundle).idnats_of(participant["member"]["reference"]) == {
        "810000000025"
    }


def test_enriched_bundle_is_valid_fhir_r4() -> None:
    enriched = enrich(synthetic_conversion(confidentiality="R"), CsvCoordinators(DIRECTORY_CSV))
    Bundle.model_validate(enriched.bundle)  # raises on any invalid element of any resource


def test_discharge_event_is_the_ans_sor_communication_request() -> None:
    enriched = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV))
    [event] = BundleView(enriched.bundle).resources("CommunicationRequest")
    rules = load_rules().section("discharge_event")
    assert event["meta"]["profile"] == [rules["profile"]]
    by_url = {e["url"]: e for e in event["extension"]}
    coding = by_url[rules["event_type_extension"]]["valueCodeableConcept"]["coding"][0]
    assert (coding["system"], coding["code"]) == (SOR, "SOR")
    assert by_url[rules["event_time_extension"]]["valueDateTime"] == "2026-11-20"  # encounter end
    contained = {c["id"]: c for c in event["contained"]}
    assert event["subject"] == {"reference": "#patient"}
    assert contained["patient"]["identifier"][0]["system"] == INS
    assert event["requester"] == {"reference": "#requester"}
    assert contained["requester"]["resourceType"] == "Organization"
    # "subject xor about" (invariant event-subject of NdE_EventDeclarationNdE)
    assert "about" not in event


def _oppose(ins: str) -> None:
    with session_scope(get_engine()) as session:
        consent.record_decision(session, (INS, ins), "oppose", recorded_by="test", source="cli")


def test_opposed_patient_gets_nothing_beyond_the_namedaddressed() -> None:
    _oppose("279035121518989")
    conversion = synthetic_conversion()
    enriched = enrich(conversion, CsvCoordinators(DIRECTORY_CSV))
    # the letter names only the nurse 801234567896; the PCP and the coordinator are not named
    assert addressed(enriched.bundle) == {"801234567896"}
    assert _coordinator_participants(enriched.bundle) == []
    with session_scope(get_engine()) as session:
        withheld = session.exec(
            select(SharingAudit).where(SharingAudit.outcome == "withheld")
        ).all()
    reasons = {(row.action, row.target): row.reason for row in withheld}
    assert "opposed" in reasons[("communication", "801984758437")]  # the PCP's Communication
    assert "opposed" in reasons[("care-team", COORDINATOR)]


def test_withdrawn_opposition_shares_again() -> None:
    _oppose("279035121518989")
    with session_scope(get_engine()) as session:
        consent.record_decision(session, (INS, "279035121518989"), "withdraw", source="api")
    enriched = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV))
    assert {COORDINATOR, "801984758437", "801234567896"} <= addressed(enriched.bundle)


def test_restricted_letter_is_labelled_readable_by_named_recipients_only() -> None:
    enriched = enrich(synthetic_conversion(confidentiality="R"), CsvCoordinators(DIRECTORY_CSV))
    view = BundleView(enriched.bundle)
    [document] = view.resources("DocumentReference")
    security = document["meta"]["security"][0]
    assert security["code"] == "R"
    readers = consent.allowed_readers_of(document, "urn:liaison:restricted-reader")
    assert readers == {"801234567896", "801234567897"}  # recipient and author
    [patient] = view.resources("Patient")
    assert "meta" not in patient or "tag" not in patient["meta"]  # shared data is not labelled


def test_normal_letter_of_a_consenting_patient_is_not_labelled() -> None:
    enriched = enrich(synthetic_conversion(), CsvCoordinators(DIRECTORY_CSV))
    for resource in BundleView(enriched.bundle).resources():
        assert not (resource.get("meta") or {}).get("security")
