"""The `liaison` command line. Each part contributes its own commands from its own module;
this file only assembles them, so commands stay next to the code they drive."""

from __future__ import annotations

import typer

from adapter.parts import optional

app = typer.Typer(
    name="liaison",
    help="Hospital discharge letters (CDA LDL-SES) → FHIR care plans, care teams and messages.",
    no_args_is_help=True,
    add_completion=False,
)

# module → how it is mounted: a name mounts its Typer `app` as a sub-command group,
# None registers its `register(app)` top-level commands.
_COMMAND_MODULES: tuple[tuple[str, str | None], ...] = (
    ("adapter.mapping.commands", None),  # convert
    ("adapter.directory.commands", "directory"),  # directory import | search
    ("adapter.record.commands", None),  # token, pull
    ("adapter.api.commands", None),  # serve, worker, outbox
    ("adapter.conformance.commands", None),  # validate, conformance run
    ("adapter.coordination.commands", None),  # consent, coordinator rules
)


def _mount() -> None:
    for module_name, group in _COMMAND_MODULES:
        module = optional(module_name)
        if module is None:
            continue
        if group is None:
            module.register(app)
        else:
            app.add_typer(module.app, name=group)


@app.callback()
def _root() -> None:
    """Hospital discharge letters (CDA LDL-SES) → FHIR care plans, care teams and messages."""


@app.command()
def version() -> None:
    """Print liaison's version."""
    from adapter import __version__

    typer.echo(__version__)


_mount()

if __name__ == "__main__":
    app()
