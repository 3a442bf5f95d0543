"""CDA R2 datatypes (II, TS, IVL_TS, CD/CE, PN, AD, TEL) read into FHIR R4 JSON fragments.

Functions take an lxml element (or None) and return plain dicts/strings, or None when the
element is absent or carries a nullFlavor. Code-system OIDs become URIs through a `SystemUris`
callable so the OID → URI table stays data (`mappings/terminology.yaml`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TypeAlias
from zoneinfo import ZoneInfo

from lxml import etree

from adapter.cda.reader import HL7_NS, XSI_NS

SystemUris = Callable[[str], str]
Element: TypeAlias = etree._Element

H = f"{{{HL7_NS}}}"
XSI_TYPE = f"{{{XSI_NS}}}type"
# Letters from French hospitals without a time zone are in local French time.
_LOCAL_ZONE = ZoneInfo("Europe/Paris")
_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?\d*([+-]\d{2}\d{2})?$"
)


# iterchildren(tag) walks the children in C; find()/findall() go through ElementPath first,
# which costs more than the lookup itself (~250 lookups per letter, many on leaf elements).
def child(element: Element | None, name: str) -> Element | None:
    if element is None or not len(element):
        return None
    return next(element.iterchildren(H + name), None)


def children(element: Element | None, name: str) -> list[Element]:
    if element is None or not len(element):
        return []
    return list(element.iterchildren(H + name))


def local_name(element: Element) -> str:
    """The tag without its namespace (what etree.QName(element).localname gives, cheaper)."""
    return element.tag.rpartition("}")[2]


def path(element: Element | None, *names: str) -> Element | None:
    for name in names:
        element = child(element, name)
    return element


def text_of(element: Element | None) -> str | None:
    """Whitespace-normalised text content of an element, None when empty."""
    if element is None or element.get("nullFlavor"):
        return None
    # a leaf's text is at hand (most calls); itertext() only for elements with children
    raw = "".join(element.itertext()) if len(element) else element.text or ""
    text = " ".join(raw.split())
    return text or None


# --- II ---------------------------------------------------------------------------------------

def ii(element: Element | None) -> tuple[str, str] | None:
    """(root, extension or '') of an II, None for nullFlavor or no root."""
    if element is None or element.get("nullFlavor"):
        return None
    root = (element.get("root") or "").strip()
    if not root:
        return None
    return root, (element.get("extension") or "").strip()


def ii_identifier(element: Element | None) -> dict | None:
    """An II as a FHIR Identifier: urn:oid:root|extension, or RFC 3986 urn:oid/urn:uuid alone."""
    value = ii(element)
    if value is None:
        return None
    return ii_to_identifier(*value)


_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")


def is_oid(root: str) -> bool:
    return bool(_OID.match(root))


def ii_to_identifier(root: str, extension: str) -> dict:
    if extension:
        if is_oid(root):
            return {"system": f"urn:oid:{root}", "value": extension}
        if _UUID.match(root):
            return {"system": f"urn:uuid:{root.lower()}", "value": extension}
        return {"value": f"{root}^{extension}"}
    if _UUID.match(root):
        return {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{root.lower()}"}
    if is_oid(root):
        return {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{root}"}
    return {"value": root}


# --- TS / IVL_TS ------------------------------------------------------------------------------

def ts(value: str | None) -> str | None:
    """A CDA TS string as a FHIR dateTime (partial dates kept, zone added when time is given)."""
    if not value:
        return None
    match = _TS.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if month is None:
        return year
    if day is None:
        return f"{year}-{month}"
    if hour is None:
        return f"{year}-{month}-{day}"
    minute = minute or "00"
    second = second or "00"
    fraction = fraction or ""
    if zone:
        offset = f"{zone[:3]}:{zone[3:]}"
    else:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        raw = local.replace(tzinfo=_LOCAL_ZONE).strftime("%z")
        offset = f"{raw[:3]}:{raw[3:]}"
    if offset == "-00:00":
        offset = "+00:00"
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}{fraction}{offset}"


def ts_of(element: Element | None) -> str | None:
    if element is None or element.get("nullFlavor"):
        return None
    return ts(element.get("value"))


def as_instant(date_time: str) -> str:
    """A FHIR instant from a dateTime that may be partial (a date becomes its midnight UTC)."""
    if "T" in date_time:
        return date_time
    parts = [*date_time.split("-"), "01", "01"][:3]
    return f"{parts[0]}-{parts[1]}-{parts[2]}T00:00:00+00:00"


def french_date(moment: str) -> str:
    """A FHIR date(Time) as French readers write it (JJ/MM/AAAA)."""
    year, month, day = [*moment[:10].split("-"), "", ""][:3]
    return "/".join(part for part in (day, month, year) if part)


def ivl_ts(element: Element | None) -> dict | None:
    """An IVL_TS (or a TS with @value) as a FHIR Period."""
    if element is None or element.get("nullFlavor"):
        return None
    period: dict = {}
    if element.get("value"):
        start = ts(element.get("value"))
        if start:
            period["start"] = start
        return period or None
    start = ts_of(child(element, "low"))
    end = ts_of(child(element, "high"))
    if start:
        period["start"] = start
    if end:
        period["end"] = end
    return period or None


# --- CD / CE ----------------------------------------------------------------------------------

def coding(element: Element | None, uris: SystemUris) -> dict | None:
    if element is None or element.get("nullFlavor") or not element.get("code"):
        return None
    result: dict = {}
    system = element.get("codeSystem")
    if system:
        result["system"] = uris(system)
    result["code"] = element.get("code").strip()
    if element.get("displayName"):
        result["display"] = " ".join(element.get("displayName").split())
    return result


def codeable(element: Element | None, uris: SystemUris, narrative: dict[str, str] | None = None
             ) -> dict | None:
    """A CD/CE with its translations as a CodeableConcept; originalText becomes text."""
    if element is None:
        return None
    codings = [c for c in [coding(element, uris)] if c]
    for translation in children(element, "translation"):
        translated = coding(translation, uris)
        if translated:
            codings.append(translated)
    concept: dict = {}
    if codings:
        concept["coding"] = codings
    original = original_text(element, narrative)
    if original:
        concept["text"] = original
    elif codings and codings[0].get("display"):
        concept["text"] = codings[0]["display"]
    return concept or None


def original_text(element: Element | None, narrative: dict[str, str] | None) -> str | None:
    """originalText (or text) of a coded element, following a #reference into the narrative."""
    for name in ("originalText", "text"):
        holder = child(element, name)
        if holder is None:
            continue
        reference = child(holder, "reference")
        if reference is not None:
            target = (reference.get("value") or "").lstrip("#")
            if narrative and target in narrative:
                return narrative[target]
            continue
        direct = text_of(holder)
        if direct:
            return direct
    return None


