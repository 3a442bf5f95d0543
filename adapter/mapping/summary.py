"""What other parts need to know about a letter without reading the bundle."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LetterSummary:
    document_id: tuple[str, str]  # (system, value) of ClinicalDocument/id
    set_id: tuple[str, str]
    version: int
    kind: str  # "structured" | "pdf"
    model: str  # e.g. "LDL-SES 2022.01"
    patient_identifiers: list[tuple[str, str]] = field(default_factory=list)
    ins: tuple[str, str] | None = None
    patient_postal_code: str | None = None
    confidentiality: str = "N"  # "N" | "R" | "V"
    effective_time: str = ""  # FHIR dateTime
    author_idnat: str | None = None
    custodian: tuple[str, str] | None = None
    # (system, value) of the first author's organisation, when the letter identifies it
    author_organization: tuple[str, str] | None = None
    discharge_destination: str | None = None  # where the patient went (the discharge mode)
    transfer: bool = False  # to another establishment, not home
    # the hospital's own number of the stay (encompassingEncounter/id as "urn:oid:root",
    # extension), which a discharge notice sent before the letter names too
    stay_id: tuple[str, str] | None = None
    # liaison's key of that stay once the letter is accepted for its hospital (`coordination.
    # stays`): a notice and the letter of one stay share it, and so their Encounter and review
    stay_key: str = ""
    recipient_idnats: list[str] = field(default_factory=list)
    pcp_idnat: str | None = None
    sha1: str = ""
    # The keys liaison builds identifiers and the Provenance tag from: "root^extension" (or the
    # root alone) of ClinicalDocument/id and setId, unique across hospitals (the extension alone
    # is often a per-hospital counter).
    document_key: str = ""
    set_key: str = ""
