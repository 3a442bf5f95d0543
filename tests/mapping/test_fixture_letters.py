"""liaison's own fixture letters: each one proves one situation of real life."""

from __future__ import annotations

import pytest

from adapter.config import get_settings
from adapter.errors import LetterTooLarge, NotXml, RefusedLetter
from adapter.mapping import convert_letter
from tests.mapping.helpers import (
    LETTERS,
    by_url,
    convert_fixture,
    diagnostics,
    one,
    resources,
    role_codes,
)


def test_three_recipients_get_three_communications_and_the_pcp_no_extra_one() -> None:
    conversion = convert_fixture("ldl-ses-three-recipients.xml")
    communications = resources(conversion.bundle, "Communication")
    assert len(communications) == 3
    assert conversion.letter.recipient_idnats == ["810001234567", "810005551234", "810007778889"]
    assert conversion.letter.pcp_idnat == "810001234567"
    team = one(conversion.bundle, "CareTeam")
    pcp = next(p for p in team["participant"] if "PCP" in role_codes(p))
    assert "IRCP" in role_codes(pcp)  # the médecin traitant is also a recipient


def test_the_recipients_mssante_mailboxes_are_typed_as_the_annuaire_does() -> None:
    bundle = convert_fixture("ldl-ses-three-recipients.xml").bundle
    mailboxes = [t for role in resources(bundle, "PractitionerRole")
                 for t in role.get("telecom", []) if t["system"] == "email"]
    assert mailboxes
    for mailbox in mailboxes:
        urls = [e["url"] for e in mailbox["extension"]]
        assert "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/" \
               "as-ext-mailbox-mss-metadata" in urls


def test_ins_nia_is_typed_as_fr_core_and_summarised() -> None:
    conversion = convert_fixture("ldl-ses-ins-nia-no-pcp.xml")
    patient = one(conversion.bundle, "Patient")
    nia = patient["identifier"][0]
    assert (nia["system"], nia["type"]["coding"][0]["code"]) == (
        "urn:oid:1.2.250.1.213.1.4.9", "INS-NIA")
    assert conversion.letter.ins == ("urn:oid:1.2.250.1.213.1.4.9", "354076926698766")


def test_a_patient_without_medecin_traitant_works_and_the_report_says_so() -> None:
    conversion = convert_fixture("ldl-ses-ins-nia-no-pcp.xml")
    assert conversion.letter.pcp_idnat is None
    assert "generalPractitioner" not in one(conversion.bundle, "Patient")
    team = one(conversion.bundle, "CareTeam")
    assert not any("PCP" in role_codes(p) for p in team["participant"])
    assert len(resources(conversion.bundle, "Communication")) == 1  # the nurse only
    assert any("no médecin traitant" in d for d in diagnostics(conversion))


def test_a_letter_without_plan_de_soins_has_only_the_treatments_as_activities() -> None:
    bundle = convert_fixture("ldl-ses-no-plan.xml").bundle
    plan = one(bundle, "CarePlan")
    kinds = [by_url(bundle, a["reference"]["reference"])["resourceType"]
             for a in plan["activity"]]
    assert kinds == ["MedicationRequest", "MedicationRequest"]
    assert resources(bundle, "ServiceRequest") == resources(bundle, "Appointment") == []


def test_null_flavored_identifiers_are_not_invented_and_are_reported() -> None:
    conversion = convert_fixture("ldl-ses-nullflavor-ids.xml")
    patient = one(conversion.bundle, "Patient")
    # no INS: the hospital's IPP, and the key scoping it to that hospital (never a match key
    # across hospitals)
    assert [i["value"] for i in patient["identifier"]] == [
        "IPP000789", "1.2.250.1.71.4.2.2^1690000015/urn:oid:1.2.250.1.213.1.2.3.4|IPP000789"]
    assert conversion.letter.ins is None
    assert any("identity not qualified" in d for d in diagnostics(conversion))
    unidentified = [p for p in resources(conversion.bundle, "Practitioner")
                    if p["identifier"][0]["system"] == "urn:liaison:unidentified"]
    assert len(unidentified) == 2  # the recipient and the performer
    assert conversion.letter.recipient_idnats == []
    assert len(resources(conversion.bundle, "Communication")) == 2  # recipient + PCP
    assert sum("without a usable identifier" in d for d in diagnostics(conversion)) >= 3


