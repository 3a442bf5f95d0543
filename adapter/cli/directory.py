"""`liaison directory import PATH` and `liaison directory search …`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from adapter.errors import LiaisonError

if TYPE_CHECKING:
    from adapter.directory.writer import ImportSummary, Rejection

app = typer.Typer(
    help="Professional directories: import national, MSSanté, FHIR or local CPTS files; search.",
    no_args_is_help=True,
    add_completion=False, rich_markup_mode=None)
MAX_PRINTED_REJECTIONS = 50
EXIT_FAILED = 1
EXIT_SOME_REJECTED = 2


def _summary_lines(summary: ImportSummary) -> list[str]:
    rate = f", {summary.read / summary.seconds:,.0f} lines/s" if summary.seconds > 0 else ""
    lines = [
        f"{summary.source_name} ({summary.kind}): read {summary.read}, "
        f"inserted {summary.inserted}, "
        f"updated {summary.updated}, unchanged {summary.unchanged}, rejected {summary.rejected}, "
        f"deactivated {summary.deactivated} — {summary.seconds:.1f} s{rate}"
    ]
    for reason, count in summary.reasons.most_common():
        lines.append(f"  rejected {count}: {reason}")
    lines.extend(f"  note: {note}" for note in summary.notes)
    return lines


@app.command("import")
def import_command(
    path: Path = typer.Argument(..., help="extract (.txt or .zip), FHIR Bundle (.json) or CSV"),
    kind: str | None = typer.Option(
        None,
        "--format",
        help="national | mssante | fhir | local (default: recognised from the file)",
    ),
    partial: bool = typer.Option(
        False, "--partial", help="an excerpt: do not mark professionals absent from it inactive"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Import a directory file; re-importing updates in place, absent professionals become inactive.

    Rejected lines are reported one by one on stderr with their line number, the rest is imported;
    the exit status is 2 when some lines were rejected, 1 when the file could not be read at all."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from adapter.directory.importer import import_path
    from adapter.store.db import get_engine

    errors = Console(stderr=True)
    printed = 0

    def on_reject(rejection: Rejection) -> None:
        nonlocal printed
        printed += 1
        if printed <= MAX_PRINTED_REJECTIONS:
            errors.print(
                f"{path.name}: line {rejection.line}: {rejection.reason}",
                markup=False,
                soft_wrap=True,
            )
        elif printed == MAX_PRINTED_REJECTIONS + 1:
            errors.print(
                "… further rejected lines are counted in the summary", markup=False, soft_wrap=True
            )

    show = not quiet and errors.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=not show,
        transient=True,
    )
    task = progress.add_task("reading", total=None)

    def on_start(kind_found: str, name: str, size: int | None) -> None:
        progress.update(task, description=f"{name} ({kind_found})", total=size)

    try:
        with progress:
            summary = import_path(
                get_engine(),
                path,
                kind=kind,
                on_reject=on_reject,
                on_start=on_start,
                progress=lambda done: progress.update(task, completed=done),
                full=not partial,
            )
    except LiaisonError as error:
        errors.print(f"liaison directory import: {error.message}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    for line in _summary_lines(summary):
        typer.echo(line)
    if summary.kind == "local":  # local lists declare coordinators: they join existing teams
        _coordinators_catch_up()
    if summary.rejected:
        raise typer.Exit(EXIT_SOME_REJECTED)


def _coordinators_catch_up() -> None:
    from adapter.coordination.catch_up import catch_up
    from adapter.store.db import get_engine

    try:
        result = catch_up(get_engine())
    except LiaisonError as error:
        typer.echo(f"coordinators: not caught up ({error.message})", err=True)
        return
    typer.echo(f"coordinators: {result.joined} of {result.teams} active care teams joined")


@app.command("search")
def search_command(
    identifier: str | None = typer.Option(
        None, "--identifier", "-i", help="idNat_PS, RPPS, ADELI, FINESS, SIRET or system|value"
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="words of the name"),
    profession: str | None = typer.Option(None, "--profession", help="TRE_G15 code or label"),
    specialty: str | None = typer.Option(None, "--specialty", help="code (SM54) or label"),
    postcode: str | None = typer.Option(None, "--postcode", help="postcode, '75*' or département"),
    role: str | None = typer.Option(None, "--role", help="local CPTS role, e.g. coordinator"),
    cpts: str | None = typer.Option(None, "--cpts", help="local directory (cpts_id)"),
    limit: int = typer.Option(50, "--limit", min=1, max=200),
    offset: int = typer.Option(0, "--offset", min=0),
    include_inactive: bool = typer.Option(False, "--include-inactive"),
    available_within: str | None = typer.Option(
        None, "--available-within", help="living directory: can take a patient within, e.g. 24h"
    ),
    skill: list[str] = typer.Option([], "--skill", help="living directory: e.g. wound-care"),
) -> None:
    """One line per matching activity: name | profession | place | phone | MSSanté.

    With --available-within or --skill, asks the living directory (availability and skills that
    professionals or coordinators recorded) instead: who can take the patient."""
    if available_within or skill:
        from adapter.cli.coordination import search_availability

        search_availability(available_within, skill, postcode, as_json=False)
        return
    from adapter.directory.search import Criteria, describe, search_roles
    from adapter.store.db import get_engine

    criteria = Criteria(
        identifier=identifier,
        name=name,
        profession=profession,
        specialty=specialty,
        postcode=postcode,
        role=role,
        cpts_id=cpts,
        include_inactive=include_inactive,
    )
    if criteria.is_empty():
        typer.echo("liaison directory search: give at least one criterion (see --help)", err=True)
        raise typer.Exit(EXIT_FAILED)
    try:
        page = search_roles(get_engine(), criteria, limit=limit, offset=offset)
    except LiaisonError as error:
        typer.echo(f"liaison directory search: {error.message}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if not page.items:
        typer.echo("no professional matches", err=True)
        raise typer.Exit(EXIT_FAILED)
    for match in page.items:
        typer.echo(describe(match))
    if page.total > offset + len(page.items):
        shown = f"{offset + 1}-{offset + len(page.items)}"
        print(
            f"({shown} of {page.total}; --offset {offset + len(page.items)} for more)",
            file=sys.stderr,
        )
