"""Conversion speed of one process: LDL-SES letters per second (wall clock).

The letter is the official ANS example (`LDL-SES_2022.01.xml`, 76 KB; the v1 fixture when the
shared examples are absent). Every converted letter is made distinct — its ClinicalDocument/id,
setId and patient identifiers (INS, IPP) change — as in a real stream, so per-letter resources
are new to the validation caches each time; only shared reference data (the same doctors and
hospital) is found again, as it would be. Parsing alone (lxml with liaison's safe parser) is
given for scale. Letters are generated in batches outside the timed sections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lxml import etree

from adapter import fhir_validation as validation
from adapter.cda.reader import parse_letter
from adapter.mapping import convert_letter

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "cda-examples" / "LDL-SES_2022.01.xml"
FALLBACK = REPO / "fixtures" / "letters" / "ldl-ses-v1.xml"
HL7 = "{urn:hl7-org:v3}"
BATCH = 100
MAX_BYTES = 20 * 1024 * 1024


class LetterFactory:
    """Distinct copies of one template letter (new document, set and patient identifiers)."""

    def __init__(self, template: bytes) -> None:
        self.template = template
        root = etree.fromstring(template, parser=etree.XMLParser(resolve_entities=False,
                                                                 no_network=True))
        self._swaps: list[tuple[bytes, str]] = []  # (text as written, pattern of its stand-in)
        for element in (root.find(HL7 + "id"), root.find(HL7 + "setId")):
            extension, oid = element.get("extension"), element.get("root")
            if extension:
                self._swaps.append((f'extension="{extension}"'.encode(),
                                    f'extension="{extension}-B{{n}}"'))
            else:
                self._swaps.append((f'root="{oid}"'.encode(), f'root="{oid}.9{{n}}"'))
        for element in root.iterfind(f"{HL7}recordTarget/{HL7}patientRole/{HL7}id"):
            extension = element.get("extension")
            if extension and len(extension) == 15 and extension[:13].isdigit():
                # an INS: 13 digits (the last 8 counted) and their control key
                self._swaps.append((extension.encode(), extension[:5] + "{n:08d}{key}"))
            elif extension and len(extension) > 8:
                self._swaps.append((extension.encode(), extension[:-8] + "{n:08d}"))

    def letter(self, number: int) -> bytes:
        letter = self.template
        for written, pattern in self._swaps:
            nir = pattern.split("{")[0] + f"{number:08d}"
            key = f"{97 - int(nir) % 97:02d}" if nir.isdigit() and len(nir) == 13 else ""
            letter = letter.replace(written, pattern.format(n=number, key=key).encode())
        return letter

    def batches(self, first: int, count: int) -> Iterator[list[bytes]]:
        for start in range(first, first + count, BATCH):
            yield [self.letter(n) for n in range(start, min(start + BATCH, first + count))]


def template_letter() -> bytes:
    return (OFFICIAL if OFFICIAL.is_file() else FALLBACK).read_bytes()


def _rate(factory: LetterFactory, first: int, count: int,
          work: Callable[[bytes], object]) -> tuple[float, float]:
    """(letters/s wall clock, letters/s of this process's CPU time)."""
    wall = cpu = 0.0
    for batch in factory.batches(first, count):
        started, started_cpu = time.perf_counter(), time.process_time()
        for letter in batch:
            work(letter)
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
    return count / wall, count / cpu


def _check_distinct(factory: LetterFactory) -> None:
    first, second = (convert_letter(factory.letter(n)).letter for n in (1, 2))
    if (first.document_key == second.document_key or first.set_key == second.set_key
            or first.ins == second.ins):
        raise RuntimeError("benchmark letters are not distinct: the template changed")


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    count = 200 if quick else 2000
    factory = LetterFactory(template_letter())
    _check_distinct(factory)
    validation.clear_caches()
    # warm-up on letters outside the measured ranges: mapping knowledge, model classes
    convert_letter(factory.letter(900_000), validate=True)
    convert_letter(factory.letter(900_001))
    validated = _rate(factory, 0, count, lambda x: convert_letter(x, validate=True))
    plain = _rate(factory, 1_000_000, count, convert_letter)
    parsed = _rate(factory, 2_000_000, count, lambda x: parse_letter(x, max_bytes=MAX_BYTES))
    size = f"{len(factory.template) / 1000:.0f} kB"
    unit = "letters/s (wall, 1 process)"

    def result(rates: tuple[float, float]) -> str:
        return f"{rates[0]:.0f} (CPU time: {rates[1]:.0f})"

    return [
        (f"convert LDL-SES {size} + FHIR validation, distinct letters", unit, result(validated)),
        (f"convert LDL-SES {size}, no validation", unit, result(plain)),
        (f"parse LDL-SES {size} only (lxml, safe parser)", unit, result(parsed)),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(" | ".join(row))
