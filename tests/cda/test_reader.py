"""Safe reading: size limit, no entities, no DTD loading, declared encodings."""

from __future__ import annotations

import pytest

from adapter.cda.datatypes import child, text_of
from adapter.cda.reader import parse_letter
from adapter.errors import LetterTooLarge, NotXml, RefusedLetter
from tests.support.paths import FIXTURES

LIMIT = 1024 * 1024


def test_a_letter_over_the_size_limit_is_refused_as_too_large() -> None:
    letter = (FIXTURES / "letters" / "ldl-ses-v1.xml").read_bytes()
    with pytest.raises(LetterTooLarge) as refused:
        parse_letter(letter, max_bytes=len(letter) - 1)
    assert refused.value.http_status == 413
    assert str(len(letter)) in refused.value.message


def test_a_doctype_declaring_entities_is_refused_before_any_expansion() -> None:
    bomb = (FIXTURES / "letters" / "refused" / "entity-expansion.xml").read_bytes()
    with pytest.raises(RefusedLetter, match="entities"):
        parse_letter(bomb, max_bytes=LIMIT)


def test_an_external_dtd_is_never_loaded() -> None:
    letter = (b'<?xml version="1.0"?>\n<!DOCTYPE ClinicalDocument SYSTEM '
              b'"file:///nonexistent/liaison.dtd">\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
              b"<title>ok</title></ClinicalDocument>")
    root = parse_letter(letter, max_bytes=LIMIT)
    assert text_of(child(root, "title")) == "ok"


def test_text_that_is_not_xml_is_refused_as_not_xml() -> None:
    with pytest.raises(NotXml) as refused:
        parse_letter(b"Patient sorti le 12/03, voir courrier.", max_bytes=LIMIT)
    assert refused.value.http_status == 400


def test_an_empty_input_is_refused_as_not_xml() -> None:
    with pytest.raises(NotXml, match="empty"):
        parse_letter(b"  \n", max_bytes=LIMIT)


def test_an_html_page_is_refused_saying_it_is_html() -> None:
    page = (FIXTURES / "letters" / "refused" / "web-page.html").read_bytes()
    with pytest.raises(RefusedLetter, match="HTML"):
        parse_letter(page, max_bytes=LIMIT)


def test_an_encoding_other_than_utf8_or_latin1_is_refused() -> None:
    letter = (FIXTURES / "letters" / "refused" / "unsupported-encoding.xml").read_bytes()
    with pytest.raises(RefusedLetter, match="Shift_JIS"):
        parse_letter(letter, max_bytes=LIMIT)


def test_iso_8859_1_letters_are_decoded_with_their_accents() -> None:
    letter = (FIXTURES / "letters" / "ldl-ses-2020-latin1.xml").read_bytes()
    assert "établissement".encode("iso-8859-1") in letter
    root = parse_letter(letter, max_bytes=LIMIT)
    assert text_of(child(root, "code")) is None
    assert child(root, "code").get("displayName") == (
        "Lettre de liaison à la sortie d'un établissement de soins")


def test_utf8_with_byte_order_mark_is_read() -> None:
    letter = b"\xef\xbb\xbf" + (FIXTURES / "letters" / "ldl-ses-v1.xml").read_bytes()
    root = parse_letter(letter, max_bytes=LIMIT)
    assert text_of(child(root, "title")) == "Lettre de liaison à la sortie"
