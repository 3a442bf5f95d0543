"""Letters with the discharge drugs a test chooses: the official example's one medication entry
(section "Traitements à la sortie") repeated with other ids, drugs and doses."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SECTION = re.compile(
    rb'(<code code="10183-2".*?<!-- \[1\.\.\*\] Entr\xc3\xa9e FR-Traitement -->\s*)'
    rb"(<entry>.*?</entry>)(\s*</section>)", re.S)


@dataclass(frozen=True)
class Drug:
    entry_id: str  # the hospital's id of the entry (an uppercase UUID)
    cis: str  # CIS code of the drug
    name: str
    tablets: int = 1  # dose: tablets a day


LEPONEX = Drug("2ED5EF29-8305-4383-8945-C13F2A988D5E", "62552920", "LEPONEX 100 mg")
DOLIPRANE = Drug("0B6D8A3C-1F1E-4E5A-9C57-3E1D2B7A4C11", "60234100", "DOLIPRANE 1000 mg")
KARDEGIC = Drug("5C3E9D2A-7B41-4F6E-8A0D-9E2C1B4D6F22", "63284817", "KARDEGIC 75 mg")


def _entry(template: bytes, drug: Drug) -> bytes:
    entry = re.sub(rb'<id root="[0-9A-F-]{36}"/>', f'<id root="{drug.entry_id}"/>'.encode(),
                   template, count=1)
    entry = entry.replace(b'code="62552920"', f'code="{drug.cis}"'.encode())
    entry = entry.replace(b"<name>LEPONEX 100 mg</name>", f"<name>{drug.name}</name>".encode())
    entry = entry.replace(b'displayName="LEPONEX 100 mg, comprim\xc3\xa9 s\xc3\xa9cable"',
                          f'displayName="{drug.name}"'.encode())
    return re.sub(rb'(<doseQuantity>\s*<low value=")1(" unit="\{tbl\}"/>\s*<high value=")1',
                  rb"\g<1>" + str(drug.tablets).encode() + rb"\g<2>"
                  + str(drug.tablets).encode(), entry)


def with_discharge_drugs(letter: bytes, *drugs: Drug) -> bytes:
    """`letter` (a variant of the official example) discharging the patient with `drugs`."""
    found = _SECTION.search(letter)
    assert found is not None, "not a variant of the official example"
    entries = b"\n".join(_entry(found.group(2), drug) for drug in drugs)
    return letter[:found.start(2)] + entries + letter[found.end(2):]