def test_an_iso_8859_1_letter_keeps_its_accents() -> None:
    conversion = convert_fixture("ldl-ses-2020-latin1.xml")
    assert conversion.letter.model == "LDL-SES 2020.01"
    plan = one(conversion.bundle, "CarePlan")
    assert plan["description"] == "Décompensation cardiaque globale"


def test_an_n1_letter_maps_its_header_and_attaches_the_pdf() -> None:
    conversion = convert_fixture("n1-pdf-discharge.xml")
    assert conversion.letter.kind == "pdf"
    document = one(conversion.bundle, "DocumentReference")
    assert [c["attachment"]["contentType"] for c in document["content"]] == [
        "text/xml", "application/pdf"]
    import base64

    assert base64.b64decode(document["content"][1]["attachment"]["data"]).startswith(b"%PDF")
    assert "activity" not in one(conversion.bundle, "CarePlan")
    assert len(resources(conversion.bundle, "Communication")) == 1


def test_allergies_become_allergy_intolerances() -> None:
    allergy = one(convert_fixture("ldl-ses-v1.xml").bundle, "AllergyIntolerance")
    assert allergy["code"]["coding"][0]["code"] == "764146007"
    assert (allergy["category"], allergy["type"]) == (["medication"], "allergy")


@pytest.mark.parametrize(("fixture", "error", "words"), [
    ("lab-report.xml", RefusedLetter, "laboratory report"),
    ("web-page.html", RefusedLetter, "HTML"),
    ("not-xml.xml", NotXml, "not well-formed XML"),
    ("no-record-target.xml", RefusedLetter, "no recordTarget"),
    ("entry-letter.xml", RefusedLetter, "entry letter"),
    ("entity-expansion.xml", RefusedLetter, "entities"),
    ("unsupported-encoding.xml", RefusedLetter, "UTF-8 or ISO-8859-1"),
])
def test_refused_inputs_say_why_in_one_sentence(fixture: str, error: type, words: str) -> None:
    with pytest.raises(error) as refused:
        convert_letter((LETTERS / "refused" / fixture).read_bytes())
    assert words in refused.value.message
    assert refused.value.operation_outcome()["issue"][0]["diagnostics"] == refused.value.message


def test_a_letter_over_the_configured_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIAISON_MAX_LETTER_BYTES", "4096")
    get_settings.cache_clear()
    with pytest.raises(LetterTooLarge, match="4096 bytes"):
        convert_fixture("ldl-ses-v1.xml")


def test_the_hospital_stay_number_is_kept_on_the_encounter() -> None:
    letter = (LETTERS / "ldl-ses-v1.xml").read_bytes().replace(
        b"<encompassingEncounter>",
        b'<encompassingEncounter><id root="1.2.250.1.213.1.2.3.4.9" extension="SEJ-42"/>')
    encounter = one(convert_letter(letter).bundle, "Encounter")
    assert {"system": "urn:oid:1.2.250.1.213.1.2.3.4.9", "value": "SEJ-42"} in encounter[
        "identifier"]


def test_a_plain_text_n1_body_is_attached_as_base64() -> None:
    import base64

    letter = (LETTERS / "n1-pdf-discharge.xml").read_bytes()
    start = letter.index(b'<text mediaType="application/pdf"')
    end = letter.index(b"</text>", start) + len(b"</text>")
    letter = letter[:start] + b'<text mediaType="text/plain">Sortie le 12/03.</text>' + letter[end:]
    document = one(convert_letter(letter).bundle, "DocumentReference")
    attachment = document["content"][1]["attachment"]
    assert attachment["contentType"] == "text/plain"
    assert base64.b64decode(attachment["data"]) == b"Sortie le 12/03."
