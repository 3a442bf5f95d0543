"""`liaison token …` (bearer tokens for the local record) and `liaison pull --since T`."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer

from adapter.errors import LiaisonError

token_app = typer.Typer(help="Print a bearer token for the local record (signed with the key "
                        "kept in the data directory).", no_args_is_help=True, rich_markup_mode=None)

_LIFETIME = typer.Option(12 * 3600, "--lifetime", help="validity in seconds")


def _fail(error: LiaisonError) -> None:
    typer.echo(f"error: {error.message}", err=True)
    raise typer.Exit(1)


def _print_token(kind: str, lifetime: int, **claims: object) -> None:
    from adapter.auth import issue_token

    try:
        typer.echo(issue_token(kind, lifetime=lifetime, **claims))
    except LiaisonError as error:
        _fail(error)


@token_app.command("hospital")
def hospital_token(
    organization: list[str] = typer.Option(
        None, "--organization",
        help="idNat_Struct of the hospital (repeated for a hospital group: each establishment)"),
    lifetime: int = _LIFETIME,
) -> None:
    """A hospital system: sends the letters of its establishments (their custodian), reads what
    its letters produced and the care team of those patients."""
    if not organization:
        typer.echo("note: without --organization this token can send no letter and read no "
                   "patient", err=True)
    first = organization[0] if organization else None
    _print_token("hospital", lifetime, organization=first,
                 organizations=organization[1:] or None)


@token_app.command("professional")
def professional_token(
    idnat: str = typer.Option(..., "--idnat", help="idNat_PS, e.g. 8XXXXXXXXXXX"),
    lifetime: int = _LIFETIME,
) -> None:
    """A community professional: reads the patients whose care team lists them."""
    _print_token("professional", lifetime, idnat=idnat)


@token_app.command("coordinator")
def coordinator_token(
    cpts: str = typer.Option(..., "--cpts", help="identifier of the CPTS"),
    lifetime: int = _LIFETIME,
) -> None:
    """A CPTS coordinator: reads the patients of its CPTS."""
    _print_token("coordinator", lifetime, cpts=cpts)


@token_app.command("system")
def system_token(lifetime: int = _LIFETIME) -> None:
    """liaison's own services: read and write everything."""
    _print_token("system", lifetime)


def pull(
    since: str = typer.Option(None, "--since",
                              help="first pull only: changes after this FHIR instant"),
    cursor: str | None = typer.Option(None, "--cursor",
                                      help="resume where a previous pull stopped"),
    state: Path = typer.Option(None, "--state", help="file keeping the cursor between pulls "
                               "(read if it exists, written after the pull)"),
    token: str = typer.Option(None, "--token", envvar="LIAISON_TOKEN",
                              help="the caller's bearer token"),
    idnat: str = typer.Option(None, "--idnat", help="pull as this professional (local record)"),
    base: str = typer.Option(None, "--base", help="FHIR base URL (default: the local record)"),
    resource_type: list[str] = typer.Option(None, "--type", help="resource types to pull"),
    output: Path = typer.Option(None, "--output", help="write the Bundle here (default stdout)"),
) -> None:
    """What changed for the caller since the last pull, each change once, as a FHIR history
    Bundle whose `resume` link holds the cursor of the next pull."""
    from adapter.auth import Principal, verify_token
    from adapter.record.pull import PULLED_TYPES, cursor_of, pull_http
    from adapter.record.pull import pull as pull_changes
    from adapter.record.repository import Repository

    types = tuple(resource_type) if resource_type else PULLED_TYPES
    if state is not None and state.exists() and not cursor:
        cursor = state.read_text(encoding="utf-8").strip() or None
    try:
        if base:
            bundle = pull_http(base, token, cursor=cursor, since=since, types=types)
        else:
            if token:
                principal = verify_token(token)
            elif idnat:
                principal = Principal(kind="professional", idnat=idnat, scopes=("user/*.rs",))
            else:
                typer.echo("error: say who is pulling: --token or --idnat", err=True)
                raise typer.Exit(2)
            bundle = pull_changes(Repository(), principal, cursor=cursor, since=since,
                                  types=types)
    except LiaisonError as error:
        _fail(error)
        return
    resume = cursor_of(bundle)
    if state is not None and resume:
        state.write_text(resume + "\n", encoding="utf-8")
    payload = orjson.dumps(bundle, option=orjson.OPT_INDENT_2)
    if output:
        output.write_bytes(payload)
        typer.echo(f"{bundle['total']} changes written to {output}", err=True)
    else:
        sys.stdout.write(payload.decode() + "\n")
    typer.echo(f"resume cursor: {resume}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command("pull")(pull)
