"""`liaison consent oppose|withdraw|show --ins …`, `liaison availability set|import|search`,
`liaison subscriptions list`, `liaison coordinators --postcode …`."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from adapter.errors import LiaisonError

consent_app = typer.Typer(
    help="A patient's opposition to sharing (FHIR Consent).", no_args_is_help=True,
    rich_markup_mode=None)
availability_app = typer.Typer(
    help="The living directory: availability and skills of professionals.", no_args_is_help=True,
    rich_markup_mode=None)
subscriptions_app = typer.Typer(help="FHIR rest-hook Subscriptions.", no_args_is_help=True,
                                rich_markup_mode=None)
_SYSTEM = typer.Option(None, help="identifier system (default: INS-NIR; the test INS is …1.4.10)")


def _fail(message: str) -> None:
    typer.echo(f"liaison: {message}", err=True)
    raise typer.Exit(1)


def _patient(ins: str, system: str | None) -> tuple[str, str]:
    from adapter.national_ids import ins_systems

    if not ins.strip():
        _fail("--ins needs the patient's INS")
    return system or ins_systems()[0], ins.strip()


def _record(decision: str, ins: str, system: str | None, note: str | None) -> None:
    from adapter.coordination.consent import register
    from adapter.store.db import get_engine

    try:
        consent = register(get_engine(), _patient(ins, system), decision, recorded_by="cli",
                           source="cli", note=note)
    except LiaisonError as error:
        _fail(error.message)
    typer.echo(
        f"{'opposition recorded' if decision == 'oppose' else 'opposition withdrawn'}: "
        f"Consent {consent['status']} (queued for the record)"
    )


@consent_app.command("oppose")
def oppose(
    ins: str = typer.Option(..., "--ins", help="the patient's INS (matricule INS)"),
    system: str | None = _SYSTEM,
    note: str | None = typer.Option(None, help="how the patient expressed it"),
) -> None:
    """Record that the patient opposes sharing: only the letter's named recipients get it."""
    _record("oppose", ins, system, note)


@consent_app.command("withdraw")
def withdraw(
    ins: str = typer.Option(..., "--ins", help="the patient's INS (matricule INS)"),
    system: str | None = _SYSTEM,
    note: str | None = typer.Option(None),
) -> None:
    """Withdraw the patient's opposition: sharing follows the usual rules again."""
    _record("withdraw", ins, system, note)


@consent_app.command("show")
def show(ins: str = typer.Option(..., "--ins"), system: str | None = _SYSTEM) -> None:
    """Print the decision in force for a patient."""
    from sqlmodel import Session

    from adapter.coordination.consent import current_decision
    from adapter.store.db import get_engine

    with Session(get_engine()) as session:
        decision = current_decision(session, [_patient(ins, system)])
    typer.echo(
        "no decision recorded (sharing allowed)"
        if decision is None
        else f"{decision.decision} since {decision.recorded_at.isoformat()}"
    )


@availability_app.command("set")
def set_availability(
    idnat: str = typer.Option(..., help="idNat_PS of the professional"),
    within: str | None = typer.Option(None, help="can start within, e.g. 24h or 2d"),
    skill: list[str] = typer.Option([], help="a skill code (repeat): wound-care, picc-line…"),
    postcodes: str = typer.Option("", help="area served, e.g. '75005-75015 92100'"),
    accepts_new_patients: bool | None = typer.Option(None, "--accepts/--full"),
    home_visits: bool | None = typer.Option(None, "--home-visits/--no-home-visits"),
) -> None:
    """Record what one professional can take on."""
    from adapter.coordination.living_directory import AvailabilityUpdate, save
    from adapter.store.db import get_engine, session_scope

    try:
        update = AvailabilityUpdate.from_json(
            {
                "idnat": idnat,
                "available_within": within,
                "skills": skill,
                "postcodes": postcodes,
                "accepts_new_patients": accepts_new_patients,
                "home_visits": home_visits,
            }
        )
        with session_scope(get_engine()) as session:
            save(session, update, "cli")
    except LiaisonError as error:
        _fail(error.message)
    typer.echo(f"availability of {idnat} saved")


