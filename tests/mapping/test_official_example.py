"""The official LDL-SES 2022.01 example, field by field."""

from __future__ import annotations

import pytest

from adapter.fhir_validation import validate_bundle
from adapter.mapping import Conversion
from tests.mapping.helpers import (
    by_url,
    convert_file,
    diagnostics,
    identifier_values,
    one,
    resources,
    role_codes,
)
from tests.support.paths import LDL_SES_EXAMPLE

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"


@pytest.fixture(scope="module")
def example() -> Conversion:
    return convert_file(LDL_SES_EXAMPLE)


def test_the_bundle_is_a_valid_transaction(example: Conversion) -> None:
    assert example.bundle["type"] == "transaction"
    assert validate_bundle(example.bundle) == []


def test_the_patient_carries_the_test_ins_and_the_ipp_typed_as_fr_core(example: Conversion
                                                                        ) -> None:
    patient = one(example.bundle, "Patient")
    ins, ipp = patient["identifier"]
    assert (ins["system"], ins["value"]) == ("urn:oid:1.2.250.1.213.1.4.10", "279035121518989")
    assert ins["type"]["coding"][0]["code"] == "INS-NIR-TEST"
    assert (ipp["system"], ipp["type"]["coding"][0]["code"]) == ("urn:oid:1.2.3.4.567.8.9.10",
                                                                 "PI")
    assert [n["use"] for n in patient["name"]] == ["official", "usual"]
    # FR Core: the first birth given name (an INS trait), every birth given name beside it
    assert patient["name"][0]["given"] == ["DOMINIQUE"]
    assert patient["name"][0]["extension"] == [{
        "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-"
               "given-name", "valueString": "DOMINIQUE MARIE-LOUISE"}]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1979-03-28")
    assert patient["extension"][0]["valueAddress"]["city"] == "DOMPREMY"


def test_the_medecin_traitant_is_medioni_and_is_the_general_practitioner(example: Conversion
                                                                          ) -> None:
    assert example.letter.pcp_idnat == "801984758437"
    patient = one(example.bundle, "Patient")
    pcp_role = by_url(example.bundle, patient["generalPractitioner"][0]["reference"])
    practitioner = by_url(example.bundle, pcp_role["practitioner"]["reference"])
    assert identifier_values(practitioner, IDNAT_PS) == ["801984758437"]
    assert identifier_values(practitioner, "https://rpps.esante.gouv.fr") == ["01984758437"]
    assert practitioner["name"][0]["family"] == "MEDIONI"
    team = one(example.bundle, "CareTeam")
    pcp = [p for p in team["participant"] if "PCP" in role_codes(p)]
    assert [p["member"]["reference"] for p in pcp] == [patient["generalPractitioner"][0][
        "reference"]]


def test_one_communication_per_recipient_plus_the_medecin_traitant(example: Conversion) -> None:
    communications = resources(example.bundle, "Communication")
    assert len(communications) == 3
    recipients = [by_url(example.bundle, c["recipient"][0]["reference"]) for c in communications]
    families = [by_url(example.bundle, r["practitioner"]["reference"])["name"][0]["family"]
                for r in recipients]
    # the example gives DAVID's idNat_PS to the recipient BOILEAU: the identifier wins
    assert families == ["DAVID", "DUCOUT", "MEDIONI"]
    author_role = one(example.bundle, "CarePlan")["author"]["reference"]
    for communication in communications:
        assert communication["sender"]["reference"] == author_role
        assert communication["category"][0]["coding"][0]["code"] == "notification"
        assert communication["sent"] == "2019-12-03T13:30:00+01:00"
        document = by_url(example.bundle, communication["payload"][1]["contentReference"][
            "reference"])
        assert document["resourceType"] == "DocumentReference"
    assert any("names different people" in d for d in diagnostics(example))


