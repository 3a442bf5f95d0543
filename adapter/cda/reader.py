"""Safe reading of a CDA document: bounded size, no entities, no DTD, no network.

Hospitals send letters over the network; a hostile or broken input must never make the parser
fetch URLs, expand entities (billion laughs) or read local files.
"""

from __future__ import annotations

import re

from lxml import etree

from adapter.errors import LetterTooLarge, NotXml, RefusedLetter

HL7_NS = "urn:hl7-org:v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ACCEPTED_ENCODINGS = {"utf-8", "utf8", "iso-8859-1", "latin-1", "latin1", "iso8859-1"}

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_DOCTYPE = re.compile(rb"<!DOCTYPE\s+([A-Za-z_:][\w.:-]*)", re.IGNORECASE)
_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(html|!DOCTYPE\s+html)\b", re.IGNORECASE | re.DOTALL
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _check_prologue(xml: bytes) -> None:
    head = xml[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if _HTML_START.match(head):
        raise RefusedLetter("The input is an HTML page, not a CDA R2 XML document.")
    declared = _DECLARATION.match(head)
    if declared and declared.group(1).decode("ascii").lower() not in ACCEPTED_ENCODINGS:
        raise RefusedLetter(
            f"The letter declares the encoding {declared.group(1).decode('ascii')!r}; "
            "liaison reads CDA letters declared in UTF-8 or ISO-8859-1 only."
        )
    doctype = _DOCTYPE.search(xml[:65536])
    if doctype:
        if doctype.group(1).lower() == b"html":
            raise RefusedLetter("The input is an HTML page, not a CDA R2 XML document.")
        if b"<!ENTITY" in xml[: 65536].upper():
            raise RefusedLetter(
                "The letter declares XML entities in a DOCTYPE, which liaison refuses for safety."
            )


def parse_letter(xml: bytes, *, max_bytes: int) -> etree._Element:
    """The root element of a CDA document read safely; raises a `RefusedLetter` saying why not."""
    if len(xml) > max_bytes:
        raise LetterTooLarge(
            f"The letter is {len(xml)} bytes, more than the {max_bytes} bytes liaison accepts "
            "(LIAISON_MAX_LETTER_BYTES)."
        )
    if not xml.strip():
        raise NotXml("The input is empty, not a CDA R2 XML document.")
    _check_prologue(xml)
    try:
        root = etree.fromstring(xml, parser=_parser())
    except etree.XMLSyntaxError as error:
        raise NotXml(f"The input is not well-formed XML ({error.msg}).") from None
    if root is None:
        raise NotXml("The input is not well-formed XML (no root element).")
    return root
