"""`liaison convert`: discharge letters → FHIR transaction Bundles on the command line."""

from __future__ import annotations

import os
import sys
from contextlib import closing
from pathlib import Path

import orjson
import typer

from adapter.cli.convert_many import (
    Options,
    convert_here,
    convert_in_workers,
    invalid,
    open_directory,
    read_letter,
    worker_count,
)
from adapter.errors import RefusedLetter


def _letters(inputs: list[Path]) -> list[Path]:
    letters: list[Path] = []
    for item in inputs:
        if item.is_dir():
            letters.extend(sorted(p for p in item.glob("*.xml") if p.is_file()))
        else:
            letters.append(item)
    return letters


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
    jobs: int | None = typer.Option(None, "--jobs", min=1, help="with --out: letters converted "
                                    "at once, in worker processes (default: one per core; 1: "
                                    "in this process)"),
) -> None:
    """Convert discharge letters (CDA LDL-SES) to FHIR R4 transaction Bundles."""
    letters = _letters(inputs)
    if out is None:
        if len(letters) != 1:
            _fail("Give exactly one letter to print on stdout, or --out DIR for several.", 2)
        _convert_one_to_stdout(letters[0], use_directory, report, validate)
        return
    out.mkdir(parents=True, exist_ok=True)
    options = Options(out=out, report=report, validate=validate, use_directory=use_directory)
    failures = _convert_many(letters, options, jobs or os.cpu_count() or 1)
    if failures:
        raise typer.Exit(1)


def _convert_one_to_stdout(letter: Path, use_directory: bool, report: bool,
                           validate: bool) -> None:
    from adapter.mapping.engine import convert_letter
    from adapter.mapping.serialize import bundle_json

    try:
        conversion = convert_letter(read_letter(letter), directory=open_directory(use_directory),
                                    validate=validate)
    except RefusedLetter as refused:
        _fail(f"{letter}: refused: {refused.message}")
    sys.stdout.buffer.write(bundle_json(conversion.bundle, indent=True) + b"\n")
    sys.stdout.flush()
    if report:
        typer.echo(orjson.dumps(conversion.report, option=orjson.OPT_INDENT_2).decode(), err=True)
    if validate and invalid(conversion.report):
        _fail(f"{letter}: the bundle does not validate (see the report).", 3)


def _convert_many(letters: list[Path], options: Options, jobs: int) -> int:
    """Convert into `options.out`; print each failure on stderr in the letters' order, then
    the summary line; return the number of failures."""
    from rich.console import Console
    from rich.progress import Progress

    workers = worker_count(jobs, len(letters))
    outcomes = (convert_in_workers(letters, options, workers) if workers
                else convert_here(letters, options))
    failures = 0
    console = Console(stderr=True)
    # the bar only on a terminal: a log or a pipe gets the failures and the summary alone
    with closing(outcomes), Progress(console=console, disable=not console.is_terminal,
                                     transient=False) as progress:
        task = progress.add_task("converting", total=len(letters))
        for line in outcomes:
            if line is not None:
                failures += 1
                progress.console.print(line, style="red", highlight=False, markup=False,
                                       soft_wrap=True)
            progress.advance(task)
    typer.echo(f"{len(letters) - failures} of {len(letters)} letters converted into "
               f"{options.out}", err=True)
    return failures


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
