"""Letters for the validation tests, derived from the official LDL-SES example."""

from __future__ import annotations

from lxml import etree

from tests.support.paths import LDL_SES_EXAMPLE

CDA = {"cda": "urn:hl7-org:v3"}
DISCHARGE_TREATMENTS = "1.3.6.1.4.1.19376.1.5.3.1.3.22"


def without_section(template_id: str) -> bytes:
    """The official example minus the body component holding the section with `template_id`."""
    tree = etree.fromstring(LDL_SES_EXAMPLE.read_bytes())
    components = tree.xpath(
        f'//cda:component[cda:section/cda:templateId/@root="{template_id}"]', namespaces=CDA
    )
    assert components, f"the example has no section {template_id}"
    for component in components:
        component.getparent().remove(component)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


def with_unknown_header_element() -> bytes:
    """The official example with an element the CDA schema does not allow in the header."""
    tree = etree.fromstring(LDL_SES_EXAMPLE.read_bytes())
    title = tree.find("cda:title", CDA)
    title.addnext(etree.Element("{urn:hl7-org:v3}notInCda"))
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
