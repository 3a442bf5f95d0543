"""Entry identities: liaison's uuid5 shortcut gives exactly what uuid.uuid5 gives."""

from __future__ import annotations

import uuid

from adapter.mapping.identity import LIAISON_NAMESPACE, derived_uuid, full_url


def test_derived_uuids_are_the_standard_uuid5_of_the_joined_parts() -> None:
    for parts in [("Patient", "urn:oid:1.2.250.1.213.1.4.8", "254076926612310"),
                  ("Practitioner", "https://rpps.esante.gouv.fr", "10001234567"),
                  ("RelatedPerson", "Hélène Bérubé-Łukasz ✓"), ("",)]:
        expected = uuid.uuid5(LIAISON_NAMESPACE, "|".join(parts))
        assert derived_uuid(*parts) == str(expected)
        assert uuid.UUID(derived_uuid(*parts)).version == 5


def test_full_urls_are_urn_uuids_of_type_system_and_value() -> None:
    assert full_url("Patient", "urn:oid:1.2.250.1.213.1.4.8", "1") == (
        "urn:uuid:" + str(uuid.uuid5(LIAISON_NAMESPACE, "Patient|urn:oid:1.2.250.1.213.1.4.8|1")))
