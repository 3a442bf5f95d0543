"""The `liaison` command line: one module of commands per part it drives, assembled here.

The command modules import what a command needs inside the command itself, so `liaison --help`
does not pay for the whole application."""

from __future__ import annotations

import typer

from adapter.cli import conformance, convert, coordination, directory, record, serve

app = typer.Typer(
    name="liaison",
    help="Hospital discharge letters (CDA LDL-SES) → FHIR care plans, care teams and messages.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs more than the rest
    pretty_exceptions_enable=False,
)
convert.register(app)  # convert
app.add_typer(directory.app, name="directory")  # directory import | search
record.register(app)  # token, pull
serve.register(app)  # serve, worker, outbox
conformance.register(app)  # validate, conformance run
coordination.register(app)  # consent, coordinator rules


@app.callback()
def _root() -> None:
    """Hospital discharge letters (CDA LDL-SES) → FHIR care plans, care teams and messages."""


@app.command()
def version() -> None:
    """Print liaison's version."""
    from adapter import __version__

    typer.echo(__version__)