# --- PN ---------------------------------------------------------------------------------------

_NAME_USE_BY_QUALIFIER = {"BR": "official", "CL": "usual", "SP": "maiden"}


def person_names(element: Element | None) -> list[dict]:
    """A PN as FHIR HumanNames; French birth (BR) and used (CL) names become separate names."""
    if element is None or element.get("nullFlavor"):
        return []
    qualified: dict[str, dict] = {}
    plain: dict = {}
    for part in element:
        if not isinstance(part.tag, str):
            continue
        name = local_name(part)
        value = text_of(part)
        if not value or name not in ("family", "given", "prefix", "suffix"):
            continue
        qualifier = part.get("qualifier")
        if qualifier in _NAME_USE_BY_QUALIFIER:
            target = qualified.setdefault(qualifier, {})
        else:
            target = plain
        if name == "family":
            target["family"] = value
        else:
            target.setdefault(name, []).append(value)
    names: list[dict] = []
    if "BR" in qualified:
        official = {"use": "official", **qualified["BR"]}
        # The unqualified <given> of a French birth name lists all birth given names; the BR
        # one is only the first of them, so the full list wins.
        if plain.get("given"):
            official["given"] = plain.pop("given")
        for key in ("prefix", "suffix"):
            if key in plain:
                official.setdefault(key, plain.pop(key))
        if "family" not in official and "family" in plain:
            official["family"] = plain.pop("family")
        names.append(official)
    if "CL" in qualified:
        names.append({"use": "usual", **qualified["CL"]})
    if "SP" in qualified:
        names.append({"use": "maiden", **qualified["SP"]})
    if plain and (plain.get("family") or plain.get("given")):
        names.append(plain)
    if not names and text_of(element):
        names.append({"text": text_of(element)})
    return names


# --- AD ---------------------------------------------------------------------------------------

_ADDRESS_USE = {"H": "home", "HP": "home", "WP": "work", "TMP": "temp", "OLD": "old", "PST": "home"}


def address(element: Element | None) -> dict | None:
    if element is None or element.get("nullFlavor"):
        return None
    lines: list[str] = []
    street: list[str] = []
    result: dict = {}
    for part in element:
        if not isinstance(part.tag, str):
            continue
        name = local_name(part)
        value = text_of(part)
        if not value:
            continue
        if name in ("houseNumber", "streetName", "streetNameBase", "streetNameType"):
            street.append(value)
        elif name in ("streetAddressLine", "additionalLocator", "unitID", "buildingNumberSuffix",
                      "postBox", "careOf", "deliveryAddressLine"):
            lines.append(value)
        elif name == "postalCode":
            result["postalCode"] = value
        elif name == "city":
            result["city"] = value
        elif name == "county":
            result["district"] = value
        elif name == "state":
            result["state"] = value
        elif name == "country":
            result["country"] = value
    if street:
        lines.insert(0, " ".join(street))
    if lines:
        result["line"] = lines
    if not result and text_of(element):
        result["text"] = text_of(element)
    if not result:
        return None
    use = _ADDRESS_USE.get((element.get("use") or "").split(" ")[0])
    if use:
        result["use"] = use
    return result


# --- TEL --------------------------------------------------------------------------------------

_TELECOM_USE = {"H": "home", "HP": "home", "HV": "home", "WP": "work", "MC": "mobile",
                "PG": "mobile", "TMP": "temp", "EC": "mobile", "AS": "work", "DIR": "work",
                "PUB": "work", "BAD": "old"}
_SCHEMES = {"tel": "phone", "fax": "fax", "mailto": "email", "http": "url", "https": "url"}


def telecom(element: Element | None) -> dict | None:
    if element is None or element.get("nullFlavor"):
        return None
    raw = (element.get("value") or "").strip()
    if not raw:
        return None
    scheme, _, rest = raw.partition(":")
    system = _SCHEMES.get(scheme.lower())
    if system is None:
        return {"system": "other", "value": raw}
    value = rest if system != "url" else raw
    point: dict = {"system": system, "value": value.strip()}
    use = _TELECOM_USE.get((element.get("use") or "").split(" ")[0])
    if use:
        point["use"] = use
    return point


def telecoms(element: Element | None) -> list[dict]:
    return [t for t in (telecom(e) for e in children(element, "telecom")) if t]
