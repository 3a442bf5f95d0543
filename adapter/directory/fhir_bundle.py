"""Importer of a FHIR R4 Bundle (searchset or collection) of Annuaire Santé resources:
Practitioner, PractitionerRole, Organization, HealthcareService.

The Bundle is one page of the Annuaire's FHIR API (or a saved collection of them), so an import
is partial: nothing absent from it is marked inactive. Entries are counted like lines; an entry
that cannot be used (no identifier, unknown type) is rejected with its position.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, BinaryIO

import orjson
from sqlalchemy.engine import Engine

from adapter.directory import codes
from adapter.directory.text import content_hash, fold
from adapter.directory.writer import (
    ImportSummary,
    ProgressCallback,
    Rejected,
    RejectionCallback,
    Upserter,
    finish_run,
    start_run,
)
from adapter.errors import BadRequest
from adapter.store.directory_tables import (
    MAILBOX_COLUMNS,
    ORGANIZATION_COLUMNS,
    PRACTITIONER_COLUMNS,
    ROLE_COLUMNS,
    DirectoryMailbox,
    DirectoryOrganization,
    DirectoryPractitioner,
    DirectoryRole,
)

KIND = "fhir"
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
BUNDLE_TYPES = {"searchset", "collection", "transaction", "batch"}
Resource = dict[str, Any]


def _systems() -> dict[str, str]:
    ids = codes.identifiers()
    return {**ids["professional"], **{f"org_{k}": v for k, v in ids["organization"].items()}}


def _identifiers(resource: Resource) -> dict[str, str]:
    found: dict[str, str] = {}
    for identifier in resource.get("identifier") or []:
        system, value = identifier.get("system"), identifier.get("value")
        if system and value:
            found.setdefault(codes.canonical_system(system), value)
    return found


def _codings(concepts: list[Resource]) -> list[Resource]:
    return [coding for concept in concepts for coding in concept.get("coding") or []]


def _profession_and_specialty(concepts: list[Resource]) -> tuple[Resource | None, Resource | None]:
    systems = codes.code_systems()
    specialty_systems = set(systems["specialty_by_type"].values())
    profession = specialty = None
    for coding in _codings(concepts):
        if coding.get("system") == systems["profession"] and profession is None:
            profession = coding
        elif coding.get("system") in specialty_systems and specialty is None:
            specialty = coding
    return profession, specialty


def _is_mailbox(contact: Resource) -> bool:
    mailbox = codes.code_systems()["mailbox"]
    for extension in contact.get("extension") or []:
        if extension.get("url") == mailbox["email_type_extension"]:
            return (extension.get("valueCoding") or {}).get("code") == mailbox["email_type_code"]
        if extension.get("url") == mailbox["metadata_extension"]:
            return True
    return False


def _mailbox_metadata(contact: Resource) -> dict[str, Any]:
    url = codes.code_systems()["mailbox"]["metadata_extension"]
    metadata: dict[str, Any] = {}
    for extension in contact.get("extension") or []:
        if extension.get("url") != url:
            continue
        for part in extension.get("extension") or []:
            name = part.get("url")
            if name == "type":
                coding = _codings([part.get("valueCodeableConcept") or {}])
                metadata["type"] = coding[0].get("code") if coding else None
            elif name == "service":
                metadata["service"] = part.get("valueString")
            elif name == "digitization":
                metadata["digitization"] = part.get("valueBoolean")
    return metadata


def _first_phone(contacts: list[Resource]) -> str | None:
    return next((c.get("value") for c in contacts if c.get("system") == "phone"), None)


def _first_plain_email(contacts: list[Resource]) -> str | None:
    return next(
        (c.get("value") for c in contacts if c.get("system") == "email" and not _is_mailbox(c)),
        None,
    )


class _BundleReader:
    def __init__(self, bundle: Resource) -> None:
        self.entries: list[Resource] = bundle.get("entry") or []
        self.by_reference: dict[str, Resource] = {}
        for entry in self.entries:
            resource = entry.get("resource") or {}
            kind, rid = resource.get("resourceType"), resource.get("id")
            if entry.get("fullUrl"):
                self.by_reference[entry["fullUrl"]] = resource
            if kind and rid:
                self.by_reference[f"{kind}/{rid}"] = resource
        self.people: dict[str, tuple[Any, ...]] = {}
        self.structures: dict[str, tuple[Any, ...]] = {}
        self.roles: dict[str, tuple[Any, ...]] = {}
        self.mailboxes: dict[str, tuple[Any, ...]] = {}

    def resolve(self, reference: Resource | None) -> Resource | None:
        if not reference:
            return None
        target = reference.get("reference")
        if target:
            found = self.by_reference.get(target)
            if found is None and "/" in target:
                found = self.by_reference.get("/".join(target.rsplit("/", 2)[-2:]))
            return found
        identifier = reference.get("identifier")
        return {"identifier": [identifier]} if identifier else None

    @staticmethod
    def practitioner_identity(resource: Resource) -> tuple[str, str, str | None] | None:
        systems = _systems()
        ids = _identifiers(resource)
        idnat, rpps, adeli = (
            ids.get(systems["idnat_ps"]),
            ids.get(systems["rpps"]),
            ids.get(systems["adeli"]),
        )
        if idnat:
            id_type = "RPPS" if idnat.startswith("8") else "ADELI"
            return idnat, id_type, idnat[1:] if id_type == "RPPS" else None
        if rpps:
            return "8" + rpps, "RPPS", rpps
        if adeli:
            return "0" + adeli, "ADELI", None
        return None

    @staticmethod
    def structure_identity(resource: Resource) -> tuple[str, str | None, str | None] | None:
        systems = _systems()
        ids = _identifiers(resource)
        finess, siret = ids.get(systems["org_finess"]), ids.get(systems["org_siret"])
        idnat = ids.get(systems["org_idnat_struct"])
        idnat = idnat or ("1" + finess if finess else ("3" + siret if siret else None))
        return (idnat, finess, siret) if idnat else None

    def add_mailboxes(
        self,
        contacts: list[Resource],
        *,
        person: tuple[Any, ...] | None,
        structure: str | None,
        structure_name: str | None = None,
        service: str | None = None,
    ) -> None:
        for contact in contacts:
            if (
                contact.get("system") != "email"
                or not contact.get("value")
                or not _is_mailbox(contact)
            ):
                continue
            metadata = _mailbox_metadata(contact)
            address = contact["value"]
            idnat = person[0] if person else None
            row = (
                f"{address.lower()}|{idnat or ''}|{structure or ''}",
                address,
                metadata.get("type") or ("PER" if person else "ORG"),
                idnat,
                structure,
                metadata.get("service") or service,
                metadata.get("digitization"),
                person[4] if person else None,
                person[5] if person else None,
                person[3] if person else None,
                person[8] if person else None,
                person[9] if person else None,
                structure_name,
                KIND,
            )
            self.mailboxes[row[0]] = (*row, content_hash(orjson.dumps(row)))

    def practitioner(self, resource: Resource) -> tuple[Any, ...]:
        identity = self.practitioner_identity(resource)
        if identity is None:
            raise Rejected("bad identifier", "Practitioner without idNat_PS, RPPS or ADELI")
        idnat, id_type, rpps = identity
        if idnat in self.people:
            return self.people[idnat]
        name = (resource.get("name") or [{}])[0]
        family, given = name.get("family"), " ".join(name.get("given") or []) or None
        profession, specialty = _profession_and_specialty(
            [q.get("code") or {} for q in resource.get("qualification") or []]
        )
        row: tuple[Any, ...] = (
            idnat,
            id_type,
            rpps,
            (name.get("prefix") or [None])[0],
            family,
            given,
            fold(family),
            fold(given),
            (profession or {}).get("code"),
            (profession or {}).get("display"),
            None,
            (specialty or {}).get("system"),
            (specialty or {}).get("code"),
            (specialty or {}).get("display"),
            KIND,
        )
        row = (*row, content_hash(orjson.dumps(row)))
        self.people[idnat] = row
        self.add_mailboxes(resource.get("telecom") or [], person=row, structure=None)
        return row

    def organization(self, resource: Resource) -> tuple[Any, ...]:
        identity = self.structure_identity(resource)
        if identity is None:
            raise Rejected(
                "bad identifier", "Organization without idNat_Struct, FINESS or SIRET"
            )
        idnat, finess, siret = identity
        if idnat in self.structures:
            return self.structures[idnat]
        address = (resource.get("address") or [{}])[0]
        contacts = resource.get("telecom") or []
        row: tuple[Any, ...] = (
            idnat,
            finess,
            siret,
            resource.get("name"),
            " ".join(address.get("line") or []) or None,
            address.get("postalCode"),
            address.get("city"),
            _first_phone(contacts),
            _first_plain_email(contacts),
            None,
            KIND,
        )
        row = (*row, content_hash(orjson.dumps(row)))
        self.structures[idnat] = row
        self.add_mailboxes(contacts, person=None, structure=idnat, structure_name=row[3])
        return row

    def practitioner_role(self, resource: Resource, position: int) -> None:
        target = self.resolve(resource.get("practitioner"))
        if target is None:
            raise Rejected("bad reference", "PractitionerRole.practitioner not in the Bundle")
        person = self.practitioner(target)
        organization = self.resolve(resource.get("organization"))
        structure = self.organization(organization) if organization else None
        profession, specialty = _profession_and_specialty(
            (resource.get("code") or []) + (resource.get("specialty") or [])
        )
        profession = profession or (
            {"code": person[8], "display": person[9]} if person[8] else None
        )
        contacts = resource.get("telecom") or []
        ids = resource.get("identifier") or [{}]
        key = f"{person[0]}|{KIND}|{ids[0].get('value') or resource.get('id') or position}"
        values = (
            person[0],
            KIND,
            (profession or {}).get("code"),
            (profession or {}).get("display"),
            (specialty or {}).get("system"),
            (specialty or {}).get("code"),
            (specialty or {}).get("display"),
            None,
            None,
            structure[0] if structure else None,
            structure[1] if structure else None,
            structure[2] if structure else None,
            structure[3] if structure else None,
            structure[4] if structure else None,
            structure[5] if structure else None,
            structure[6] if structure else None,
            _first_phone(contacts) or (structure[7] if structure else None),
            None,
            None,
            _first_plain_email(contacts),
            None,
            None,
            None,
            None,
        )
        self.roles[key] = (key, *values[:2], content_hash(orjson.dumps(values)), *values[2:])
        self.add_mailboxes(
            contacts,
            person=person,
            structure=structure[0] if structure else None,
            structure_name=structure[3] if structure else None,
        )

    def healthcare_service(self, resource: Resource) -> None:
        organization = self.resolve(resource.get("providedBy"))
        if organization is None:
            raise Rejected("bad reference", "HealthcareService.providedBy not in the Bundle")
        structure = self.organization(organization)
        self.add_mailboxes(
            resource.get("telecom") or [],
            person=None,
            structure=structure[0],
            structure_name=structure[3],
            service=resource.get("name"),
        )


def import_fhir_bundle(
    engine: Engine,
    stream: BinaryIO,
    source_name: str,
    *,
    on_reject: RejectionCallback | None = None,
    progress: ProgressCallback | None = None,
    full: bool = False,
) -> ImportSummary:
    """Import one Bundle; `full` is accepted for symmetry but a Bundle page never deactivates."""
    started = time.perf_counter()
    payload = stream.read(MAX_BUNDLE_BYTES + 1)
    if len(payload) > MAX_BUNDLE_BYTES:
        raise BadRequest(f"{source_name} is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        bundle = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"{source_name} is not JSON: {error}") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest(f"{source_name} is not a FHIR Bundle")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise BadRequest(f"{source_name}: Bundle.type {bundle.get('type')!r} is not a searchset")
    counts: dict[str, Counter[str]] = {
        name: Counter() for name in ("practitioners", "roles", "organizations", "mailboxes")
    }
    summary = ImportSummary(KIND, source_name, entities=counts)
    reader = _BundleReader(bundle)
    handlers = {
        "Practitioner": reader.practitioner,
        "Organization": reader.organization,
        "HealthcareService": reader.healthcare_service,
    }
    for position, entry in enumerate(reader.entries, start=1):
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType")
        if (entry.get("search") or {}).get("mode") == "outcome" or kind == "OperationOutcome":
            continue
        summary.read += 1
        try:
            if kind == "PractitionerRole":
                reader.practitioner_role(resource, position)
            elif kind in handlers:
                handlers[kind](resource)
            else:
                raise Rejected("unsupported resource", f"{kind!r} is not a directory resource")
        except Rejected as rejected:
            rejection = summary.reject(position, rejected.reason, rejected.detail)
            if on_reject:
                on_reject(rejection)
    summary.run_id = start_run(engine, KIND, source_name, full=False)
    tables = (
        (
            "practitioners",
            DirectoryPractitioner,
            PRACTITIONER_COLUMNS,
            "content_hash",
            reader.people,
        ),
        (
            "organizations",
            DirectoryOrganization,
            ORGANIZATION_COLUMNS,
            "content_hash",
            reader.structures,
        ),
        ("roles", DirectoryRole, ROLE_COLUMNS, "line_hash", reader.roles),
        ("mailboxes", DirectoryMailbox, MAILBOX_COLUMNS, "content_hash", reader.mailboxes),
    )
    with engine.begin() as connection:
        for name, model, columns, digest, rows in tables:
            outcome = Upserter(model, columns, digest, summary.run_id).apply(connection, rows)
            for field in ("inserted", "updated", "unchanged"):
                counts[name][field] += len(getattr(outcome, field))
                summary.count(field, len(getattr(outcome, field)))
    if progress:
        progress(len(payload))
    summary.seconds = time.perf_counter() - started
    finish_run(engine, summary)
    return summary
