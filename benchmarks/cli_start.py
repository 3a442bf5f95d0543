"""Start-up of the `liaison` command: wall time of a fresh process, median of several runs.

Run through `python -m benchmarks --only cli_start` (which sets a throwaway data dir). A command
pays only for the parts it uses (`adapter/cli/` imports them inside each command).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

_COMMANDS = (
    ("liaison --help", ["--help"]),
    ("liaison token system", ["token", "system"]),
)


def _median_s(argv: list[str], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "adapter.cli", *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    repeat = 3 if quick else 7
    _median_s(["token", "system"], 1)  # the first creates the signing key: not a start-up
    return [(f"start-up: {label}", "s (median)", f"{_median_s(argv, repeat):.2f}")
            for label, argv in _COMMANDS]
