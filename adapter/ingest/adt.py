"""HL7 v2.5 ADT messages as French hospitals send them (IHE PAM, PAM FR), read into discharge
notices, and the acknowledgements liaison answers them with.

Read with the `hl7` library (python-hl7). What each trigger event means is data
(`mappings/notices.yaml`): A16 a discharge planned (PV2-9 its expected date), A03 a discharge
done (PV1-45), A25 and A13 their cancellations; other events are acknowledged and left alone.
The patient is named by INS (PID-3 with an INS assigning authority); the stay by PV1-19; the
médecin traitant by a ROL segment (ROL-3 in `gp_roles`) or PD1-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import hl7

from adapter.coordination.french_dates import PARIS
from adapter.coordination.notice import DischargeNotice, GeneralPractitioner, notice_rules
from adapter.errors import BadRequest
from adapter.national_ids import ins_systems, national_id, national_system

_GENDERS = {"M": "male", "F": "female", "U": "unknown", "O": "other", "A": "other"}
_IDNAT_PS_OID = national_system("professional").removeprefix("urn:oid:")
_STRUCT_OID = national_system("organization").removeprefix("urn:oid:")


@dataclass(frozen=True)
class AdtMessage:
    control_id: str  # MSH-10
    event: str  # MSH-9.2, e.g. "A16"
    notice: DischargeNotice | None  # None: an event liaison acknowledges and leaves alone


def parse_adt(text: str, *, default_hospital: str | None = None) -> AdtMessage:
    """The notice an ADT message carries; BadRequest saying what is wrong with it.
    `default_hospital`: the sender's idNat_Struct when MSH-4 does not give one."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\x0b\x1c")
    if not text.startswith("MSH"):
        raise BadRequest("an HL7 v2 message starts with its MSH segment")
    try:
        message = hl7.parse(text)
        control_id = _text(message, "MSH", 10)
        event = _text(message, "MSH", 9, 2)
    except (hl7.exceptions.HL7Exception, IndexError, KeyError, ValueError) as error:
        raise BadRequest(f"unreadable HL7 v2 message: {error}") from None
    if not control_id:
        raise BadRequest("MSH-10 (message control id) is missing")
    kind = (notice_rules().get("adt_events") or {}).get(event)
    if kind is None:
        return AdtMessage(control_id, event, None)
    return AdtMessage(control_id, event, _notice(message, kind, control_id, default_hospital))


def decode(block: bytes) -> str:
    """HL7 v2 from French hospitals is UTF-8 or ISO 8859-1 (MSH-18)."""
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError:
        return block.decode("latin-1")


def acknowledgement(text: str, code: str, explanation: str = "") -> str:
    """The ACK of `text` (AA accepted, AE error in the message, AR refused), MSA-3 the why."""
    try:
        message = hl7.parse(text.replace("\n", "\r").strip("\r\x0b\x1c"))
        ack = message.create_ack(ack_code=code)
    except Exception:  # not even an MSH to answer: a bare ACK
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        ack = hl7.parse(f"MSH|^~\\&|LIAISON||||{stamp}||ACK|{stamp}|P|2.5\rMSA|{code}|")
    if explanation:
        msa = ack.segment("MSA")
        while len(msa) < 4:
            msa.append("")
        msa[3] = _escape(explanation[:200])
    return str(ack)


def _escape(text: str) -> str:
    for special, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"),
                             ("~", "\\R\\"), ("\r", " "), ("\n", " ")):
        text = text.replace(special, escaped)
    return text


def _notice(message: Any, kind: str, control_id: str, default_hospital: str | None
            ) -> DischargeNotice:
    rules = notice_rules()
    ins, others = _patient_ids(message)
    if ins is None:
        raise BadRequest("PID-3 names no INS: a discharge notice needs the patient's INS "
                         "(the care team is found by it)")
    stay = _cx(_field(message, "PV1", 19))
    if stay is None:
        raise BadRequest("PV1-19 (the stay's number, with its assigning authority OID) is "
                         "missing")
    hospital = _hospital(message) or default_hospital
    if not hospital:
        raise BadRequest("MSH-4 does not name the hospital (idNat_Struct or FINESS)")
    family, given = _name(message)
    disposition = (rules.get("dispositions") or {}).get(_text(message, "PV1", 36), {})
    destination = disposition.get("text") or _text(message, "PV1", 37, 1) or None
    return DischargeNotice(
        event=kind, hospital=hospital, stay=stay, ins=ins, message_id=control_id,
        sent_at=_moment(_text(message, "MSH", 7)) or datetime.now().astimezone().isoformat(
            timespec="seconds"),
        other_identifiers=tuple(others), family=family, given=given,
        birth_date=_day(_text(message, "PID", 7)),
        gender=_GENDERS.get(_text(message, "PID", 8).upper()),
        address=_address(message),
        planned_date=_day(_text(message, "PV2", 9)),
        discharged_at=_moment(_text(message, "PV1", 45)),
        destination=destination,
        destination_code=disposition.get("code"),
        transfer=bool(disposition.get("transfer")),
        service=_text(message, "ZBE", 7, 1) or _text(message, "PV1", 3, 9) or None,
        gp=_general_practitioner(message, rules.get("gp_roles") or []),
    )


