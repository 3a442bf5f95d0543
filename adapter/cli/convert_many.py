"""`liaison convert DIR… --out DIR`: letters → bundle files in a folder.

One letter's work is `convert_to_files`: it writes the files and returns the line to print when
the letter failed, so the command prints nothing but those lines and its summary.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from adapter.errors import RefusedLetter

if TYPE_CHECKING:
    from adapter.mapping.directory_port import DirectoryLookup


@dataclass(frozen=True)
class Options:
    """How every letter of one run is converted, and where its files go."""

    out: Path
    report: bool
    validate: bool
    use_directory: bool


def read_letter(letter: Path) -> bytes:
    try:
        return letter.read_bytes()
    except OSError as error:
        raise RefusedLetter(f"cannot read the file ({error.strerror}).") from None


def invalid(report: dict[str, Any]) -> bool:
    return any(issue.get("code") == "invalid" for issue in report.get("issue", []))


def open_directory(use_directory: bool) -> DirectoryLookup | None:
    if not use_directory:
        return None
    from adapter.directory.lookup import SqlDirectory
    from adapter.store.db import get_engine

    return SqlDirectory(get_engine())


def convert_to_files(letter: Path, options: Options, directory: DirectoryLookup | None
                     ) -> str | None:
    """Write `<stem>.json` (and `<stem>.report.json`) into `options.out`; return the line
    saying why the letter failed, or None."""
    from adapter.mapping.engine import convert_letter
    from adapter.mapping.serialize import bundle_json

    try:
        conversion = convert_letter(read_letter(letter), directory=directory,
                                    validate=options.validate)
    except RefusedLetter as refused:
        return f"{letter}: refused: {refused.message}"
    except Exception as error:  # a bug met by one letter: the others are still converted
        message = " ".join(str(error).split())
        return f"{letter}: internal error ({type(error).__name__}: {message})."
    (options.out / f"{letter.stem}.json").write_bytes(bundle_json(conversion.bundle, indent=True))
    if options.report:
        (options.out / f"{letter.stem}.report.json").write_bytes(
            orjson.dumps(conversion.report, option=orjson.OPT_INDENT_2))
    if options.validate and invalid(conversion.report):
        return f"{letter}: the bundle does not validate."
    return None


Outcomes = Generator[str | None, None, None]  # a failure line, or None, for each letter


def convert_here(letters: list[Path], options: Options) -> Outcomes:
    """Each letter's failure line (or None), in order, converted in this process."""
    directory = open_directory(options.use_directory)
    for letter in letters:
        yield convert_to_files(letter, options, directory)
