"""A discharge announced before the letter: what the hospital said, and the bundle it becomes.

A notice (FHIR Encounter or HL7 v2 ADT, read by `adapter.ingest.notices`) names the patient by
INS, the hospital, the hospital's number of the stay and what happened: a discharge planned
(with its expected date), done, or cancelled. Its bundle holds the Patient and the hospital
(created if absent), the stay's Encounter keyed by the stay (`stays.stay_identifier`, so the
letter of the same stay updates the same Encounter) and the stay's early CareTeam with the
médecin traitant the hospital named. Coordination then adds the territory's coordinator and
the carers the record already knows (`enrichment.enrich`), and `tell` words every
Communication for what the notice says: the care team hears "sortie prévue le …" before the
patient leaves, and hears it again when the date changes or the discharge is cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from adapter.config import get_settings
from adapter.coordination.bundle_tools import IDNAT_PS, BundleView
from adapter.coordination.french_dates import french_moment
from adapter.coordination.resources import communication, ensure_practitioner
from adapter.coordination.rules import CoordinationRules
from adapter.coordination.stays import stay_identifier
from adapter.mapping.engine import Conversion
from adapter.mapping.identity import create_if_absent, full_url, identifier_query
from adapter.mapping.knowledge import knowledge
from adapter.mapping.summary import LetterSummary
from adapter.mapping_files import load_mapping_file
from adapter.national_ids import national_system

EVENTS = ("planned", "discharged", "planned-cancelled", "discharge-cancelled")
KIND = "notice"  # LetterSummary.kind of a notice: no letter, no SOR event, a review once ended


@dataclass(frozen=True)
class GeneralPractitioner:
    idnat: str
    family: str | None = None
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class DischargeNotice:
    event: str  # one of EVENTS
    hospital: str  # idNat_Struct of the hospital that sends it
    stay: tuple[str, str]  # the hospital's number of the stay (system, value)
    ins: tuple[str, str]  # the patient's INS (system, value)
    message_id: str  # the hospital's id of this notice (MSH-10), for a repeat to be one notice
    sent_at: str  # FHIR dateTime
    other_identifiers: tuple[tuple[str, str], ...] = ()  # the hospital's IPP…
    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None  # FHIR date
    gender: str | None = None  # FHIR administrative gender
    address: dict[str, Any] = field(default_factory=dict)  # FHIR Address
    planned_date: str | None = None  # FHIR date: when the discharge is expected
    discharged_at: str | None = None  # FHIR dateTime: when the patient left
    destination: str | None = None  # where the patient goes, in words
    destination_code: dict[str, str] | None = None  # the same as a Coding, when known
    transfer: bool = False  # to another establishment, not home
    service: str | None = None  # the hospital's unit
    hospital_name: str | None = None
    gp: GeneralPractitioner | None = None

    @property
    def ended(self) -> bool:
        return self.event == "discharged"

    @property
    def day(self) -> str:
        """The day the notice is about (planned or actual discharge): what makes it new."""
        return (self.discharged_at or self.planned_date or "")[:10]


@cache
def _rules(folder: Path) -> dict[str, Any]:
    return load_mapping_file(folder / "notices.yaml") or {}


def notice_rules() -> dict[str, Any]:
    """`mappings/notices.yaml`: events, extension, dispositions, the texts people read."""
    return _rules(get_settings().mappings_dir)


def notice_conversion(notice: DischargeNotice, coordination: CoordinationRules) -> Conversion:
    """The notice's bundle (before coordination) and its summary for `enrich`."""
    rules = notice_rules()
    stay = stay_identifier(notice.hospital, notice.stay)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    view = BundleView(bundle)
    patient_url = _patient(view, notice)
    hospital_url = _hospital(view, notice)
    encounter_url = _encounter(view, notice, stay, patient_url, hospital_url, rules)
    key = f"{stay['value']}#{notice.event}#{notice.day}"
    summary = LetterSummary(
        document_id=(rules["notice_identifier_system"], key),
        set_id=(stay["system"], stay["value"]), version=1, kind=KIND,
        model="discharge notice", patient_identifiers=[notice.ins],
        ins=notice.ins, patient_postal_code=notice.address.get("postalCode"),
        effective_time=notice.sent_at, custodian=(_STRUCT, notice.hospital),
        discharge_destination=notice.destination, transfer=notice.transfer,
        pcp_idnat=notice.gp.idnat if notice.gp else None, document_key=f"notice/{key}",
        set_key=stay["value"], stay_id=notice.stay, stay_key=stay["value"])
    gp = _care_team(view, notice, stay, patient_url, encounter_url, hospital_url)
    if gp is not None and notice.gp is not None:  # the others are told by coordination
        communication(view, coordination, letter=summary, recipient_url=gp,
                      recipient_key=notice.gp.idnat, reason="")
    return Conversion(bundle=bundle, report={"resourceType": "OperationOutcome", "issue": []},
                      letter=summary)


_STRUCT = national_system("organization")


def _patient(view: BundleView, notice: DischargeNotice) -> str:
    types = {rule["system"]: rule.get("type") for rule in knowledge().identifiers["patient"]
             .values()}
    identifiers = [{"system": system, "value": value,
                    **({"type": {"coding": [types[system]]}} if types.get(system) else {})}
                   for system, value in (notice.ins, *notice.other_identifiers)]
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
    name = {k: v for k, v in (("family", notice.family), ("given", list(notice.given))) if v}
    if name:
        patient["name"] = [{"use": "official", **name}]
    for element, value in (("gender", notice.gender), ("birthDate", notice.birth_date),
                           ("address", [notice.address] if notice.address else None)):
        if value:
            patient[element] = value
    ins = {"system": notice.ins[0], "value": notice.ins[1]}
    # created if absent: what a letter already said of the patient is not overwritten
    return view.add(patient, full_url("Patient", *notice.ins), create_if_absent("Patient", ins))


