"""Conversion speed: letters per second, with and without FHIR validation.

`distinct` letters differ in their patient and document identifiers (as a real stream does), so
per-letter resources are new to the validation cache every time; `repeated` converts the same
letters again (shared reference data and identical resources are found in the cache).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from adapter.mapping import convert_letter
from adapter.mapping.validation import _problems_of, _problems_of_exact

LETTERS = Path(__file__).resolve().parents[1] / "fixtures" / "letters"
OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "cda-examples" / "LDL-SES_2022.01.xml"


def _samples() -> list[bytes]:
    samples = [p.read_bytes() for p in sorted(LETTERS.glob("ldl-ses-*.xml"))]
    if OFFICIAL.is_file():
        samples.append(OFFICIAL.read_bytes())
    return samples


def _distinct(samples: list[bytes], count: int) -> list[bytes]:
    """`count` letters made distinct by their document id and patient INS/IPP."""
    letters = []
    for number in range(count):
        letter = samples[number % len(samples)]
        tag = f"{number:06d}".encode()
        letter = letter.replace(b'extension="LDL-2025-', b'extension="B' + tag + b"-")
        letter = letter.replace(b"254076926612345", b"254076926" + tag)
        letter = letter.replace(b"IPP000", b"IPP" + tag)
        letter = letter.replace(b"1.2.250.1.213.1.1.1.29.2022.1", b"1.2.250.1.213.9." + tag)
        letters.append(letter)
    return letters


def _rate(letters: list[bytes], convert: Callable[[bytes], object]) -> float:
    # CPU time of this process: the machine is shared, wall time would measure the neighbours
    started = time.process_time()
    for letter in letters:
        convert(letter)
    return len(letters) / (time.process_time() - started)


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    count = 120 if quick else 1200
    samples = _samples()
    letters = _distinct(samples, count)
    convert_letter(samples[0])  # load the mapping knowledge once
    plain = _rate(letters, lambda x: convert_letter(x))
    _problems_of.cache_clear()
    _problems_of_exact.cache_clear()
    validated_distinct = _rate(letters, lambda x: convert_letter(x, validate=True))
    validated_repeated = _rate(letters, lambda x: convert_letter(x, validate=True))
    return [
        ("convert LDL-SES, no validation", "letters/s (CPU)", f"{plain:.0f}"),
        ("convert LDL-SES + validation, distinct letters", "letters/s (CPU)",
         f"{validated_distinct:.0f}"),
        ("convert LDL-SES + validation, repeated letters", "letters/s (CPU)",
         f"{validated_repeated:.0f}"),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(" | ".join(row))
