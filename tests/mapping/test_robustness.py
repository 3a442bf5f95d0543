"""Incomplete letters never crash the mapping: each gives a valid bundle or a clear refusal."""

from __future__ import annotations

import pytest
from lxml import etree

from adapter.errors import RefusedLetter
from adapter.fhir_validation import validate_bundle
from adapter.mapping import convert_letter
from tests.mapping.helpers import LETTERS
from tests.support.paths import LDL_SES_EXAMPLE

HL7 = "{urn:hl7-org:v3}"


def _without(source: bytes, xpath: str) -> bytes:
    root = etree.fromstring(source)
    for element in root.xpath(xpath, namespaces={"h": "urn:hl7-org:v3"}):
        element.getparent().remove(element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


REMOVALS = [
    "/h:ClinicalDocument/h:author", "/h:ClinicalDocument/h:custodian",
    "/h:ClinicalDocument/h:legalAuthenticator", "/h:ClinicalDocument/h:participant",
    "/h:ClinicalDocument/h:informationRecipient", "/h:ClinicalDocument/h:componentOf",
    "/h:ClinicalDocument/h:documentationOf", "/h:ClinicalDocument/h:effectiveTime",
    "/h:ClinicalDocument/h:setId", "/h:ClinicalDocument/h:versionNumber",
    "/h:ClinicalDocument/h:title", "/h:ClinicalDocument/h:informant",
    "//h:assignedPerson", "//h:representedOrganization", "//h:name", "//h:addr",
    "//h:telecom", "//h:section/h:text", "//h:entry", "//h:consumable", "//h:value",
    "//h:effectiveTime", "//h:code", "//h:id[not(parent::h:ClinicalDocument)]",
    "//h:patient",
]


@pytest.mark.parametrize("letter", [LETTERS / "ldl-ses-v1.xml", LDL_SES_EXAMPLE],
                         ids=["fixture", "official"])
@pytest.mark.parametrize("xpath", REMOVALS)
def test_a_letter_missing_parts_converts_validly_or_is_refused(letter, xpath: str) -> None:
    source = _without(letter.read_bytes(), xpath)
    try:
        conversion = convert_letter(source)
    except RefusedLetter as refused:
        assert refused.message.endswith(".")
        return
    assert validate_bundle(conversion.bundle) == []
