"""Pushing mapped letters to Medplum (its FHIR router and in-memory repository, node, loopback):
the same transaction bundles liaison sends to any FHIR server, cut into the 8-entry transactions
Medplum accepts when conditional operations are present. Skipped where node or the npm packages
of tests/peers/medplum are missing."""

from __future__ import annotations

import sys
import time

from adapter.mapping import convert_letter
from adapter.push.targets import HttpTarget
from tests.support.letter_variants import letter_variant


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    import pytest

    from tests.support.medplum import MedplumPeer

    try:
        peer = MedplumPeer()
    except pytest.skip.Exception as skipped:
        return [("medplum push", "-", f"skipped: {skipped.msg}")]
    count = 5 if quick else 20
    bundles = [convert_letter(letter_variant(300_000 + n)).bundle for n in range(count)]
    resources = sum(len(bundle["entry"]) for bundle in bundles)
    peer.start()
    try:
        target = HttpTarget(peer.base_url, max_entries=8, timeout=120)
        started = time.perf_counter()
        for bundle in bundles:
            target.send(bundle)
        seconds = time.perf_counter() - started
        target.close()
    finally:
        peer.stop()
    label = f"medplum push: {count} letters ({resources} resources), 8-entry transactions"
    return [
        (label, "letters/s", f"{count / seconds:.1f}"),
        (label, "resources/s", f"{resources / seconds:.0f}"),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
