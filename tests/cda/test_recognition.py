"""Document recognition: which CDA documents are discharge letters liaison takes."""

from __future__ import annotations

import pytest

from adapter.cda.reader import parse_letter
from adapter.cda.recognition import recognize
from adapter.errors import RefusedLetter
from adapter.mapping.knowledge import knowledge
from tests.support.paths import FIXTURES, LDL_EES_EXAMPLE, LDL_SES_EXAMPLE, N1_PDF_EXAMPLE

LETTERS = FIXTURES / "letters"


def recognition_of(xml: bytes):
    return recognize(parse_letter(xml, max_bytes=10**7), knowledge().documents)


def test_the_official_ldl_ses_2022_example_is_a_structured_discharge_letter() -> None:
    found = recognition_of(LDL_SES_EXAMPLE.read_bytes())
    assert (found.kind, found.model, found.sections) == (
        "structured", "LDL-SES 2022.01", "ldl-ses.yaml")


def test_ldl_ses_2020_is_recognised() -> None:
    assert recognition_of((LETTERS / "ldl-ses-2020-latin1.xml").read_bytes()).model == (
        "LDL-SES 2020.01")


def test_an_n1_letter_with_a_discharge_type_code_is_a_pdf_letter() -> None:
    found = recognition_of((LETTERS / "n1-pdf-discharge.xml").read_bytes())
    assert (found.kind, found.model) == ("pdf", "N1 discharge letter")


def test_the_official_n1_example_is_a_lab_report_and_is_refused() -> None:
    # Its type code is LOINC 11502-2 "CR d'examens biologiques": a lab report, not a letter.
    with pytest.raises(RefusedLetter, match="laboratory report"):
        recognition_of(N1_PDF_EXAMPLE.read_bytes())


def test_the_official_entry_letter_is_refused_as_an_entry_letter() -> None:
    with pytest.raises(RefusedLetter, match="entry letter"):
        recognition_of(LDL_EES_EXAMPLE.read_bytes())


@pytest.mark.parametrize(("fixture", "reason"), [
    ("lab-report.xml", "laboratory report"),
    ("entry-letter.xml", "entry letter"),
    ("no-record-target.xml", "no recordTarget"),
])
def test_other_documents_are_refused_with_a_sentence_saying_why(fixture: str, reason: str
                                                                ) -> None:
    with pytest.raises(RefusedLetter) as refused:
        recognition_of((LETTERS / "refused" / fixture).read_bytes())
    assert reason in refused.value.message
    assert refused.value.message.endswith(".")
    assert "\n" not in refused.value.message


def test_a_cda_of_another_namespace_root_is_refused() -> None:
    with pytest.raises(RefusedLetter, match="not a CDA R2"):
        recognition_of(b"<ClinicalDocument/>")


def test_a_structured_cda_without_the_ldl_ses_template_is_refused() -> None:
    letter = (LETTERS / "ldl-ses-v1.xml").read_bytes().replace(
        b'root="1.2.250.1.213.1.1.1.29" extension="2022.01"', b'root="1.2.3.4.5"')
    with pytest.raises(RefusedLetter, match="not an LDL-SES"):
        recognition_of(letter)
