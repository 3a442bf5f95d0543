"""The search parameters the record implements, per resource type, and where their values sit.

Paths are dotted element paths over the JSON (lists are walked); a choice element lists each
variant (`occurrenceDateTime`, `occurrencePeriod`). The same table drives indexing on write,
parsing on search and the CapabilityStatement, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fhir.resources.R4B import get_fhir_model_class

FHIR_VERSION = "4.0.1"


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # token | reference | date | string
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference: allowed target types ((): any)
    definition: str | None = None

    @property
    def single_target(self) -> str | None:
        return self.targets[0] if len(self.targets) == 1 else None


def token(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "token", paths or (name,))


def ref(name: str, path: str | tuple[str, ...], *targets: str) -> SearchParam:
    paths = (path,) if isinstance(path, str) else path
    return SearchParam(name, "reference", paths, targets)


def date(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "date", paths or (name,))


def string(name: str, *paths: str) -> SearchParam:
    return SearchParam(name, "string", paths or (name,))


_PATIENT = "Patient"
_WHO = ("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson")


def _subject_pair(*targets: str) -> list[SearchParam]:
    """`subject` (any of `targets`) and `patient` (the Patient subset) on the same element."""
    return [ref("subject", "subject", *targets), ref("patient", "subject", _PATIENT)]


_CORE: dict[str, list[SearchParam]] = {
    "Patient": [
        string("name", "name"),
        string("family", "name.family"),
        string("given", "name.given"),
        token("gender"),
        date("birthdate", "birthDate"),
        token("active"),
        ref("general-practitioner", "generalPractitioner", *_WHO[:3]),
        ref("organization", "managingOrganization", "Organization"),
        string("address-postalcode", "address.postalCode"),
    ],
    "CarePlan": [
        *_subject_pair("Patient", "Group"),
        token("status"),
        token("intent"),
        token("category"),
        date("date", "period"),
        ref("care-team", "careTeam", "CareTeam"),
        ref("encounter", "encounter", "Encounter"),
        ref("based-on", "basedOn", "CarePlan"),
        ref("replaces", "replaces", "CarePlan"),
        ref("supporting-info", "supportingInfo"),
    ],
    "CareTeam": [
        *_subject_pair("Patient", "Group"),
        token("status"),
        token("category"),
        date("date", "period"),
        ref("participant", "participant.member", *_WHO, "CareTeam"),
        ref("encounter", "encounter", "Encounter"),
        ref("managing-organization", "managingOrganization", "Organization"),
        string("name", "name"),
    ],
    "Communication": [
        *_subject_pair("Patient", "Group"),
        token("status"),
        token("category"),
        ref("recipient", "recipient", *_WHO, "CareTeam", "Group", "HealthcareService"),
        ref("sender", "sender", *_WHO, "HealthcareService"),
        date("sent"),
        date("received"),
        ref("encounter", "encounter", "Encounter"),
        ref("based-on", "basedOn"),
        ref("part-of", "partOf"),
    ],
    "CommunicationRequest": [
        *_subject_pair("Patient", "Group"),
        token("status"),
        token("category"),
        token("priority"),
        ref("recipient", "recipient", *_WHO, "CareTeam", "Group", "HealthcareService"),
        ref("sender", "sender", *_WHO, "HealthcareService"),
        ref("requester", "requester", *_WHO),
        date("authored", "authoredOn"),
        ref("encounter", "encounter", "Encounter"),
    ],
    "DocumentReference": [
        *_subject_pair("Patient", "Group", "Practitioner"),
        token("status"),
        token("category"),
        token("type"),
        date("date"),
        date("period", "context.period"),
        ref("author", "author", *_WHO),
        ref("custodian", "custodian", "Organization"),
        ref("encounter", "context.encounter", "Encounter"),
        ref("relatesto", "relatesTo.target", "DocumentReference"),
        token("contenttype", "content.attachment.contentType"),
    ],
    "Practitioner": [
        string("name", "name"),
        string("family", "name.family"),
        string("given", "name.given"),
        token("active"),
        string("address-postalcode", "address.postalCode"),
    ],
    "PractitionerRole": [
        ref("practitioner", "practitioner", "Practitioner"),
        ref("organization", "organization", "Organization"),
        token("role", "code"),
        token("specialty"),
        token("active"),
        ref("service", "healthcareService", "HealthcareService"),
        ref("location", "location", "Location"),
    ],
    "Organization": [
        string("name", "name", "alias"),
        token("active"),
        token("type"),
        ref("partof", "partOf", "Organization"),
        string("address-postalcode", "address.postalCode"),
    ],
    "Encounter": [
        *_subject_pair("Patient", "Group"),
        token("status"),
        token("class"),
        token("type"),
        date("date", "period"),
        ref("service-provider", "serviceProvider", "Organization"),
        ref("participant", "participant.individual", "Practitioner", "PractitionerRole"),
    ],
    "MedicationRequest": [
        *_subject_pair("Patient", "Group"),
        token("status"),
        token("intent"),
        token("category"),
        token("code", "medicationCodeableConcept"),
        date("authoredon", "authoredOn"),
        ref("encounter", "encounter", "Encounter"),
        ref("requester", "requester", *_WHO),
    ],
    "ServiceRequest": [
        *_subject_pair("Patient", "Group", "Location", "Device"),
        token("status"),
        token("intent"),
        token("category"),
        token("code"),
        date("authored", "authoredOn"),
        date("occurrence", "occurrenceDateTime", "occurrencePeriod"),
        ref("encounter", "encounter", "Encounter"),
        ref("requester", "requester", *_WHO),
        ref("performer", "performer", *_WHO, "CareTeam", "HealthcareService"),
    ],
    "RelatedPerson": [
        ref("patient", "patient", _PATIENT),
        string("name", "name"),
        token("relationship"),
        token("active"),
    ],
    "Provenance": [
        ref("target", "target"),
        ref("patient", "target", _PATIENT),
        ref("agent", "agent.who", *_WHO),
        ref("entity", "entity.what"),
        date("recorded"),
    ],
    "AllergyIntolerance": [
        ref("patient", "patient", _PATIENT),
        token("clinical-status", "clinicalStatus"),
        token("code"),
        date("date", "recordedDate"),
    ],
    "Consent": [
        ref("patient", "patient", _PATIENT),
        token("status"),
        token("category"),
        date("date", "dateTime"),
        ref("organization", "organization", "Organization"),
    ],
    "Subscription": [
        token("status"),
        token("type", "channel.type"),
        string("criteria"),
    ],
    "HealthcareService": [
        ref("organization", "providedBy", "Organization"),
        string("name", "name"),
        token("active"),
        token("service-type", "type"),
        token("specialty"),
        ref("location", "location", "Location"),
    ],
    "Group": [
        ref("member", "member.entity", "Patient", "Practitioner", "PractitionerRole"),
        token("type"),
        token("code"),
    ],
    "Location": [string("name", "name"), ref("organization", "managingOrganization")],
    "Endpoint": [ref("organization", "managingOrganization", "Organization"), token("status")],
    "Condition": [*_subject_pair("Patient", "Group"), token("code"), token("category")],
    "Observation": [
        *_subject_pair("Patient", "Group"),
        token("code"),
        token("status"),
        token("category"),
        date("date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    ],
    "Task": [
        ref("patient", "for", _PATIENT),
        token("status"),
        token("code"),
        ref("owner", "owner", *_WHO, "CareTeam", "HealthcareService"),
        ref("focus", "focus"),
    ],
    "Goal": [ref("patient", "subject", _PATIENT), token("lifecycle-status", "lifecycleStatus")],
    "List": [*_subject_pair("Patient", "Group"), token("status"), token("code")],
    "Appointment": [
        ref("patient", "participant.actor", _PATIENT),
        ref("actor", "participant.actor"),
        token("status"),
        date("date", "start"),
    ],
    "Device": [ref("patient", "patient", _PATIENT), token("status"), token("type")],
    "DeviceUseStatement": [*_subject_pair("Patient", "Group")],
    "Binary": [],
}

# R4B resources that do not exist in R4 4.0.1 (what we speak on the wire), and non-storables.
_NOT_R4 = frozenset({
    "AdministrableProductDefinition", "Citation", "ClinicalUseDefinition", "EvidenceReport",
    "Ingredient", "ManufacturedItemDefinition", "MedicinalProductDefinition", "NutritionProduct",
    "PackagedProductDefinition", "RegulatedAuthorization", "SubscriptionStatus",
    "SubscriptionTopic", "SubstanceDefinition", "DomainResource", "OperationOutcome", "Bundle",
    "Parameters",
})

# Every type also has these; `identifier` only where the resource has the element.
_COMMON = [token("_tag", "meta.tag"), token("_security", "meta.security"),
           token("_profile", "meta.profile")]

# Types with no patient compartment that any authenticated reader may see (directory data).
PUBLIC_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Organization", "HealthcareService", "Location",
     "Endpoint"}
)

# How a resource finds its patient: a direct Patient reference at one of these paths, else the
# compartment of the resource referenced at a `via` path (Provenance targets, Binary context).
COMPARTMENT_PATHS: dict[str, tuple[str, ...]] = {
    "Patient": (),
    "RelatedPerson": ("patient",),
    "AllergyIntolerance": ("patient",),
    "Consent": ("patient",),
    "Task": ("for",),
    "Provenance": ("target",),
    "Appointment": ("participant.actor",),
    "Device": ("patient",),
}
COMPARTMENT_VIA: dict[str, tuple[str, ...]] = {
    "Provenance": ("target",),
    "Binary": ("securityContext",),
    "Group": (),
}
# Generic types: the usual places of the patient (a type with none is readable by system only).
_DEFAULT_COMPARTMENT = ("subject", "patient", "for", "beneficiary", "participant.actor")
_EXPLICIT_COMPARTMENT = ("subject",)

# Parameters handled by the search engine itself rather than an index table.
RESULT_PARAMETERS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_total", "_format", "_pretty",
     "_cursor", "_elements"}
)
SPECIAL_PARAMETERS = {"_id": "token", "_lastUpdated": "date"}


def explicit_types() -> list[str]:
    """Types with their own search parameters (beyond the common ones)."""
    return sorted(_CORE)


@cache
def supported_types() -> list[str]:
    """Every R4 resource type the record stores (enumerating the models takes a few seconds)."""
    from fhir.resources.R4B import fhirtypes

    names = {attr[:-4] for attr in dir(fhirtypes) if attr.endswith("Type")}
    return sorted(name for name in names if is_supported(name))


@cache
def is_supported(resource_type: str) -> bool:
    if resource_type in _CORE:
        return True
    if resource_type in _NOT_R4 or not resource_type[:1].isupper():
        return False
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return False
    from fhir.resources.R4B.domainresource import DomainResource

    return isinstance(model, type) and issubclass(model, DomainResource)


@cache
def _has_element(resource_type: str, element: str) -> bool:
    try:
        return element in get_fhir_model_class(resource_type).model_fields
    except (KeyError, ValueError):
        return False


@cache
def params_for(resource_type: str) -> dict[str, SearchParam]:
    """name → SearchParam for a supported type (index-backed parameters only)."""
    params = {p.name: p for p in _COMMON}
    if _has_element(resource_type, "identifier"):
        params["identifier"] = token("identifier")
    params.update({p.name: p for p in _CORE.get(resource_type, [])})
    return params


def compartment_paths(resource_type: str) -> tuple[str, ...]:
    if resource_type in COMPARTMENT_PATHS:
        return COMPARTMENT_PATHS[resource_type]
    return _EXPLICIT_COMPARTMENT if resource_type in _CORE else _DEFAULT_COMPARTMENT
