"""End to end with the mapping: the LDL-SES example's recipients and médecin traitant come out
enriched by the directory, their MSSanté mailboxes in the Communication recipients' telecom."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from adapter.directory.importer import import_path
from adapter.directory.lookup import SqlDirectory
from tests.directory.conftest import MSSANTE_SAMPLE, NATIONAL_SAMPLE
from tests.support.paths import LDL_SES_EXAMPLE

mapping = pytest.importorskip("adapter.mapping", reason="the mapping (issue 2) is not importable")
if not hasattr(mapping, "convert_letter"):
    pytest.skip("adapter.mapping.convert_letter is not there yet", allow_module_level=True)

IDNAT = "urn:oid:1.2.250.1.71.4.2.1"
EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
MAILBOXES = {
    "801234567897": "charles.david@hegp.mssante.fr",
    "801234567896": "elsa.ducout@infirmier.mssante.fr",
    "801984758437": "stephane.medioni@medecin.mssante.fr",
}


def _resources(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}


def _idnat_of(role: dict[str, Any], resources: dict[str, dict[str, Any]]) -> str | None:
    practitioner = resources.get(role.get("practitioner", {}).get("reference", ""), {})
    for identifier in practitioner.get("identifier", []):
        if identifier.get("system") == IDNAT:
            return identifier["value"]
    return None


def _mssante(resource: dict[str, Any]) -> list[str]:
    return [
        telecom["value"]
        for telecom in resource.get("telecom", [])
        if any(
            extension.get("url") == EMAIL_TYPE
            and extension.get("valueCoding", {}).get("code") == "MSSANTE"
            for extension in telecom.get("extension", [])
        )
    ]


def _recipients(bundle: dict[str, Any]) -> dict[str, list[str]]:
    """idNat_PS of each Communication recipient → the MSSanté addresses on its resource."""
    resources = _resources(bundle)
    found: dict[str, list[str]] = {}
    for resource in resources.values():
        if resource["resourceType"] != "Communication":
            continue
        for recipient in resource.get("recipient", []):
            target = resources[recipient["reference"]]
            idnat = (
                _idnat_of(target, resources)
                if target["resourceType"] == "PractitionerRole"
                else None
            )
            if target["resourceType"] == "Practitioner":
                idnat = next(i["value"] for i in target["identifier"] if i["system"] == IDNAT)
            found[idnat or "?"] = _mssante(target)
    return found


@pytest.fixture
def letter() -> bytes:
    return LDL_SES_EXAMPLE.read_bytes()


def test_recipients_and_pcp_get_their_mssante_mailboxes(engine: Engine, letter: bytes) -> None:
    import_path(engine, NATIONAL_SAMPLE)
    import_path(engine, MSSANTE_SAMPLE)
    conversion = mapping.convert_letter(letter, directory=SqlDirectory(engine))
    summary = conversion.letter
    assert set(summary.recipient_idnats) == {"801234567897", "801234567896"}
    assert summary.pcp_idnat == "801984758437"

    recipients = _recipients(conversion.bundle)
    for idnat in [*summary.recipient_idnats, summary.pcp_idnat]:
        assert MAILBOXES[idnat] in recipients[idnat], idnat

    resources = _resources(conversion.bundle)
    patient = next(r for r in resources.values() if r["resourceType"] == "Patient")
    pcp = resources[patient["generalPractitioner"][0]["reference"]]
    assert MAILBOXES["801984758437"] in _mssante(pcp)


def test_without_the_directory_the_letter_people_stay_as_written(
    engine: Engine, letter: bytes
) -> None:
    enriched_nowhere = mapping.convert_letter(
        letter, directory=SqlDirectory(engine)
    )  # empty directory
    recipients = _recipients(enriched_nowhere.bundle)
    assert set(recipients) >= {"801234567897", "801234567896", "801984758437"}
    assert all(addresses == [] for addresses in recipients.values())
