"""`liaison convert DIR --out DIR --validate` as a whole process: letters per second from the
command's start to its end (interpreter, imports, workers' start-up, conversion, files written).

The letters are those of the in-process `convert` benchmark (distinct copies of the official
example, `benchmarks.convert.LetterFactory`), written to a folder first. Each row is the median
of a few runs of a fresh `python -m adapter.cli` process; the CPU seconds are the command's and
its workers' (user + system, from `wait4`). One run converts a single letter: the fixed cost
every run pays. The files of `--jobs 1` and `--jobs 2` are compared byte for byte.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.convert import LetterFactory, template_letter

_FIRST = 3_000_000  # letter numbers apart from the in-process benchmark's


def _run(letters: Path, out: Path, jobs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its workers) of one fresh process."""
    argv = [sys.executable, "-m", "adapter.cli", "convert", str(letters), "--out", str(out),
            "--validate", "--jobs", str(jobs)]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # reaped here, with its children's CPU
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"liaison convert failed: {errors.decode()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime


def _median_run(letters: Path, out: Path, jobs: int, repeat: int) -> tuple[float, float]:
    runs = [_run(letters, out, jobs) for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def _same_files(first: Path, second: Path) -> None:
    names = sorted(p.name for p in first.iterdir())
    if names != sorted(p.name for p in second.iterdir()) or any(
            (first / n).read_bytes() != (second / n).read_bytes() for n in names):
        raise RuntimeError("--jobs 2 wrote other files than --jobs 1")


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    count = 200 if quick else 500
    repeat = 1 if quick else 3
    factory = LetterFactory(template_letter())
    with tempfile.TemporaryDirectory(prefix="liaison-convert-") as scratch:
        folder, single = Path(scratch) / "letters", Path(scratch) / "one"
        folder.mkdir()
        single.mkdir()
        for n in range(count):
            (folder / f"letter-{n:05d}.xml").write_bytes(factory.letter(_FIRST + n))
        (single / "letter.xml").write_bytes(factory.letter(_FIRST - 1))
        _run(single, Path(scratch) / "warm-up", 2)  # bytecode compiled, files in the page cache
        rows = []
        fixed, fixed_cpu = _median_run(single, Path(scratch) / "out-one", 1, repeat)
        rows.append(("liaison convert --validate, one letter (start-up + first letter)",
                     "s (wall, median)", f"{fixed:.2f} (CPU: {fixed_cpu:.2f})"))
        for jobs in (1, 2):
            wall, cpu = _median_run(folder, Path(scratch) / f"out-{jobs}", jobs, repeat)
            rows.append((f"liaison convert --validate --jobs {jobs}, {count} letters, "
                         "whole process", "letters/s (wall, median)",
                         f"{count / wall:.0f} ({wall:.2f} s; CPU {cpu:.2f} s)"))
        _same_files(Path(scratch) / "out-1", Path(scratch) / "out-2")
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(" | ".join(row))