def test_care_plan_activities_are_the_discharge_treatment_and_the_follow_up(example: Conversion
                                                                             ) -> None:
    plan = one(example.bundle, "CarePlan")
    activities = [by_url(example.bundle, a["reference"]["reference"]) for a in plan["activity"]]
    assert [a["resourceType"] for a in activities] == [
        "MedicationRequest", "ServiceRequest", "ServiceRequest", "Appointment"]
    medication, act, follow_up, meeting = activities
    assert medication["medicationCodeableConcept"]["coding"][0]["code"] == "62552920"
    assert medication["dosageInstruction"][0]["maxDosePerPeriod"]["numerator"]["value"] == 300
    assert act["code"]["coding"][0]["code"] == "ECQH010"
    assert act["priority"] == "urgent"
    assert follow_up["code"]["text"] == "Suivi par le psychiatre à prévoir"
    assert meeting["status"] == "proposed"
    assert plan["description"] == "Episode psychotique – cachexie/anorexie"
    assert plan["meta"]["profile"] == ["http://hl7.eu/fhir/hdr/StructureDefinition/carePlan-eu-hdr"]
    assert any("Streptococcus pneumoniae" in note["text"] for note in plan["note"])


def test_what_carers_must_see_comes_with_the_plan(example: Conversion) -> None:
    plan = one(example.bundle, "CarePlan")
    supporting = [by_url(example.bundle, s["reference"]) for s in plan["supportingInfo"]]
    assert [s["resourceType"] for s in supporting] == [
        "DocumentReference", "Flag", "MedicationStatement", "DeviceUseStatement",
        "AllergyIntolerance"]
    device = by_url(example.bundle, supporting[3]["device"]["reference"])
    assert device["type"]["coding"][0]["code"] == "J010104"


def test_multi_resistant_bacteria_carriage_is_a_flag(example: Conversion) -> None:
    [flag] = resources(example.bundle, "Flag")
    assert flag["status"] == "active"
    assert flag["category"][0]["coding"][0]["code"] == "clinical"
    assert flag["code"]["coding"][0]["code"] == "MED-144"
    assert "BMR/BHRe" in flag["code"]["text"] and "Streptococcus pneumoniae" in flag[
        "code"]["text"]
    assert flag["period"] == {"start": "2018-12-03"}


def test_drugs_stopped_during_the_stay_keep_their_codes(example: Conversion) -> None:
    [stopped] = resources(example.bundle, "MedicationStatement")
    assert stopped["status"] == "stopped"
    codes = {(c["system"], c["code"]) for c in stopped["medicationCodeableConcept"]["coding"]}
    assert ("https://smt.esante.gouv.fr/terminologie-cis", "60019927") in codes
    assert stopped["medicationCodeableConcept"]["text"] == "SOLIAN 100 mg"
    assert stopped["effectivePeriod"] == {"start": "2018-08-01", "end": "2019-10-29"}
    assert not any("Traitements administrés" in i["diagnostics"]
                   for i in example.report["issue"])  # mapped, not only a note