@availability_app.command("import")
def import_availability(path: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Import availabilities from a CSV (idnat_ps, accepts_new_patients, home_visits,
    available_within, skills, postcodes)."""
    from adapter.coordination.living_directory import import_csv
    from adapter.store.db import get_engine, session_scope

    try:
        with session_scope(get_engine()) as session:
            saved, problems = import_csv(session, path.read_text(encoding="utf-8-sig"), "cli")
    except LiaisonError as error:
        _fail(error.message)
    for problem in problems:
        typer.echo(f"liaison: {problem}", err=True)
    typer.echo(f"{saved} availability line(s) imported, {len(problems)} rejected")
    if problems:
        raise typer.Exit(2)


@availability_app.command("search")
def search_availability(
    available_within: str | None = typer.Option(None, "--available-within", help="e.g. 24h"),
    skill: list[str] = typer.Option([], "--skill"),
    postcode: str | None = typer.Option(None, "--postcode"),
    as_json: bool = typer.Option(False, "--json", help="print FHIR PractitionerRole JSON"),
) -> None:
    """Who can take the patient: by delay after discharge, skills and postcode."""
    from adapter.coordination.living_directory import parse_delay, search
    from adapter.store.db import get_engine

    try:
        roles = search(
            get_engine(),
            available_within_hours=parse_delay(available_within),
            skills=tuple(skill),
            postcode=postcode,
        )
    except LiaisonError as error:
        _fail(error.message)
    if as_json:
        typer.echo(orjson.dumps(roles, option=orjson.OPT_INDENT_2).decode())
        return
    print_available(roles)


def print_available(roles: list[dict]) -> None:
    """One line per professional who can take the patient: who, delay, skills."""
    for role in roles:
        who = role["practitioner"].get("display") or role["practitioner"]["identifier"]["value"]
        skills = ", ".join(s["text"] for s in role.get("specialty", []))
        typer.echo(f"{who}\t{role.get('availabilityExceptions', '')}\t{skills}")
    if not roles:
        typer.echo("nobody matches", err=True)


@subscriptions_app.command("list")
def list_subscriptions() -> None:
    """Every Subscription with its status and criteria."""
    from sqlmodel import Session, select

    from adapter.store.coordination_tables import SubscriptionRecord
    from adapter.store.db import get_engine

    with Session(get_engine()) as session:
        for record in session.exec(select(SubscriptionRecord)).all():
            typer.echo(f"{record.id}\t{record.status}\t{record.criteria}\t{record.endpoint}")


def coordinators(
    postcode: str | None = typer.Option(None, help="the patient's postcode"),
    commune: str | None = typer.Option(None),
    csv: Path | None = typer.Option(None, help="a local directory CSV (default: the directory)"),
    catch_up: bool = typer.Option(
        False, "--catch-up", help="add the coordinators declared since to the active care "
        "teams of their territory (through the outbox)"),
) -> None:
    """Which pathway coordinator(s) the rules give for an address; or, with --catch-up, have
    them join the care teams of the patients already discharged."""
    from adapter.coordination.coordinators import CsvCoordinators, DirectoryCoordinators
    from adapter.coordination.rules import load_rules
    from adapter.store.db import get_engine

    if catch_up:
        from adapter.coordination.catch_up import catch_up as join_teams

        try:
            result = join_teams(get_engine())
        except LiaisonError as error:
            _fail(error.message)
        typer.echo(f"{result.joined} of {result.teams} active care teams joined")
        return
    if not postcode:
        _fail("give --postcode (or --catch-up)")

    try:
        rules = load_rules()
    except (OSError, ValueError) as error:
        _fail(f"mappings/coordination.yaml: {error}")
    source = CsvCoordinators(csv, rules) if csv else DirectoryCoordinators(get_engine(), rules)
    found = rules.coordinators_for(postcode, commune, source)
    if not found:
        typer.echo("no pathway coordinator covers this address")
    for coordinator in found:
        typer.echo(
            f"{coordinator.territory_kind} {coordinator.territory_id}\t{coordinator.display}"
            f"\t{coordinator.identifier[1]}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(consent_app, name="consent")
    app.add_typer(availability_app, name="availability")
    app.add_typer(subscriptions_app, name="subscriptions")
    app.command("coordinators")(coordinators)