def _segments(message: Any, name: str) -> list[Any]:
    try:
        return list(message.segments(name))
    except KeyError:
        return []


def _field(message: Any, segment: str, number: int) -> Any:
    found = _segments(message, segment)
    if not found or len(found[0]) <= number:
        return None
    return found[0][number]


def _component(value: Any, component: int, sub: int = 1) -> str:
    """Component `component` (and its sub-component `sub`) of a field's first repetition."""
    if value is None:
        return ""
    if isinstance(value, hl7.Field) and value and isinstance(value[0], hl7.Repetition):
        value = value[0]
    if isinstance(value, str):
        return value if component == 1 and sub == 1 else ""
    try:
        part = value[component - 1]
    except IndexError:
        return ""
    if isinstance(part, str):
        return part if sub == 1 else ""
    try:
        return str(part[sub - 1])
    except IndexError:
        return ""


def _text(message: Any, segment: str, number: int, component: int = 1) -> str:
    return _component(_field(message, segment, number), component).strip()


def _repetitions(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, hl7.Field) and value and isinstance(value[0], hl7.Repetition):
        return list(value)
    return [value]


def _cx(value: Any) -> tuple[str, str] | None:
    """An identifier (CX): ("urn:oid:<assigning authority OID>", number)."""
    number, oid = _component(value, 1).strip(), _component(value, 4, 2).strip()
    return (f"urn:oid:{oid}", number) if number and oid else None


def _patient_ids(message: Any) -> tuple[tuple[str, str] | None, list[tuple[str, str]]]:
    ins, others = None, []
    for repetition in _repetitions(_field(message, "PID", 3)):
        identifier = _cx(repetition)
        if identifier is None:
            continue
        if identifier[0] in ins_systems() and ins is None:
            ins = identifier
        elif identifier[0] not in ins_systems():
            others.append(identifier)
    return ins, others


def _hospital(message: Any) -> str | None:
    """The sending facility's idNat_Struct (MSH-4.2, an idNat_Struct or a FINESS number)."""
    value = _text(message, "MSH", 4, 2)
    return national_id(value, "organization") if value.isdigit() else None


def _name(message: Any) -> tuple[str | None, tuple[str, ...]]:
    names = _repetitions(_field(message, "PID", 5))
    # the birth name (type L) first, else the first given
    chosen = next((n for n in names if _component(n, 7) == "L"), names[0] if names else None)
    if chosen is None:
        return None, ()
    given = tuple(p for p in (_component(chosen, 2), *_component(chosen, 3).split()) if p)
    return _component(chosen, 1) or None, given


def _address(message: Any) -> dict[str, Any]:
    value = _field(message, "PID", 11)
    address: dict[str, Any] = {}
    lines = [line for line in (_component(value, 1), _component(value, 2)) if line]
    if lines:
        address["line"] = lines
    for key, component in (("city", 3), ("postalCode", 5)):
        if _component(value, component):
            address[key] = _component(value, component)
    return address


def _general_practitioner(message: Any, roles: list[str]) -> GeneralPractitioner | None:
    for segment in _segments(message, "ROL"):
        if len(segment) > 4 and _component(segment[3], 1) in roles:
            found = _practitioner(segment[4])
            if found:
                return found
    return _practitioner(_field(message, "PD1", 4))


def _practitioner(value: Any) -> GeneralPractitioner | None:
    """An XCN naming a professional by idNat_PS or RPPS (assigning authority 9, its OID 2)."""
    number = _component(value, 1).strip()
    authority = _component(value, 9, 2) or _component(value, 9)
    if not number or (authority and authority not in (_IDNAT_PS_OID, "RPPS", "ASIP-SANTE-PS")):
        return None
    given = tuple(p for p in (_component(value, 3),) if p)
    return GeneralPractitioner(idnat=national_id(number, "professional"),
                               family=_component(value, 2) or None, given=given)


def _day(value: str) -> str | None:
    digits = value[:8]
    if len(digits) != 8 or not digits.isdigit():
        return None
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}"


def _moment(value: str) -> str | None:
    """An HL7 TS (YYYYMMDDHHMM[SS][+ZZZZ]) as a FHIR dateTime (Paris time when no zone)."""
    if not value or not value[:12].isdigit():
        return _day(value) if value else None
    stamp, zone = value[:14], ""
    for sign in ("+", "-"):
        if sign in value[8:]:
            stamp, _, zone = value.partition(sign)
            zone = f"{sign}{zone[:2]}:{zone[2:4]}"
    stamp = stamp.split(".")[0].ljust(14, "0")
    moment = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    if not zone:
        return moment.replace(tzinfo=PARIS).isoformat(timespec="seconds")
    return moment.isoformat(timespec="seconds") + zone
