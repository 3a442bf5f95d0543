"""convert_letter: one CDA discharge letter → a FHIR R4 transaction Bundle and a report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from adapter.cda import datatypes as cda
from adapter.cda.datatypes import child
from adapter.cda.reader import parse_letter
from adapter.cda.recognition import recognize
from adapter.config import get_settings
from adapter.errors import RefusedLetter
from adapter.mapping import care, header, sections
from adapter.mapping.bundle import BundleBuilder
from adapter.mapping.context import Context
from adapter.mapping.directory_port import DirectoryLookup
from adapter.mapping.items import ItemKeys
from adapter.mapping.knowledge import knowledge
from adapter.mapping.report import Report
from adapter.mapping.summary import LetterSummary


@dataclass
class Conversion:
    bundle: dict[str, Any]  # FHIR R4 transaction Bundle
    report: dict[str, Any]  # OperationOutcome: what was not mapped, with XPath
    letter: LetterSummary


def _key(value: tuple[str, str]) -> str:
    root, extension = value
    return f"{root}^{extension}" if extension else root


def _required_ii(root: Any, name: str) -> tuple[str, str]:
    value = cda.ii(child(root, name))
    if value is None:
        raise RefusedLetter(f"The CDA document has no usable {name} (root OID).")
    return value


def _version(root: Any) -> int:
    element = child(root, "versionNumber")
    try:
        return int(element.get("value")) if element is not None else 1
    except (TypeError, ValueError):
        return 1


def convert_letter(xml: bytes, *, directory: DirectoryLookup | None = None,
                   validate: bool = False) -> Conversion:
    """Convert one letter; raises `RefusedLetter` (NotXml, LetterTooLarge…) saying why not."""
    root = parse_letter(xml, max_bytes=get_settings().max_letter_bytes)
    know = knowledge()
    recognition = recognize(root, know.documents)
    document_id = _required_ii(root, "id")
    set_id = cda.ii(child(root, "setId")) or document_id
    ctx = Context(
        root=root, knowledge=know, recognition=recognition,
        builder=BundleBuilder(know.identifiers["profiles"]), report=Report(),
        directory=directory, doc_key=_key(document_id), set_key=_key(set_id),
        version=_version(root), effective=cda.ts_of(child(root, "effectiveTime")),
        narrative=sections.narrative_index(root) if recognition.kind == "structured" else {},
        letter_sha1=hashlib.sha1(xml).digest(),
        item_keys=ItemKeys(know.liaison_system("entry"), _key(set_id)),
    )
    patient = header.map_patient(ctx)
    header.map_header_people(ctx)
    header.map_informants(ctx)
    header.map_encounter(ctx)
    header.report_unmapped_header(ctx)
    if recognition.kind == "structured":
        sections.map_sections(ctx)
    else:
        ctx.report.note("Non-structured letter (N1): header mapped, the document is attached.")
    header.finish_encounter(ctx)
    if ctx.pcp is not None:
        ctx.builder.resource(ctx.patient_url)["generalPractitioner"] = [
            {"reference": ctx.pcp.member_url}]
    document_url = care.map_document_reference(ctx, xml)
    care_team_url = care.map_care_team(ctx)
    care_plan_url = care.map_care_plan(ctx, care_team_url, document_url)
    care.map_communications(ctx, document_url, care_plan_url)
    care.map_provenance(ctx, document_url)
    _note_unknown_systems(ctx)
    bundle = ctx.builder.bundle(
        {"system": know.liaison_system("bundle"), "value": ctx.doc_key},
        cda.as_instant(ctx.effective) if ctx.effective else None)
    if validate:
        from adapter.fhir_validation import validate_bundle

        problems = validate_bundle(bundle)
        for problem in problems:
            ctx.report.warning(f"FHIR validation: {problem}", code="invalid")
    summary = _summary(ctx, document_id, set_id, patient, xml)
    return Conversion(bundle=bundle, report=ctx.report.outcome(), letter=summary)


# compiled once, evaluated by libxml2 (iterfind re-reads its path and filters in Python);
# each value is a "smart string" that knows its element
_CODE_SYSTEMS = etree.XPath("descendant::*/@codeSystem")


def _note_unknown_systems(ctx: Context) -> None:
    seen: set[str] = set()
    for oid in _CODE_SYSTEMS(ctx.root):
        if oid not in seen and not ctx.knowledge.known_system(oid):
            seen.add(oid)
            ctx.report.note(f"Code system {oid} has no URI in mappings/terminology.yaml: "
                            f"written as urn:oid:{oid}.", oid.getparent())


def _summary(ctx: Context, document_id: tuple[str, str], set_id: tuple[str, str],
             patient: dict[str, Any], xml: bytes) -> LetterSummary:
    def as_pair(value: tuple[str, str]) -> tuple[str, str]:
        identifier = cda.ii_to_identifier(*value)
        return identifier.get("system", ""), identifier["value"]

    def first_identifier(url: str | None) -> tuple[str, str] | None:
        identifiers = ctx.builder.resource(url).get("identifier") if url else None
        return (identifiers[0]["system"], identifiers[0]["value"]) if identifiers else None

    confidentiality = child(ctx.root, "confidentialityCode")
    return LetterSummary(
        document_id=as_pair(document_id), set_id=as_pair(set_id), version=ctx.version,
        kind=ctx.recognition.kind, model=ctx.recognition.model,
        patient_identifiers=patient["identifiers"], ins=patient["ins"],
        patient_postal_code=patient["postal_code"],
        confidentiality=(confidentiality.get("code") if confidentiality is not None else "N")
        or "N",
        effective_time=ctx.effective or "",
        author_idnat=ctx.author.idnat if ctx.author else None,
        custodian=first_identifier(ctx.custodian_url),
        discharge_destination=(ctx.discharge_disposition or {}).get("text"),
        stay_id=ctx.stay_id,
        transfer=care.is_transfer(ctx),
        author_organization=first_identifier(ctx.author.organization_url if ctx.author else None),
        recipient_idnats=[a.idnat for a in ctx.recipients if a.idnat],
        pcp_idnat=ctx.pcp.idnat if ctx.pcp else None,
        sha1=ctx.letter_sha1.hex(),
        document_key=ctx.doc_key,
        set_key=ctx.set_key,
    )
