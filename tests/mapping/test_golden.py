"""Golden files: every fixture letter and official example gives exactly its reviewed output.

Regenerate after a deliberate mapping change with `python -m adapter.mapping.golden`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.mapping.golden import GOLDEN, golden_bytes, golden_inputs

INPUTS = golden_inputs()


def test_every_official_example_and_fixture_has_a_golden_file() -> None:
    names = {stem for _, stem in INPUTS}
    assert "official-LDL-SES_2022.01" in names
    assert "official-DOC_NON_STRUCTURE_CDA-R2-N1" in names
    assert {"ldl-ses-v1", "ldl-ses-v2", "n1-pdf-discharge"} <= names
    golden_stems = {p.name.split(".")[0] for p in GOLDEN.glob("*.json")}
    assert golden_stems == {stem.split(".")[0] for stem in names}


@pytest.mark.parametrize(("letter", "stem"), INPUTS, ids=[stem for _, stem in INPUTS])
def test_the_output_matches_the_golden_file(letter: Path, stem: str) -> None:
    suffix, content = golden_bytes(letter)
    golden = GOLDEN / f"{stem}{suffix}"
    assert golden.is_file(), f"no golden file {golden.name}: run python -m adapter.mapping.golden"
    assert content == golden.read_bytes(), f"{golden.name} differs"
