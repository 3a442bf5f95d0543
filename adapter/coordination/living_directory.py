"""The living directory: who can take a patient, for what, and how soon after discharge.

Professionals (for themselves) and coordinators record availability and skills — accepts new
patients, home visits, "within 24 h after discharge", skills such as wound care, PICC line,
palliative care — through the API or a CSV. Stored in `coordination_availability` keyed by
the professional's identifier; names, professions and contacts come from the directory tables.
Searches answer FHIR PractitionerRole resources carrying those fields.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from adapter.coordination.bundle_tools import IDNAT_PS
from adapter.coordination.rules import CoordinationRules, load_rules, parse_spans
from adapter.errors import BadRequest
from adapter.store.coordination_tables import Availability

_TRUE = {"1", "true", "yes", "oui", "y", "o", "x"}
_FALSE = {"0", "false", "no", "non", "n", ""}
CSV_COLUMNS = (
    "idnat_ps",
    "accepts_new_patients",
    "home_visits",
    "available_within",
    "skills",
    "postcodes",
)


def parse_delay(text: str | int | None) -> int | None:
    """Hours from "24h", "24 h", "2d", "48", or None when empty."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([hHdDjJ]?)\s*", str(text))
    if not match:
        raise BadRequest(f"a delay is a number of hours or days such as 24h or 2d, not {text!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 24 if unit in ("d", "j") else number


def _flag(text: str | bool | None, column: str) -> bool | None:
    if text is None or isinstance(text, bool):
        return text
    folded = text.strip().casefold()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return None if folded == "" else False
    raise BadRequest(f"{column}: expected yes/no, not {text!r}")


@dataclass(frozen=True)
class AvailabilityUpdate:
    identifier: tuple[str, str]
    accepts_new_patients: bool | None = None
    home_visits: bool | None = None
    available_within_hours: int | None = None
    skills: tuple[str, ...] = ()
    postcodes: str = ""

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> AvailabilityUpdate:
        idnat = body.get("idnat") or body.get("idnat_ps")
        if not idnat:
            raise BadRequest("the professional's idnat is required")
        postcodes = body.get("postcodes") or ""
        if isinstance(postcodes, list):
            postcodes = " ".join(postcodes)
        try:
            parse_spans(postcodes)
        except ValueError as error:
            raise BadRequest(f"postcodes: {error}") from error
        skills = body.get("skills") or []
        if isinstance(skills, str):
            skills = skills.replace(",", " ").split()
        return cls(
            identifier=(IDNAT_PS, str(idnat)),
            accepts_new_patients=_flag(body.get("accepts_new_patients"), "accepts_new_patients"),
            home_visits=_flag(body.get("home_visits"), "home_visits"),
            available_within_hours=parse_delay(body.get("available_within")),
            skills=tuple(sorted({s.strip() for s in skills if s.strip()})),
            postcodes=postcodes,
        )


def save(session: Session, update: AvailabilityUpdate, by: str | None) -> Availability:
    """Create or replace the availability of one professional."""
    system, value = update.identifier
    row = session.exec(
        select(Availability).where(
            Availability.identifier_system == system, Availability.identifier_value == value
        )
    ).first() or Availability(identifier_system=system, identifier_value=value)
    row.accepts_new_patients = update.accepts_new_patients
    row.home_visits = update.home_visits
    row.available_within_hours = update.available_within_hours
    row.skills = " ".join(update.skills)
    row.postcodes = update.postcodes
    row.updated_at = datetime.now(UTC)
    row.updated_by = by
    session.add(row)
    return row


def import_csv(session: Session, text: str, by: str | None) -> tuple[int, list[str]]:
    """Rows of an availability CSV (columns `CSV_COLUMNS`); bad lines are reported, not fatal."""
    delimiter = (
        ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    )
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    missing = {"idnat_ps"} - set(reader.fieldnames or ())
    if missing:
        raise BadRequest(f"the availability CSV needs the column(s) {', '.join(sorted(missing))}")
    saved, problems = 0, []
    for number, row in enumerate(reader, start=2):
        try:
            update = AvailabilityUpdate.from_json({k: v for k, v in row.items() if k})
        except BadRequest as error:
            problems.append(f"line {number}: {error.message}")
            continue
        save(session, update, by)
        saved += 1
    return saved, problems


def _directory_cards(session: Session, idnats: list[str]) -> dict[str, dict[str, Any]]:
    """Name, profession, practice postcode and contacts from the directory tables, if present."""
    from adapter.store.directory_tables import DirectoryPractitioner, DirectoryRole

    cards: dict[str, dict[str, Any]] = {}
    if not idnats:
        return cards
    people = session.exec(
        select(DirectoryPractitioner).where(col(DirectoryPractitioner.idnat).in_(idnats))
    ).all()
    for person in people:
        cards[person.idnat] = {
            "family": person.family,
            "given": person.given,
            "profession_code": person.profession_code,
            "profession": person.profession_display,
            # a physician's specialty says what they do (a psychiatrist: SM42)
            "specialty": (person.specialty_system, person.specialty_code,
                          person.specialty_display) if person.specialty_code else None,
        }
    roles = session.exec(
        select(DirectoryRole)
        .where(col(DirectoryRole.practitioner_idnat).in_(idnats))
        .where(col(DirectoryRole.active).is_(True))
    ).all()
    for role in roles:
        card = cards.setdefault(role.practitioner_idnat, {})
        card.setdefault("postcode", role.postcode)
        card.setdefault("phone", role.phone)
        card.setdefault("mssante", role.mssante)
        card.setdefault("organization", role.organization_name)
        if not card.get("profession"):
            card["profession"] = role.profession_display
            card["profession_code"] = role.profession_code
        if not card.get("specialty") and role.specialty_code:
            card["specialty"] = (role.specialty_system, role.specialty_code,
                                 role.specialty_display)
    return cards


def _serves(row: Availability, card: dict[str, Any], postcode: str | None) -> bool:
    if not postcode:
        return True
    spans = parse_spans(row.postcodes or "")
    if spans:
        return any(span.covers(postcode) for span in spans)
    practice = card.get("postcode") or ""
    return bool(practice) and practice[:2] == postcode[:2]  # same département


def search(
    engine: Engine,
    *,
    available_within_hours: int | None = None,
    skills: tuple[str, ...] = (),
    postcode: str | None = None,
    rules: CoordinationRules | None = None,
) -> list[dict[str, Any]]:
    """PractitionerRole resources of the professionals who match every criterion given."""
    rules = rules or load_rules()
    with Session(engine) as session:
        query = select(Availability).where(col(Availability.accepts_new_patients).is_not(False))
        if available_within_hours is not None:
            query = query.where(col(Availability.available_within_hours).is_not(None)).where(
                col(Availability.available_within_hours) <= available_within_hours
            )
        rows = [r for r in session.exec(query).all() if set(skills) <= set(r.skills.split())]
        cards = _directory_cards(session, [r.identifier_value for r in rows])
    found = [
        practitioner_role(row, cards.get(row.identifier_value, {}), rules)
        for row in sorted(rows, key=lambda r: (r.available_within_hours or 0, r.identifier_value))
        if _serves(row, cards.get(row.identifier_value, {}), postcode)
    ]
    return found


def practitioner_role(
    row: Availability, card: dict[str, Any], rules: CoordinationRules
) -> dict[str, Any]:
    """The availability as an R4 PractitionerRole (skills as specialty codings)."""
    section = rules.section("living_directory")
    skill_names = section.get("skills") or {}
    name = " ".join(p for p in (card.get("given"), card.get("family")) if p) or None
    practitioner: dict[str, Any] = {
        "identifier": {"system": row.identifier_system, "value": row.identifier_value}
    }
    if name:
        practitioner["display"] = name
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": f"availability-{row.id}",
        "active": True,
        "practitioner": practitioner,
        "extension": [],
    }
    if card.get("profession"):
        coding = {"code": card.get("profession_code") or "", "display": card["profession"]}
        resource["code"] = [{"coding": [coding], "text": card["profession"]}]
    if card.get("specialty"):
        system, code, display = card["specialty"]
        resource["specialty"] = [{"coding": [{k: v for k, v in (
            ("system", system), ("code", code), ("display", display)) if v}],
            "text": display or code}]
    if row.skills:
        resource.setdefault("specialty", []).extend([
            {
                "coding": [
                    {
                        "system": section.get("skill_system"),
                        "code": skill,
                        "display": skill_names.get(skill, skill),
                    }
                ],
                "text": skill_names.get(skill, skill),
            }
            for skill in row.skills.split()
        ])
    if row.available_within_hours is not None:
        resource["extension"].append(
            {
                "url": section.get("availability_extension"),
                "valueDuration": {
                    "value": row.available_within_hours,
                    "unit": "h",
                    "system": "http://unitsofmeasure.org",
                    "code": "h",
                },
            }
        )
        resource["availabilityExceptions"] = (
            f"Peut prendre un patient sous {row.available_within_hours} h après la sortie"
        )
    if row.accepts_new_patients is not None:
        resource["extension"].append(
            {
                "url": section.get("accepts_new_patients_extension"),
                "valueBoolean": row.accepts_new_patients,
            }
        )
    if row.home_visits:
        resource.setdefault("availabilityExceptions", "")
        resource["availabilityExceptions"] = (
            resource["availabilityExceptions"] + " ; visites à domicile"
        ).strip(" ;")
    telecom = []
    if card.get("phone"):
        telecom.append({"system": "phone", "value": card["phone"], "use": "work"})
    if card.get("mssante"):
        telecom.append({"system": "email", "value": card["mssante"], "use": "work"})
    if telecom:
        resource["telecom"] = telecom
    if not resource["extension"]:
        del resource["extension"]
    return resource