def _hospital(view: BundleView, notice: DischargeNotice) -> str:
    identifier = {"system": _STRUCT, "value": notice.hospital}
    organization: dict[str, Any] = {"resourceType": "Organization", "identifier": [identifier]}
    if notice.hospital_name:
        organization["name"] = notice.hospital_name
    return view.add(organization, full_url("Organization", _STRUCT, notice.hospital),
                    create_if_absent("Organization", identifier))


def _encounter(view: BundleView, notice: DischargeNotice, stay: dict[str, str],
               patient_url: str, hospital_url: str, rules: dict[str, Any]) -> str:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [stay, {"system": notice.stay[0], "value": notice.stay[1]}],
        # the patient is in hospital until the discharge is done
        "status": "finished" if notice.ended else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP",
                  "display": "inpatient encounter"},
        "subject": {"reference": patient_url},
        "serviceProvider": {"reference": hospital_url},
    }
    profile = knowledge().profile("Encounter")
    if profile:
        encounter["meta"] = {"profile": [profile]}
    if notice.event == "planned" and notice.planned_date:
        encounter["extension"] = [{"url": rules["estimated_discharge_extension"],
                                   "valueDate": notice.planned_date}]
    if notice.ended and notice.discharged_at:
        encounter["period"] = {"end": notice.discharged_at}
    if notice.service:
        encounter["serviceType"] = {"text": notice.service}
    if notice.destination and notice.event in ("planned", "discharged"):
        disposition: dict[str, Any] = {"text": notice.destination}
        if notice.destination_code:
            disposition["coding"] = [notice.destination_code]
        encounter["hospitalization"] = {"dischargeDisposition": disposition}
    request = {"method": "PUT", "url": f"Encounter?{identifier_query(stay)}"}
    return view.add(encounter, full_url("Encounter", stay["system"], stay["value"]), request)


def _care_team(view: BundleView, notice: DischargeNotice, stay: dict[str, str],
               patient_url: str, encounter_url: str, hospital_url: str) -> str | None:
    """The stay's CareTeam, named only after coordination (`name_care_team`): unnamed, the
    merge with the record carries the members it already has (a carer a coordinator assigned
    after an earlier notice) into this version of it. Returns the médecin traitant's fullUrl."""
    care_team: dict[str, Any] = {
        "resourceType": "CareTeam", "status": "active",
        "name": "Équipe de soins de la sortie",
        "subject": {"reference": patient_url},
        "encounter": {"reference": encounter_url},
        "managingOrganization": [{"reference": hospital_url}],
        "participant": [],
    }
    profile = knowledge().profile("CareTeam")
    if profile:
        care_team["meta"] = {"profile": [profile]}
    member = None
    if notice.gp is not None:
        practitioner: dict[str, Any] = {"resourceType": "Practitioner", "identifier": [
            {"system": IDNAT_PS, "value": notice.gp.idnat}]}
        name = {k: v for k, v in (("family", notice.gp.family), ("given", list(notice.gp.given)))
                if v}
        if name:
            practitioner["name"] = [name]
        member = ensure_practitioner(view, practitioner)
        care_team["participant"].append({"role": [{"coding": [knowledge().role("pcp")]}],
                                         "member": {"reference": member}})
    view.add(care_team, full_url("CareTeam", _care_team_system(), _care_team_key(stay)),
             {"method": "POST", "url": "CareTeam"})
    return member


def _care_team_system() -> str:
    return knowledge().liaison_system("careteam")


def _care_team_key(stay: dict[str, str]) -> str:
    return f"stay:{stay['value']}"


def name_care_team(view: BundleView, stay: dict[str, str]) -> None:
    """Key the stay's CareTeam (a conditional update by the stay) once it is merged."""
    care_team = view.first("CareTeam")
    if care_team is None:
        return
    identifier = {"system": _care_team_system(), "value": _care_team_key(stay)}
    care_team["identifier"] = [identifier]
    entry = view.entry_of(care_team)
    if entry is not None:
        entry["request"] = {"method": "PUT", "url": f"CareTeam?{identifier_query(identifier)}"}


def word_messages(view: BundleView, notice: DischargeNotice) -> str:
    """Every Communication of the bundle says what the notice says (coordination wrote them
    for a letter); returns that text."""
    text = notice_text(notice)
    for message in view.resources("Communication"):
        message["payload"] = [{"contentString": text}]
        message.pop("about", None)  # no letter yet: the notice is about the stay
    return text


def notice_text(notice: DischargeNotice) -> str:
    """What the care team reads: "Sortie prévue le mardi 8 décembre 2026 de …"."""
    texts = notice_rules()["texts"]
    moment = notice.discharged_at or notice.planned_date
    when = _in_words(moment) if moment else texts["unknown_date"]
    service = texts["service"].format(service=notice.service) if notice.service else ""
    destination = ""
    if notice.destination:
        destination = texts["transfer" if notice.transfer else "destination"].format(
            destination=notice.destination)
    return texts[notice.event].format(date=when, hospital=notice.hospital_name or "l'hôpital",
                                      service=service, destination=destination)


def _in_words(moment: str) -> str:
    """A day alone ("mardi 8 décembre 2026") or a moment with its hour, in Paris time; with
    its year always: the message is read later, maybe another year."""
    if len(moment) == 10:
        day = date.fromisoformat(moment)
        words = french_moment(datetime(day.year, day.month, day.day, 12).isoformat(),
                              today=date.min)
        return words.rsplit(",", 1)[0]
    return french_moment(moment, today=date.min)
