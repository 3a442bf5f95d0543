"""Regenerate the golden files: `python -m adapter.mapping.golden` (from the repository root).

One golden bundle per fixture letter (`fixtures/letters/*.xml` → `fixtures/golden/<name>.json`),
plus the official CI-SIS examples beside the repository (`../shared/cda-examples/`, as
`official-<name>.json`). Inputs liaison refuses get their OperationOutcome instead
(`<name>.refused.json`). Review the diff like code before committing it.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from adapter.errors import RefusedLetter
from adapter.mapping.engine import convert_letter
from adapter.mapping.serialize import bundle_json

REPO = Path(__file__).resolve().parents[2]
LETTERS = REPO / "fixtures" / "letters"
GOLDEN = REPO / "fixtures" / "golden"
OFFICIAL = REPO.parent / "shared" / "cda-examples"
OFFICIAL_EXAMPLES = ("LDL-SES_2022.01.xml", "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
                     "LDL-EES_2022.01.xml")


def golden_inputs() -> list[tuple[Path, str]]:
    """(letter, golden stem) pairs: own fixtures, refused fixtures, official examples."""
    inputs = [(p, p.stem) for p in sorted(LETTERS.glob("*.xml"))]
    inputs += [(p, f"refused-{p.stem}") for p in sorted((LETTERS / "refused").iterdir())]
    inputs += [(OFFICIAL / name, f"official-{Path(name).stem}") for name in OFFICIAL_EXAMPLES
               if (OFFICIAL / name).is_file()]
    return inputs


def golden_bytes(letter: Path) -> tuple[str, bytes]:
    """(suffix, content) of the golden file for `letter`."""
    try:
        conversion = convert_letter(letter.read_bytes())
    except RefusedLetter as refused:
        outcome = refused.operation_outcome()
        return ".refused.json", orjson.dumps(outcome, option=orjson.OPT_INDENT_2
                                             | orjson.OPT_SORT_KEYS) + b"\n"
    return ".json", bundle_json(conversion.bundle, indent=True) + b"\n"


def regenerate() -> list[Path]:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    written = []
    for letter, stem in golden_inputs():
        suffix, content = golden_bytes(letter)
        target = GOLDEN / f"{stem}{suffix}"
        target.write_bytes(content)
        written.append(target)
    return written


if __name__ == "__main__":
    for path in regenerate():
        print(path.relative_to(REPO))
