"""Document recognition: is this CDA a discharge letter liaison takes, and which model is it?

Rules come from `mappings/documents.yaml`; anything else is refused with one sentence saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from adapter.cda.datatypes import H, child, children, text_of
from adapter.cda.reader import HL7_NS
from adapter.errors import RefusedLetter


@dataclass(frozen=True)
class Recognition:
    kind: str  # "structured" | "pdf"
    model: str  # e.g. "LDL-SES 2022.01"
    sections: str | None  # the section model file (structured letters)


def _template_ids(root: etree._Element) -> list[tuple[str, str]]:
    return [(t.get("root") or "", t.get("extension") or "") for t in children(root, "templateId")]


def recognize(root: etree._Element, rules: dict[str, Any]) -> Recognition:
    qname = etree.QName(root)
    if qname.localname.lower() == "html":
        raise RefusedLetter("The input is an HTML page, not a CDA R2 XML document.")
    if qname.namespace != HL7_NS or qname.localname != "ClinicalDocument":
        raise RefusedLetter(
            f"The XML root element is <{qname.localname}>, not a CDA R2 <ClinicalDocument> "
            "in the urn:hl7-org:v3 namespace."
        )
    templates = _template_ids(root)
    code_element = child(root, "code")
    code = code_element.get("code") if code_element is not None else None
    refused = rules["refused"]
    for template_root, _ in templates:
        if template_root in refused["by_template"]:
            raise RefusedLetter(f"The document is {refused['by_template'][template_root]}.")
    if child(root, "recordTarget") is None:
        raise RefusedLetter(
            "The CDA document has no recordTarget: a discharge letter must name its patient."
        )
    body = child(root, "component")
    structured = child(body, "structuredBody") is not None
    non_xml = child(body, "nonXMLBody")
    if structured:
        for model in rules["models"]:
            for template_root, extension in templates:
                if template_root == model["templateId"] and extension in model["extensions"]:
                    return Recognition("structured", model["name"], model["sections"])
    elif non_xml is not None:
        n1 = rules["non_structured"]
        if code in n1["discharge_codes"]:
            text = child(non_xml, "text")
            media = text.get("mediaType") if text is not None else None
            if media not in n1["media_types"]:
                raise RefusedLetter(
                    f"The letter's nonXMLBody has media type {media!r}; liaison takes "
                    f"{', '.join(n1['media_types'])}."
                )
            return Recognition("pdf", n1["name"], None)
    if code in refused["by_code"]:
        raise RefusedLetter(f"The document is {refused['by_code'][code]}.")
    title = text_of(child(root, "title")) or "untitled"
    if structured:
        raise RefusedLetter(
            f"The structured CDA document ({title!r}, code {code}) is not an LDL-SES discharge "
            "letter (templateId 1.2.250.1.213.1.1.1.29, 2020.01 or 2022.01)."
        )
    if non_xml is not None:
        accepted = ", ".join(rules["non_structured"]["discharge_codes"])
        raise RefusedLetter(
            f"The non-structured CDA document ({title!r}, code {code}) is not a discharge letter "
            f"(its type code must be one of {accepted})."
        )
    raise RefusedLetter("The CDA document has no body (structuredBody or nonXMLBody).")


__all__ = ["H", "Recognition", "recognize"]
