"""Validate an incoming CDA letter: CDA R2 schema (XSD) + the CI-SIS schematrons for its model.

`validate_letter(xml)` is what the ingestion API calls in `report` / `strict` mode and what
`liaison validate` prints. Which schematrons apply to which document model is data:
`conformance/cda/schematrons.yaml`.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from adapter.config import get_settings
from adapter.conformance import schematron
from adapter.errors import LetterTooLarge, NotXml, ValidatorUnavailable

CDA_NS = "urn:hl7-org:v3"
_xsd_lock = threading.Lock()


@dataclass(frozen=True)
class Failure:
    """One problem found in a letter, with where it is and which artefact says so."""

    source: str  # "CDA_extended.xsd" or a schematron file name
    location: str  # XPath (schematron) or "line N: path" (schema)
    message: str
    severity: str = "error"  # "error" | "warning" | "info"
    test: str = ""

    def line(self) -> str:
        return f"[{self.severity}] {self.source} at {self.location}: {self.message}"


@dataclass
class ValidationReport:
    model: str
    artefacts: list[str] = field(default_factory=list)
    errors: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "artefacts": self.artefacts,
            "ok": self.ok,
            "errors": [asdict(failure) for failure in self.errors],
            "warnings": [asdict(failure) for failure in self.warnings],
        }

    def operation_outcome(self) -> dict[str, Any]:
        """FHIR OperationOutcome listing every finding (an `information` issue when clean)."""
        issues = [_issue(failure) for failure in [*self.errors, *self.warnings]]
        if not issues:
            issues = [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"valid {self.model} ({', '.join(self.artefacts)})",
                }
            ]
        return {"resourceType": "OperationOutcome", "issue": issues}


def _issue(failure: Failure) -> dict[str, Any]:
    severity = "information" if failure.severity == "info" else failure.severity
    code = "structure" if failure.source.endswith(".xsd") else "invariant"
    return {
        "severity": severity,
        "code": code,
        "diagnostics": f"{failure.source}: {failure.message}",
        "location": [failure.location],
    }


@dataclass(frozen=True)
class _Rules:
    schema: str
    documents: dict[str, tuple[str, tuple[str, ...]]]  # templateId → (model, schematrons)
    default: tuple[str, tuple[str, ...]]


@lru_cache(maxsize=4)
def _rules(conformance_dir: Path) -> _Rules:
    path = conformance_dir / "cda" / "schematrons.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    documents = {
        entry["templateId"]: (entry["model"], tuple(entry["schematrons"]))
        for entry in data["documents"]
    }
    default = (data["default"]["model"], tuple(data["default"]["schematrons"]))
    return _Rules(schema=data["schema"], documents=documents, default=default)


@lru_cache(maxsize=4)
def _schema(xsd: Path) -> etree.XMLSchema:
    if not xsd.is_file():
        raise ValidatorUnavailable(f"CDA schema not found at {xsd} (set LIAISON_CISIS_DIR)")
    return etree.XMLSchema(etree.parse(str(xsd), _parser()))


def _parser() -> etree.XMLParser:
    # no entities, no DTD, no network: a letter is data, never instructions to fetch anything
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False
    )


def parse_letter(xml: bytes) -> etree._ElementTree:
    """Parse safely; refuse oversize input, non-XML and documents declaring a DTD."""
    limit = get_settings().max_letter_bytes
    if len(xml) > limit:
        raise LetterTooLarge(f"the letter is {len(xml)} bytes, more than the {limit} accepted")
    try:
        tree = etree.ElementTree(etree.fromstring(xml, _parser()))
    except etree.XMLSyntaxError as error:
        raise NotXml(f"the letter is not well-formed XML: {error}") from error
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise NotXml("the letter declares a DTD, which liaison does not accept")
    return tree


def select(tree: etree._ElementTree) -> tuple[str, tuple[str, ...]]:
    """The model and schematrons that apply to a document, by its ClinicalDocument templateIds."""
    rules = _rules(get_settings().conformance_dir)
    root = tree.getroot()
    for template in root.findall(f"{{{CDA_NS}}}templateId"):
        if template.get("root") in rules.documents:
            return rules.documents[template.get("root")]
    return rules.default


def _schema_failures(tree: etree._ElementTree, xsd: Path) -> list[Failure]:
    schema = _schema(xsd)
    with _xsd_lock:  # an XMLSchema's error log is per object, not per call
        schema.validate(tree)
        return [
            Failure(
                source=xsd.name,
                location=f"line {error.line}: {error.path}",
                message=error.message,
            )
            for error in schema.error_log
        ]


def _schematron_failures(
    tree: etree._ElementTree, schematrons: tuple[str, ...], cisis_dir: Path, cache_dir: Path
) -> list[Failure]:
    document = schematron.parse_for_saxon(etree.tostring(tree, encoding="unicode"))
    failures: list[Failure] = []
    for relative in schematrons:
        sch = cisis_dir / relative
        if not sch.is_file():
            raise ValidatorUnavailable(f"schematron not found: {sch} (set LIAISON_CISIS_DIR)")
        try:
            executable = schematron.compiled(sch, cache_dir)
        except schematron.SchematronError as error:
            raise ValidatorUnavailable(str(error)) from error
        failures.extend(
            Failure(
                source=sch.name,
                location=finding.location,
                message=finding.message,
                severity=finding.role if finding.role in ("warning", "info") else "error",
                test=finding.test,
            )
            for finding in schematron.run(executable, document)
        )
    return failures


def validate_letter(xml: bytes) -> ValidationReport:
    """Check a CDA letter against the CDA R2 schema and the CI-SIS schematrons of its model.

    Raises NotXml / LetterTooLarge for input that cannot be checked at all, and
    ValidatorUnavailable when the CI-SIS artefacts are missing.
    """
    settings = get_settings()
    tree = parse_letter(xml)
    rules = _rules(settings.conformance_dir)
    model, schematrons = select(tree)
    cisis_dir = settings.cisis_dir.resolve()
    xsd = cisis_dir / rules.schema
    artefacts = [xsd.name, *(Path(relative).name for relative in schematrons)]
    report = ValidationReport(model=model, artefacts=artefacts)
    failures = _schema_failures(tree, xsd)
    failures += _schematron_failures(tree, schematrons, cisis_dir, cache_dir())
    report.errors = [failure for failure in failures if failure.severity == "error"]
    report.warnings = [failure for failure in failures if failure.severity != "error"]
    return report


def unavailable_reason() -> str | None:
    """Why letters cannot be validated here (missing CI-SIS artefacts), or None if they can."""
    settings = get_settings()
    rules = _rules(settings.conformance_dir)
    cisis_dir = settings.cisis_dir.resolve()
    needed = [rules.schema, *rules.default[1]]
    needed += [s for _, group in rules.documents.values() for s in group]
    missing = sorted({relative for relative in needed if not (cisis_dir / relative).is_file()})
    if missing:
        return f"{len(missing)} CI-SIS artefact(s) missing in {cisis_dir}, e.g. {missing[0]}"
    return None


def cache_dir() -> Path:
    """Where generated schematron stylesheets are kept between runs."""
    return get_settings().data_dir / "cache" / "schematrons"

