"""Conformance: CDA validation (cold compile, warm per letter), profile checks, a runner pass.

Run through `python -m benchmarks --only conformance` (which sets a throwaway data dir).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from adapter.config import get_settings
from adapter.conformance import schematron
from adapter.conformance.cda_validation import cache_dir, validate_letter
from adapter.conformance.profiles import check_bundle

_EXAMPLE = "LDL-SES_2022.01.xml"


def _median_ms(action, repeat: int) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    letter = (get_settings().cisis_dir / _EXAMPLE).read_bytes()
    rows: list[tuple[str, str, str]] = []

    shutil.rmtree(cache_dir(), ignore_errors=True)  # cold: generate + compile every schematron
    schematron._executables.clear()
    started = time.perf_counter()
    validate_letter(letter)
    rows.append(("validate LDL-SES, cold (compile 4 schematrons)", "s",
                 f"{time.perf_counter() - started:.2f}"))

    schematron._executables.clear()  # restart: stylesheets come from the disk cache
    started = time.perf_counter()
    validate_letter(letter)
    rows.append(("validate LDL-SES, restart (disk cache)", "s",
                 f"{time.perf_counter() - started:.2f}"))

    repeat = 5 if quick else 30
    rows.append(("validate LDL-SES, warm (XSD + 4 schematrons)", "ms/letter",
                 f"{_median_ms(lambda: validate_letter(letter), repeat):.0f}"))

    ldl_ses_only = get_settings().cisis_dir / "schematrons" / "CI-SIS_LDL-SES_2022.01.sch"
    executable = schematron.compiled(ldl_ses_only, Path(get_settings().data_dir) / "bench-cache")
    document = schematron.parse_for_saxon(letter.decode("utf-8"))
    rows.append(("CI-SIS_LDL-SES schematron alone, warm", "ms/letter",
                 f"{_median_ms(lambda: schematron.run(executable, document), repeat):.1f}"))

    try:
        from adapter.mapping import convert_letter
    except ImportError:
        return rows
    bundle = convert_letter(letter).bundle
    rows.append(("profile check of the LDL-SES bundle", "ms/bundle",
                 f"{_median_ms(lambda: check_bundle(bundle), repeat * 3):.1f}"))
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(" | ".join(row))
