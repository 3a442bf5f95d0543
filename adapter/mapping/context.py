"""What one conversion carries from step to step: the letter, the bundle being built, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from adapter.cda.recognition import Recognition
from adapter.mapping.bundle import BundleBuilder
from adapter.mapping.directory_port import DirectoryLookup
from adapter.mapping.items import ItemKeys
from adapter.mapping.knowledge import Knowledge
from adapter.mapping.report import Report


@dataclass
class Actor:
    """A professional (or an organisation alone) met in the letter header."""

    member_url: str  # PractitionerRole, or Organization when no person is named
    display: str | None
    idnat: str | None = None
    practitioner_url: str | None = None
    organization_url: str | None = None
    roles: list[str] = field(default_factory=list)  # careteam role keys
    profession: dict[str, Any] | None = None
    key: str = ""  # identifier value the actor is known by in this letter


@dataclass
class Context:
    root: etree._Element
    knowledge: Knowledge
    recognition: Recognition
    builder: BundleBuilder
    report: Report
    directory: DirectoryLookup | None
    doc_key: str
    set_key: str
    version: int
    effective: str | None
    narrative: dict[str, str]
    patient_url: str = ""
    patient_display: str = ""
    encounter_url: str | None = None
    stay_id: tuple[str, str] | None = None  # the hospital's stay number (system, value)
    custodian_url: str | None = None
    author: Actor | None = None
    pcp: Actor | None = None
    recipients: list[Actor] = field(default_factory=list)
    members: dict[str, Actor] = field(default_factory=dict)  # member_url → actor
    activities: list[str] = field(default_factory=list)
    supporting: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    description: str | None = None
    admit_source: dict[str, Any] | None = None
    discharge_disposition: dict[str, Any] | None = None
    doc_status: str | None = None
    signed: str | None = None  # when the legal authenticator signed the letter
    letter_sha1: bytes = b""  # SHA-1 of the raw CDA bytes (attachment hash and summary)
    item_keys: ItemKeys = field(default_factory=lambda: ItemKeys("", ""))

    @property
    def section_rules(self) -> dict[str, Any]:
        """The section model of the letter's kind (`mappings/sections-*.yaml`; none: N1)."""
        name = self.recognition.sections
        return self.knowledge.section_models.get(name, {}) if name else {}

    def uris(self, oid: str) -> str:
        return self.knowledge.system_uri(oid)

    def ref(self, url: str | None, display: str | None = None) -> dict[str, str] | None:
        if url is None:
            return None
        reference = {"reference": url}
        if display:
            reference["display"] = display
        return reference

    def join(self, actor: Actor, role: str) -> Actor:
        """Record `actor` as a care-team member with `role` (merging repeated appearances)."""
        known = self.members.setdefault(actor.member_url, actor)
        if role not in known.roles:
            known.roles.append(role)
        return known
