"""`python -m benchmarks [--quick] [--only NAME…]`: run every benchmark and print one table.

Each module of this package exposes `run(quick: bool) -> list[(benchmark, unit, result)]` and
generates its own data in a temporary folder, so the table is reproducible on any machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
import time
from datetime import date

# Order of the table: the data flow (read → map → store → push / serve), the directory first
# (it is loaded before letters are mapped against it, and its peak memory is then that of the
# import alone, not of a process that already ran the other benchmarks).
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
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as scratch:
        # Benchmarks never touch the user's data: everything lives in a throwaway data dir.
        os.environ["LIAISON_DATA_DIR"] = scratch
        os.environ.pop("LIAISON_DATABASE_URL", None)
        for name in names:
            try:
                module = importlib.import_module(f"benchmarks.{name}")
            except ModuleNotFoundError as missing:
                if missing.name != f"benchmarks.{name}":
                    raise
                rows.append((name, "-", "not available"))
                continue
            started = time.perf_counter()
            try:
                rows.extend(module.run(quick=args.quick))
            except Exception as error:  # one failing benchmark must not hide the rest
                rows.append((name, "error", f"{type(error).__name__}: {error}"[:120]))
            print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    _print_table(rows)
    return 0


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
