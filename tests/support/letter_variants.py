"""Many distinct discharge letters from the official LDL-SES example: each variant `n` has its
own document id, setId, patient (INS with a valid key, local IPP) and entry ids, so letters of
different variants share nothing but the professionals and the hospital."""

from __future__ import annotations

import re
import uuid

from lxml import etree

from tests.support.paths import LDL_SES_EXAMPLE

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"  # test INS-NIR, as in the example
DOCUMENT_ROOT = "1.2.250.1.213.1.1.1.29.2022.1.1"
SET_ROOT = "1.2.250.1.213.1.1.1.29.2022.1"
_NAMESPACE = uuid.UUID("6f1c4f7e-2a6b-4a39-9d0e-5b1f2f0b8a11")
_ENTRY_ID = re.compile(
    rb"root=([\"'])([0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12})\1"
)
_EXAMPLE = LDL_SES_EXAMPLE.read_bytes()


def ins_of(n: int) -> str:
    """A 15-character INS-NIR for variant n: 13 digits and the control key (97 - NIR mod 97)."""
    nir = f"1{n:012d}"
    return f"{nir}{97 - int(nir) % 97:02d}"


def document_id(n: int, version: int = 1) -> tuple[str, str]:
    """(root, extension) of the ClinicalDocument/id of variant n, version `version`."""
    return DOCUMENT_ROOT, f"liaison-test-{n}-v{version}"


def letter_variant(n: int, *, version: int = 1, patient: int | None = None) -> bytes:
    """The example letter turned into variant `n` (version `version`, patient of variant
    `patient`, default its own)."""
    patient = n if patient is None else patient
    root, extension = document_id(n, version)
    letter = _EXAMPLE.replace(
        f'<id root="{DOCUMENT_ROOT}"/>'.encode(),
        f'<id root="{root}" extension="{extension}"/>'.encode(),
    )
    letter = letter.replace(
        f'<setId root="{SET_ROOT}"/>'.encode(),
        f'<setId root="{SET_ROOT}" extension="liaison-test-{n}"/>'.encode(),
    )
    letter = letter.replace(
        b'<versionNumber value="1"/>', f'<versionNumber value="{version}"/>'.encode()
    )
    letter = letter.replace(
        b'extension="279035121518989"', f'extension="{ins_of(patient)}"'.encode()
    )
    letter = letter.replace(b'extension="1234567890121"', f'extension="IPP{patient:010d}"'.encode())

    def entry_id(match: re.Match[bytes]) -> bytes:
        fresh = uuid.uuid5(_NAMESPACE, f"{n}:{match.group(2).decode()}")
        return b"root=" + match.group(1) + str(fresh).upper().encode() + match.group(1)

    return _ENTRY_ID.sub(entry_id, letter)


def without_recipient(letter: bytes, idnat: str) -> bytes:
    """The letter without the informationRecipient naming the professional `idnat`."""
    root = etree.fromstring(letter)
    for recipient in root.iterfind("{urn:hl7-org:v3}informationRecipient"):
        if idnat.encode() in etree.tostring(recipient):
            root.remove(recipient)
    changed: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert idnat.encode() not in changed
    return changed
