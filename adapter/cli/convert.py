"""`liaison convert`: discharge letters → FHIR transaction Bundles on the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer

from adapter.errors import RefusedLetter

if TYPE_CHECKING:
    from adapter.mapping.directory_port import DirectoryLookup


def _letters(inputs: list[Path]) -> list[Path]:
    letters: list[Path] = []
    for item in inputs:
        if item.is_dir():
            letters.extend(sorted(p for p in item.glob("*.xml") if p.is_file()))
        else:
            letters.append(item)
    return letters


def _directory(use_directory: bool) -> DirectoryLookup | None:
    if not use_directory:
        return None
    from adapter.directory.lookup import SqlDirectory
    from adapter.store.db import get_engine

    return SqlDirectory(get_engine())


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def convert(
    inputs: list[Path] = typer.Argument(..., help="letters (.xml) or folders of letters"),
    out: Path | None = typer.Option(None, "--out", help="write <name>.json bundles in DIR"),
    report: bool = typer.Option(False, "--report", help="also give the unmapped-items report "
                                "(stderr, or <name>.report.json with --out)"),
    validate: bool = typer.Option(False, "--validate", help="check every resource with "
                                  "fhir.resources (R4B); invalid → non-zero exit"),
    use_directory: bool = typer.Option(False, "--directory", help="enrich professionals from "
                                       "the imported directory"),
) -> None:
    """Convert discharge letters (CDA LDL-SES) to FHIR R4 transaction Bundles."""
    letters = _letters(inputs)
    directory = _directory(use_directory)
    if out is None:
        if len(letters) != 1:
            _fail("Give exactly one letter to print on stdout, or --out DIR for several.", 2)
        _convert_one_to_stdout(letters[0], directory, report, validate)
        return
    out.mkdir(parents=True, exist_ok=True)
    failures = _convert_many(letters, out, directory, report, validate)
    if failures:
        raise typer.Exit(1)


def _read(letter: Path) -> bytes:
    try:
        return letter.read_bytes()
    except OSError as error:
        raise RefusedLetter(f"cannot read the file ({error.strerror}).") from None


def _convert_one_to_stdout(letter: Path, directory: DirectoryLookup | None, report: bool,
                           validate: bool) -> None:
    from adapter.mapping.engine import convert_letter
    from adapter.mapping.serialize import bundle_json

    try:
        conversion = convert_letter(_read(letter), directory=directory, validate=validate)
    except RefusedLetter as refused:
        _fail(f"{letter}: refused: {refused.message}")
    sys.stdout.buffer.write(bundle_json(conversion.bundle, indent=True) + b"\n")
    sys.stdout.flush()
    if report:
        typer.echo(orjson.dumps(conversion.report, option=orjson.OPT_INDENT_2).decode(), err=True)
    if validate and _invalid(conversion.report):
        _fail(f"{letter}: the bundle does not validate (see the report).", 3)


def _invalid(report: dict) -> bool:
    return any(issue.get("code") == "invalid" for issue in report.get("issue", []))


def _convert_many(letters: list[Path], out: Path, directory: DirectoryLookup | None,
                  report: bool, validate: bool) -> int:
    from rich.progress import Progress

    from adapter.mapping.engine import convert_letter
    from adapter.mapping.serialize import bundle_json

    failures = 0
    with Progress(transient=False) as progress:
        task = progress.add_task("converting", total=len(letters))
        for letter in letters:
            try:
                conversion = convert_letter(_read(letter), directory=directory,
                                            validate=validate)
            except RefusedLetter as refused:
                failures += 1
                progress.console.print(f"{letter}: refused: {refused.message}", style="red",
                                       highlight=False, markup=False, soft_wrap=True)
                progress.advance(task)
                continue
            (out / f"{letter.stem}.json").write_bytes(bundle_json(conversion.bundle, indent=True))
            if report:
                (out / f"{letter.stem}.report.json").write_bytes(
                    orjson.dumps(conversion.report, option=orjson.OPT_INDENT_2))
            if validate and _invalid(conversion.report):
                failures += 1
                progress.console.print(f"{letter}: the bundle does not validate.", style="red",
                                       highlight=False, markup=False, soft_wrap=True)
            progress.advance(task)
    typer.echo(f"{len(letters) - failures} of {len(letters)} letters converted into {out}",
               err=True)
    return failures


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
