"""Incoming CDA validation: CDA R2 schema + CI-SIS schematrons (compiled with the ISO skeleton,
run by Saxon)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from lxml import etree

from adapter.config import get_settings
from adapter.conformance import schematron
from adapter.conformance.cda_validation import cache_dir, unavailable_reason, validate_letter
from adapter.errors import LetterTooLarge, NotXml, ValidatorUnavailable
from tests.conformance.letters import (
    DISCHARGE_TREATMENTS,
    with_unknown_header_element,
    without_section,
)
from tests.support.paths import (
    CDA_EXAMPLES,
    FIXTURES,
    LDL_EES_EXAMPLE,
    LDL_SES_EXAMPLE,
    N1_PDF_EXAMPLE,
)


def test_official_ldl_ses_example_has_no_failed_assertion() -> None:
    report = validate_letter(LDL_SES_EXAMPLE.read_bytes())

    assert report.model == "LDL-SES 2022.01"
    assert report.errors == []
    assert report.ok
    assert "CI-SIS_LDL-SES_2022.01.sch" in report.artefacts
    assert "CDA_extended.xsd" in report.artefacts


def test_letter_without_discharge_treatments_is_reported_by_the_ldl_ses_schematron() -> None:
    report = validate_letter(without_section(DISCHARGE_TREATMENTS))

    assert not report.ok
    assert len(report.errors) == 1
    failure = report.errors[0]
    assert failure.source == "CI-SIS_LDL-SES_2022.01.sch"
    assert DISCHARGE_TREATMENTS in failure.message
    assert "obligatoire" in failure.message
    assert failure.location == "/cda:ClinicalDocument"


def test_each_mandatory_section_removed_gives_its_own_error() -> None:
    for template_id in ("1.3.6.1.4.1.19376.1.5.3.1.3.1", "1.3.6.1.4.1.19376.1.7.3.1.1.13.7"):
        report = validate_letter(without_section(template_id))
        assert any(template_id in failure.message for failure in report.errors), template_id


def test_schema_violation_is_reported_with_its_line_and_path() -> None:
    report = validate_letter(with_unknown_header_element())

    schema_errors = [f for f in report.errors if f.source == "CDA_extended.xsd"]
    assert schema_errors
    assert "notInCda" in schema_errors[0].message
    assert re.match(r"line \d+: /", schema_errors[0].location)


@pytest.mark.parametrize(
    ("example", "model"),
    [(LDL_EES_EXAMPLE, "LDL-EES 2022.01"), (N1_PDF_EXAMPLE, "CDA R2 CI-SIS")],
)
def test_other_official_examples_pass_the_schematrons_of_their_model(
    example: Path, model: str
) -> None:
    report = validate_letter(example.read_bytes())

    assert report.model == model
    assert report.errors == []


def test_non_xml_input_is_refused() -> None:
    with pytest.raises(NotXml):
        validate_letter(b"this is not a letter")


def test_document_with_a_dtd_is_refused_without_resolving_its_entities(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    letter = (
        f'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>'
    ).encode()

    with pytest.raises(NotXml) as refused:
        validate_letter(letter)
    assert "TOP-SECRET-VALUE" not in refused.value.message


def test_oversized_letter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIAISON_MAX_LETTER_BYTES", "1000")
    get_settings.cache_clear()

    with pytest.raises(LetterTooLarge):
        validate_letter(LDL_SES_EXAMPLE.read_bytes())


def test_missing_cisis_folder_makes_the_validator_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIAISON_CISIS_DIR", str(tmp_path / "nowhere"))
    get_settings.cache_clear()

    with pytest.raises(ValidatorUnavailable) as unavailable:
        validate_letter(LDL_SES_EXAMPLE.read_bytes())
    assert "LIAISON_CISIS_DIR" in unavailable.value.message


def test_compiled_stylesheets_are_cached_on_disk_and_reused_without_recompiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schematron, "_executables", {})  # compile for this data dir's cache
    validate_letter(LDL_SES_EXAMPLE.read_bytes())
    cached = sorted(cache_dir().glob("*.xsl"))
    assert any(path.name.startswith("CI-SIS_LDL-SES_2022.01-") for path in cached)

    def must_not_compile(sch: Path) -> str:
        raise AssertionError(f"recompiled {sch.name} although it is cached")

    monkeypatch.setattr(schematron, "_executables", {})  # as in a new process
    monkeypatch.setattr(schematron, "generate_stylesheet", must_not_compile)
    report = validate_letter(without_section(DISCHARGE_TREATMENTS))
    assert len(report.errors) == 1


def _write_schematron(folder: Path, allowed: str) -> Path:
    """A tiny CI-SIS-like schematron: XSLT 2 binding, an XPath 2 test and a value set opened by a
    relative path at run time (the two things the compilation has to get right)."""
    (folder / "schematrons").mkdir(parents=True, exist_ok=True)
    (folder / "jeuxDeValeurs").mkdir(exist_ok=True)
    (folder / "jeuxDeValeurs" / "JDV_Test.xml").write_text(
        f'<valueSet><concept code="{allowed}"/></valueSet>'
    )
    sch = folder / "schematrons" / "test.sch"
    sch.write_text(
        """<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">
  <ns prefix="cda" uri="urn:hl7-org:v3"/>
  <pattern id="p">
    <let name="jdv" value="'../jeuxDeValeurs/JDV_Test.xml'"/>
    <rule context="cda:ClinicalDocument/cda:code">
      <assert test="matches(@code, '^[0-9]+-[0-9]$')">code is not LOINC-shaped</assert>
      <assert test="@code = document($jdv)//concept/@code">code not in the value set</assert>
    </rule>
  </pattern>
