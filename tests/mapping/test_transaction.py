"""Transaction rules: deterministic identity, conditional create/update, versions, Provenance."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import pytest

from adapter.fhir_validation import validate_bundle
from adapter.mapping.identity import token_query
from adapter.mapping.serialize import bundle_json
from tests.mapping.helpers import LETTERS, convert_file, convert_fixture, entry_of, one, resources
from tests.support.paths import LDL_SES_EXAMPLE

SHARED = {"Patient", "Practitioner", "PractitionerRole", "Organization", "RelatedPerson"}
# per letter (its setId): the letter's own resources and its items, updated by a new version
PER_LETTER = {"CarePlan", "CareTeam", "Encounter", "MedicationRequest", "ServiceRequest",
              "Appointment", "Device", "DeviceUseStatement", "DeviceRequest",
              "AllergyIntolerance"}
ALL_LETTERS = sorted(LETTERS.glob("*.xml"))


@pytest.mark.parametrize("letter", ALL_LETTERS, ids=lambda p: p.stem)
def test_every_fixture_converts_to_a_valid_transaction(letter) -> None:
    assert validate_bundle(convert_file(letter).bundle) == []


def test_the_same_letter_gives_byte_identical_bundles() -> None:
    first = bundle_json(convert_file(LDL_SES_EXAMPLE).bundle)
    second = bundle_json(convert_file(LDL_SES_EXAMPLE).bundle)
    assert first == second


def test_requests_follow_the_contract() -> None:
    bundle = convert_fixture("ldl-ses-v1.xml").bundle
    for entry in bundle["entry"]:
        resource_type = entry["resource"]["resourceType"]
        request = entry["request"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        if resource_type in PER_LETTER:
            assert request["method"] == "PUT"
            assert request["url"].startswith(f"{resource_type}?identifier=")
        elif resource_type == "Provenance":
            assert request["method"] == "POST" and request["url"] == "Provenance"
            tag = entry["resource"]["meta"]["tag"][0]
            assert _token(request["ifNoneExist"], "_tag") == (tag["system"], tag["code"])
        else:
            assert request["method"] == "POST" and request["url"] == resource_type
            system, value = _token(request["ifNoneExist"], "identifier")
            assert {"system": system, "value": value} in [
                {"system": i.get("system"), "value": i["value"]}
                for i in entry["resource"]["identifier"]]


def _token(query: str, name: str) -> tuple[str, str]:
    """Decode `name=system|code` as a FHIR server does: percent-decoding, then search escapes."""
    [(key, value)] = parse_qsl(query)
    assert key == name
    system, code = re.split(r"(?<!\\)\|", value, maxsplit=1)
    return tuple(re.sub(r"\\([\\|,$])", r"\1", part) for part in (system, code))


def test_token_queries_escape_what_would_change_their_meaning() -> None:
    query = token_query("identifier", "urn:oid:1.2.3", "IPP 12|34&x=1,5$\\")
    assert "&" not in query and " " not in query
    assert _token(query, "identifier") == ("urn:oid:1.2.3", "IPP 12|34&x=1,5$\\")
    assert token_query("identifier", "urn:oid:1.2", "279035121518989") == (
        "identifier=urn:oid:1.2|279035121518989")


def test_all_references_point_inside_the_bundle() -> None:
    bundle = convert_fixture("ldl-ses-three-recipients.xml").bundle
    urls = {e["fullUrl"] for e in bundle["entry"]}
    text = bundle_json(bundle).decode()
    import re

    assert set(re.findall(r'"reference":"(urn:uuid:[0-9a-f-]+)"', text)) <= urls


def test_a_second_version_updates_the_same_care_plan_and_care_team() -> None:
    first = convert_fixture("ldl-ses-v1.xml").bundle
    second = convert_fixture("ldl-ses-v2.xml").bundle
    for resource_type in ("CarePlan", "CareTeam", "Encounter"):
        before, after = entry_of(first, one(first, resource_type)), entry_of(
            second, one(second, resource_type))
        assert before["request"] == after["request"]
        assert before["fullUrl"] == after["fullUrl"]
    assert len(one(second, "CarePlan")["activity"]) == len(one(first, "CarePlan")["activity"]) + 1
    document_1, document_2 = one(first, "DocumentReference"), one(second, "DocumentReference")
    assert entry_of(first, document_1)["request"] != entry_of(second, document_2)["request"]
    assert document_2["relatesTo"] == [{"code": "replaces", "target": {
        "type": "DocumentReference", "identifier": document_1["identifier"][0]}}]
    assert "relatesTo" not in document_1
    # the same people are the same resources across versions
    shared_1 = {e["fullUrl"] for e in first["entry"] if e["resource"]["resourceType"] in SHARED}
    shared_2 = {e["fullUrl"] for e in second["entry"] if e["resource"]["resourceType"] in SHARED}
    assert shared_1 == shared_2


def test_version_2_communications_are_new_messages() -> None:
    first = convert_fixture("ldl-ses-v1.xml")
    second = convert_fixture("ldl-ses-v2.xml")
    assert second.letter.version == 2 and first.letter.set_id == second.letter.set_id
    urls_1 = {entry_of(first.bundle, c)["fullUrl"] for c in resources(first.bundle,
                                                                      "Communication")}
    urls_2 = {entry_of(second.bundle, c)["fullUrl"] for c in resources(second.bundle,
                                                                       "Communication")}
    assert urls_1.isdisjoint(urls_2)


def test_provenance_targets_every_produced_resource_and_cites_the_document() -> None:
    bundle = convert_fixture("ldl-ses-v1.xml").bundle
    provenance = one(bundle, "Provenance")
    targets = {t["reference"] for t in provenance["target"]}
    others = {e["fullUrl"] for e in bundle["entry"] if e["resource"] is not provenance}
    assert targets == others
    document_url = entry_of(bundle, one(bundle, "DocumentReference"))["fullUrl"]
    assert provenance["entity"] == [{"role": "source", "what": {"reference": document_url}}]
    assert provenance["recorded"] == "2025-03-12T15:00:00+01:00"


def test_shared_reference_data_carries_fr_core_and_annuaire_profiles() -> None:
    bundle = convert_fixture("ldl-ses-v1.xml").bundle
    profiles = {e["resource"]["resourceType"]: e["resource"]["meta"]["profile"][0]
                for e in bundle["entry"] if "profile" in e["resource"].get("meta", {})}
    assert profiles["Patient"] == "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
    assert profiles["PractitionerRole"] == (
        "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-practitionerrole")


def test_no_mapping_module_reads_the_clock() -> None:
    from pathlib import Path

    import adapter.cda
    import adapter.mapping

    folders = [Path(adapter.cda.__file__).parent, Path(adapter.mapping.__file__).parent]
    for source in (p for folder in folders for p in folder.glob("*.py")):
        text = source.read_text(encoding="utf-8")
        for clock in ("now(", "utcnow(", "time.time(", "today("):
            assert clock not in text, f"{source.name} reads the clock ({clock})"


def test_the_summary_gives_the_keys_of_identifiers_and_provenance_tag() -> None:
    conversion = convert_fixture("ldl-ses-v2.xml")
    summary = conversion.letter
    assert summary.document_key == "1.2.250.1.213.1.2.3.4.100^LDL-2025-0001-v2"
    assert summary.set_key == "1.2.250.1.213.1.2.3.4.101^LDL-2025-0001"
    assert one(conversion.bundle, "Provenance")["meta"]["tag"][0]["code"] == summary.document_key
    assert one(conversion.bundle, "CarePlan")["identifier"][0]["value"] == summary.set_key
    communication = resources(conversion.bundle, "Communication")[0]
    assert communication["identifier"][0]["value"] == f"{summary.document_key}/810001234567"
