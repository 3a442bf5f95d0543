"""Importing a national-scale PS_LibreAcces_Personne_activite extract into SQLite.

Generates a synthetic extract (2,000,000 lines; quick: 100,000) in a temporary folder, then
imports it in a child process so the peak resident memory reported is the importer's own.
Then re-imports the same file (nothing to write) and a copy with one line in ten changed (exactly
those are updated), to show a re-import is at least as fast as the first one; in full mode these
two use a 100,000-line extract of their own, as 2,000,000 lines three times would not fit in the
benchmark's minute.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FULL_LINES = 2_000_000
QUICK_LINES = 100_000


def _pss_kib(pid: int) -> int:
    """Proportional set size of a process: shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pss_kib(root: int) -> int:
    """Summed PSS of a process and its children (the importer and its writer process): the
    memory the import really occupies. Each process's RSS counts the pages they share (libraries)
    in full, so a sum of RSS would overstate it."""
    pids = [root]
    for task in Path(f"/proc/{root}/task").glob("*/children"):
        try:
            pids += [int(pid) for pid in task.read_text().split()]
        except OSError:
            continue
    return sum(_pss_kib(pid) for pid in pids)


def _child(extract: str, database: str, repeat: int) -> None:
    """Runs in the child process: import `extract` `repeat` times, print one JSON per import."""
    from adapter.directory.importer import import_path
    from adapter.store.db import engine_for, init_db

    engine = engine_for(f"sqlite:///{database}")
    init_db(engine)
    for path in extract.split(os.pathsep) * repeat:
        summary = import_path(engine, Path(path), kind="national")
        largest = max(
            resource.getrusage(who).ru_maxrss
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        print(
            json.dumps(
                {
                    "lines": summary.read,
                    "seconds": summary.seconds,
                    "updated": summary.updated,
                    "largest_rss_mib": largest / 1024,
                }
            ),
            flush=True,
        )


def _import(extracts: list[Path], database: Path) -> list[dict[str, float]]:
    """Import `extracts` in turn in a child process; each result also carries the peak PSS of
    the child and its writer process so far, sampled from here."""
    command = [
        sys.executable, "-m", "benchmarks.directory_import", "--child",
        os.pathsep.join(str(path) for path in extracts), str(database), "1",
    ]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            command, cwd=root, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert child.stdout is not None
        peak_kib = 0
        results: list[dict[str, float]] = []
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_kib
            while not done.is_set():
                peak_kib = max(peak_kib, _tree_pss_kib(child.pid))
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for line in child.stdout:
            if line.startswith("{"):
                results.append(json.loads(line) | {"peak_mib": peak_kib / 1024})
        child.wait()
        done.set()
        sampler.join()
        if child.returncode != 0:
            errors.seek(0)
            last = (errors.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the import child process failed: {last}")
    return results


def _generate(folder: Path, name: str, lines: int) -> tuple[Path, Path]:
    """An extract and the same extract with one line in ten changed, written in one pass."""
    from adapter.directory.synthetic import write_national_extract

    extract = folder / f"PS_LibreAcces_Personne_activite_{name}.txt"
    changed = folder / f"PS_LibreAcces_Personne_activite_{name}_changed.txt"
    write_national_extract(extract, lines, seed=11, change_every=10, changed_copy=changed)
    return extract, changed


def _rate(result: dict[str, float]) -> str:
    return f"{result['lines'] / result['seconds']:,.0f}"


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    first_lines = QUICK_LINES if quick else FULL_LINES
    big = f"{first_lines:,} lines"
    small = f"{QUICK_LINES:,} lines"
    with tempfile.TemporaryDirectory(prefix="liaison-directory-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        if quick:  # one database: first import, the same file again, then one line in ten changed
            extract, changed = _generate(folder, "bench", first_lines)
            generated = time.perf_counter() - started
            first, again, changed_run = _import([extract, extract, changed], folder / "quick.db")
        else:
            # The 2,000,000-line first import runs alone in its child, so the peak memory is its
            # own; the re-imports use 100,000 lines to keep the whole benchmark under a minute.
            from adapter.directory.synthetic import write_national_extract

            extract = folder / "PS_LibreAcces_Personne_activite_bench.txt"
            write_national_extract(extract, first_lines, seed=11, workers=2)
            generated = time.perf_counter() - started
            (first,) = _import([extract], folder / "national.db")
            extract.unlink()
            extract, changed = _generate(folder, "reimport", QUICK_LINES)
            _, again, changed_run = _import([extract, extract, changed], folder / "reimport.db")
    return [
        (f"directory import, first ({big}, SQLite)", "lines/s", _rate(first)),
        (f"directory import, first ({big})", "s", f"{first['seconds']:.1f}"),
        (
            f"directory import, peak memory ({big}, PSS of both processes)",
            "MiB",
            f"{first['peak_mib']:,.0f}",
        ),
        (
            f"directory import, peak RSS of the larger process ({big})",
            "MiB",
            f"{first['largest_rss_mib']:,.0f}",
        ),
        (f"directory re-import, same file ({small})", "lines/s", _rate(again)),
        (f"directory re-import, 10% changed ({small})", "lines/s", _rate(changed_run)),
        (
            f"directory re-import, 10% changed ({small})",
            "lines updated",
            f"{changed_run['updated']:,}",
        ),
        (f"directory extract generation ({big})", "s", f"{generated:.1f}"),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        for row in run(quick="--quick" in sys.argv):
            print(" | ".join(row))