def test_no_allergy_found_is_said_with_the_no_known_allergy_code(example: Conversion) -> None:
    [allergy] = resources(example.bundle, "AllergyIntolerance")
    assert allergy["code"]["coding"] == [{"system": "http://snomed.info/sct",
                                          "code": "716186003", "display": "No known allergy"}]
    assert allergy["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert not any("allergen" in i["diagnostics"] for i in example.report["issue"])


def test_a_transfer_is_told_as_a_transfer(example: Conversion) -> None:
    assert example.letter.transfer and example.letter.discharge_destination == (
        "Autre établissement de santé")
    for message in resources(example.bundle, "Communication"):
        text = message["payload"][0]["contentString"]
        assert "transfert (Autre établissement de santé)" in text and "après la sortie" not in text
        assert "du 03/12/2019" in text


def test_the_signature_time_is_on_the_provenance(example: Conversion) -> None:
    [provenance] = resources(example.bundle, "Provenance")
    [signature] = provenance["signature"]
    assert signature["when"] == "2019-12-03T13:30:00+01:00"
    signer = by_url(example.bundle, signature["who"]["reference"])
    assert signer["resourceType"] == "PractitionerRole"


def test_stay_summary_dates_are_kept_in_the_notes(example: Conversion) -> None:
    notes = [note["text"] for note in one(example.bundle, "CarePlan")["note"]]
    assert "Synthèse médicale : Infection respiratoire aigüe (03/12/2018)" in notes


def test_the_encounter_has_the_stay_period_and_modes(example: Conversion) -> None:
    encounter = one(example.bundle, "Encounter")
    assert encounter["period"] == {"start": "2019-10-29T11:17:00+01:00",
                                   "end": "2019-12-03T13:30:00+01:00"}
    assert encounter["class"]["code"] == "IMP"
    assert encounter["hospitalization"]["admitSource"]["coding"][0]["code"] == "107724000"
    assert encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == (
        "GEN-092.06.01")


def test_the_care_team_follows_the_cercle_de_soins_profile(example: Conversion) -> None:
    team = one(example.bundle, "CareTeam")
    assert team["meta"]["profile"] == [
        "https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-ihe-careteam"]
    assert len(team["identifier"]) == 1 and team["name"].startswith("Cercle de soins de")
    assert team["period"]["start"] == "2019-12-03T13:30:00+01:00"
    assert all(p["period"]["start"] and p["member"]["reference"].startswith("urn:uuid:")
               for p in team["participant"])
    roles = set().union(*(role_codes(p) for p in team["participant"]))
    assert {"PCP", "AUT", "IRCP", "NOK", "ECON", "GUARD"} <= roles
    assert team["managingOrganization"][0]["reference"] == one(
        example.bundle, "DocumentReference")["custodian"]["reference"]


def test_organizations_carry_idnat_struct_and_finess(example: Conversion) -> None:
    custodian = by_url(example.bundle, one(example.bundle, "DocumentReference")["custodian"][
        "reference"])
    assert identifier_values(custodian, IDNAT_STRUCT) == ["1750803447"]
    assert identifier_values(custodian, "https://finess.esante.gouv.fr") == ["750803447"]


def test_the_document_reference_keeps_the_original_letter_with_its_hash(example: Conversion
                                                                         ) -> None:
    import base64
    import hashlib

    document = one(example.bundle, "DocumentReference")
    attachment = document["content"][0]["attachment"]
    original = LDL_SES_EXAMPLE.read_bytes()
    assert base64.b64decode(attachment["data"]) == original
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(original).digest()).decode()
    assert document["docStatus"] == "preliminary"  # the letter says "en cours"
    assert example.letter.sha1 == hashlib.sha1(original).hexdigest()


def test_the_letter_summary(example: Conversion) -> None:
    summary = example.letter
    assert summary.document_id == ("urn:ietf:rfc:3986", "urn:oid:1.2.250.1.213.1.1.1.29.2022.1.1")
    assert summary.set_id == ("urn:ietf:rfc:3986", "urn:oid:1.2.250.1.213.1.1.1.29.2022.1")
    assert (summary.version, summary.kind, summary.model) == (1, "structured", "LDL-SES 2022.01")
    assert summary.ins == ("urn:oid:1.2.250.1.213.1.4.10", "279035121518989")
    assert summary.patient_postal_code == "75007"
    assert summary.confidentiality == "N"
    assert summary.effective_time == "2019-12-03T13:30:00+01:00"
    assert summary.author_idnat == "801234567897"
    assert summary.custodian == (IDNAT_STRUCT, "1750803447")
    assert summary.recipient_idnats == ["801234567897", "801234567896"]


def test_a_letter_in_progress_is_visibly_provisional(example: Conversion) -> None:
    """The example's status is 385651009 "en cours d'exécution": not the final word."""
    document = one(example.bundle, "DocumentReference")
    assert document["docStatus"] == "preliminary"
    plan = one(example.bundle, "CarePlan")
    assert plan["note"][0]["text"].startswith("Lettre de liaison provisoire")
    assert {"system": "urn:liaison:document-status", "code": "preliminary",
            "display": "Lettre provisoire"} in plan["meta"]["tag"]
    assert plan["meta"]["profile"]  # the profile is still declared
