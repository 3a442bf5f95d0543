"""Enrichment from a professional directory through the DirectoryLookup port."""

from __future__ import annotations

import pytest

from adapter.fhir_validation import validate_bundle
from adapter.mapping import Conversion
from adapter.mapping.directory_port import (
    Coding,
    ContactPoint,
    OrganizationCard,
    ProfessionalCard,
)
from tests.mapping.helpers import by_url, convert_fixture, diagnostics, one, resources

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"


class DictDirectory:
    """A directory held in dicts: the port's contract, filled by the test."""

    def __init__(self, professionals: dict[tuple[str, str], ProfessionalCard],
                 organizations: dict[tuple[str, str], OrganizationCard]) -> None:
        self._professionals = professionals
        self._organizations = organizations
        self.asked: list[tuple[str, str]] = []

    def professional(self, system: str, value: str) -> ProfessionalCard | None:
        self.asked.append((system, value))
        return self._professionals.get((system, value))

    def organization(self, system: str, value: str) -> OrganizationCard | None:
        return self._organizations.get((system, value))


NURSE = ProfessionalCard(
    identifiers=((IDNAT_PS, "810005551234"),), family="BERNARD-LEROY", given=("Julie",),
    prefix="MME",
    profession=Coding("https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/"
                      "TRE-G15-ProfessionSante", "60", "Infirmier"),
    telecom=(ContactPoint("phone", "0478556677", "work"),
             ContactPoint("email", "julie.bernard@infirmier.mssante.fr", mssante=True)),
)


@pytest.fixture
def enriched() -> Conversion:
    directory = DictDirectory(
        {(IDNAT_PS, "810005551234"): NURSE},
        {(IDNAT_STRUCT, "1690000015"): OrganizationCard(
            identifiers=((IDNAT_STRUCT, "1690000015"),), name="CH de Rivebelle (annuaire)")})
    return convert_fixture("ldl-ses-three-recipients.xml", directory=directory)


def nurse_role(conversion: Conversion) -> dict:
    for role in resources(conversion.bundle, "PractitionerRole"):
        practitioner = by_url(conversion.bundle, role["practitioner"]["reference"])
        if practitioner["identifier"][0]["value"] == "810005551234":
            return role
    raise AssertionError("no PractitionerRole for the nurse")


def test_a_known_professional_takes_the_directory_name_profession_and_mailbox(enriched) -> None:
    role = nurse_role(enriched)
    practitioner = by_url(enriched.bundle, role["practitioner"]["reference"])
    assert practitioner["name"] == [{"family": "BERNARD-LEROY", "given": ["Julie"],
                                     "prefix": ["MME"]}]
    assert role["code"][0]["coding"][0]["code"] == "60"
    mailbox = next(t for t in role["telecom"]
                   if t["value"] == "julie.bernard@infirmier.mssante.fr")
    assert mailbox["system"] == "email"
    assert mailbox["extension"][1]["url"].endswith("as-ext-mailbox-mss-metadata")
    assert {"system": "phone", "value": "0478556677", "use": "work"} in role["telecom"]
    assert validate_bundle(enriched.bundle) == []


def test_the_communication_to_a_known_professional_goes_to_that_practitioner_role(enriched
                                                                                   ) -> None:
    url = next(e["fullUrl"] for e in enriched.bundle["entry"] if e["resource"] is nurse_role(
        enriched))
    recipients = [c["recipient"][0]["reference"] for c in resources(enriched.bundle,
                                                                    "Communication")]
    assert url in recipients


def test_a_known_organization_takes_the_directory_name(enriched) -> None:
    custodian = by_url(enriched.bundle, one(enriched.bundle, "DocumentReference")["custodian"][
        "reference"])
    assert custodian["name"] == "CH de Rivebelle (annuaire)"
    # the letter's own name is not silently dropped: the report says which was kept
    assert any("in the letter" in d and "CH de Rivebelle (annuaire)" in d
               for d in diagnostics(enriched))


def test_unknown_identifiers_are_kept_as_written_and_listed_in_the_report(enriched) -> None:
    unknown = [d for d in diagnostics(enriched) if "is not in the directory" in d]
    assert any("Professional 810007778889" in d for d in unknown)  # the pharmacist
    assert any("Professional 810001234567" in d for d in unknown)  # the médecin traitant
    assert not any("Professional 810005551234" in d for d in unknown)
    pharmacist = [p for p in resources(enriched.bundle, "Practitioner")
                  if p["identifier"][0]["value"] == "810007778889"]
    assert pharmacist[0]["name"][0]["family"] == "NGUYEN"


def test_without_a_directory_nothing_is_looked_up() -> None:
    conversion = convert_fixture("ldl-ses-three-recipients.xml")
    assert not any("directory" in d for d in diagnostics(conversion))
