"""`python -m benchmarks [--quick] [--only NAME…]`: run every benchmark and print one table.

Each module of this package exposes `run(quick: bool) -> list[(benchmark, unit, result)]` and
generates its own data in a temporary folder, so the table is reproducible on any machine.
Each runs in a fresh Python process of its own: what one left in the process (a heap of
hundreds of MB for the garbage collector to walk, caches, threads) must not weigh on the next,
so a row of the full run is the row `--only` gives.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date

# Order of the table: the data flow (read → map → store → push / serve), the directory first
# (it is loaded before letters are mapped against it).
BENCHMARKS = (
    "directory_import", "convert", "convert_command", "conformance", "coordination", "ingest",
    "delivery", "instances", "mssante", "record_search", "pull", "readers", "growth",
    "medplum_push", "cli_start",
)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small data sets")
    parser.add_argument("--only", nargs="*", help="among: " + " ".join(BENCHMARKS))
    # one benchmark in this process, its rows written as JSON to FILE (how the table is made)
    parser.add_argument("--rows-to", type=str, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    if args.rows_to:
        found = [row for name in names for row in _run_here(name, args.quick)]
        with open(args.rows_to, "w", encoding="utf-8") as out:  # no file: the process died
            json.dump(found, out)
        return 0
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="liaison-bench-rows-") as folder:
        for name in names:
            rows.extend(_run_apart(name, args.quick, os.path.join(folder, f"{name}.json")))
    _print_table(rows)
    return 0


def _run_apart(name: str, quick: bool, rows_file: str) -> list[tuple[str, str, str]]:
    """The rows of benchmark `name`, run in a fresh process (its progress goes to stderr)."""
    argv = [sys.executable, "-m", "benchmarks", "--only", name, "--rows-to", rows_file]
    ended = subprocess.run(argv + (["--quick"] if quick else []), stdout=sys.stderr,
                           check=False)
    try:
        with open(rows_file, encoding="utf-8") as found:
            return [tuple(row) for row in json.load(found)]
    except (OSError, ValueError):
        return [(name, "error", f"its process ended with exit code {ended.returncode}")]


def _run_here(name: str, quick: bool) -> list[tuple[str, str, str]]:
    # a folder that will not go away (a file still being written) must not cost the rows
    with tempfile.TemporaryDirectory(prefix="liaison-bench-",
                                     ignore_cleanup_errors=True) as scratch:
        # Benchmarks never touch the user's data: everything lives in a throwaway data dir.
        os.environ["LIAISON_DATA_DIR"] = scratch
        os.environ.pop("LIAISON_DATABASE_URL", None)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as missing:
            if missing.name != f"benchmarks.{name}":
                raise
            return [(name, "-", "not available")]
        started = time.perf_counter()
        try:
            rows: list[tuple[str, str, str]] = module.run(quick=quick)
        except Exception as error:  # one failing benchmark must not hide the rest
            rows = [(name, "error", f"{type(error).__name__}: {error}"[:120])]
        print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        return rows


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    print(f"liaison benchmarks — {date.today().isoformat()} — {_machine()}")
    header = ("benchmark", "unit", "result")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(3)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = (str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