</schema>"""
    )
    return sch


def test_schematron_runs_xpath2_tests_and_reads_value_sets_relative_to_itself(
    tmp_path: Path,
) -> None:
    sch = _write_schematron(tmp_path / "cisis", allowed="11490-0")
    executable = schematron.compiled(sch, tmp_path / "cache")
    letter = schematron.parse_for_saxon(LDL_SES_EXAMPLE.read_text(encoding="utf-8"))

    assert schematron.run(executable, letter) == []

    bad = LDL_SES_EXAMPLE.read_text(encoding="utf-8").replace('code="11490-0"', 'code="X11490"')
    messages = [a.message for a in schematron.run(executable, schematron.parse_for_saxon(bad))]
    assert messages == ["code is not LOINC-shaped", "code not in the value set"]


def test_changed_schematron_source_is_recompiled(tmp_path: Path) -> None:
    folder = tmp_path / "cisis"
    letter = schematron.parse_for_saxon(LDL_SES_EXAMPLE.read_text(encoding="utf-8"))
    sch = _write_schematron(folder, allowed="11490-0")
    assert schematron.run(schematron.compiled(sch, tmp_path / "cache"), letter) == []

    sch.write_text(sch.read_text().replace("^[0-9]+-[0-9]$", "^Z"))
    schematron._keys.pop(sch.resolve(), None)  # keys are computed once per process
    failures = schematron.run(schematron.compiled(sch, tmp_path / "cache"), letter)
    assert [a.message for a in failures] == ["code is not LOINC-shaped"]
    assert len(list((tmp_path / "cache").glob("test-*.xsl"))) == 2


def test_applied_schematrons_follow_the_oxygen_lines_of_the_official_examples() -> None:
    rules = yaml.safe_load(
        (get_settings().conformance_dir / "cda" / "schematrons.yaml").read_text(encoding="utf-8")
    )
    not_applied = {item["path"] for item in rules["not_applied"]}
    for document in [*rules["documents"], rules["default"]]:
        text = (CDA_EXAMPLES / document["example"]).read_text(encoding="utf-8")
        declared = {
            str(Path("schematrons") / href.removeprefix("../schematrons/"))
            for href in re.findall(r'<\?oxygen SCHSchema="([^"]+)"\?>', text)
        }
        applied = set(document["schematrons"])
        assert applied <= declared, document["example"]
        assert declared - applied <= not_applied, document["example"]


def test_skipping_patterns_whose_templates_are_absent_changes_no_verdict() -> None:
    """The optimisation that skips patterns for templateIds a letter lacks gives the same
    failed assertions as the plain skeleton output, on letters that do fail."""
    sch = get_settings().cisis_dir / "schematrons" / "profils" / "IHE.sch"
    saxon = schematron._saxon()
    plain = saxon.new_xslt30_processor().compile_stylesheet(
        stylesheet_text=schematron.generate_stylesheet(sch, optimize=False)
    )
    optimized_text = schematron.generate_stylesheet(sch)
    assert optimized_text.count("$liaison-template-roots = (") > 100
    optimized = saxon.new_xslt30_processor().compile_stylesheet(stylesheet_text=optimized_text)
    letters = [
        LDL_SES_EXAMPLE.read_bytes(),
        without_section("1.3.6.1.4.1.19376.1.5.3.1.3.13"),  # allergies
        (FIXTURES / "letters" / "ldl-ses-no-plan.xml").read_bytes(),
    ]
    failing = 0
    for letter in letters:
        document = schematron.parse_for_saxon(
            etree.tostring(etree.fromstring(letter), encoding="unicode")
        )
        expected = schematron.run(plain, document)
        assert schematron.run(optimized, document) == expected
        failing += bool(expected)
    assert failing >= 1  # the comparison covered actual failures, not only clean runs


@pytest.mark.parametrize(
    ("match", "root"),
    [
        ('*[cda:templateId/@root="1.2.3"]', "1.2.3"),
        ("cda:entry/cda:act[cda:templateId/@root = '1.2.3']/cda:code", "1.2.3"),
        ('*[not(cda:templateId/@root="1.2.3")]', None),
        ('*[cda:templateId/@root="1.2.3" or cda:code/@code="x"]', None),
        ('*[count(cda:x[cda:templateId/@root="1.2.3"]) = 0]', None),
        ("cda:ClinicalDocument", None),
    ],
)
def test_only_predicates_that_require_a_template_make_a_pattern_skippable(
    match: str, root: str | None
) -> None:
    assert schematron._required_root(match) == root


def test_concurrent_validations_from_worker_threads_keep_their_own_verdicts() -> None:
    from concurrent.futures import ThreadPoolExecutor

    good, bad = LDL_SES_EXAMPLE.read_bytes(), without_section(DISCHARGE_TREATMENTS)

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda i: len(validate_letter(bad if i % 2 else good).errors),
                               range(12)))

    assert counts == [0, 1] * 6


def test_unavailable_reason_names_the_missing_artefacts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert unavailable_reason() is None

    monkeypatch.setenv("LIAISON_CISIS_DIR", str(tmp_path))
    get_settings.cache_clear()

    reason = unavailable_reason()
    assert reason is not None and str(tmp_path) in reason
