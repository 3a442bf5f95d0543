"""`liaison validate LETTER.xml` and `liaison conformance run|capability|check`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from adapter.errors import LiaisonError

conformance_app = typer.Typer(
    help="Conformance: run scenarios against a FHIR base URL, check produced resources.",
    no_args_is_help=True, rich_markup_mode=None)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def validate(
    letter: Path = typer.Argument(..., help="CDA R2 letter (LDL-SES) to check"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Check a CDA letter against the CDA R2 schema and the CI-SIS schematrons of its model."""
    from adapter.conformance.cda_validation import validate_letter

    try:
        xml = letter.read_bytes()
    except OSError as error:
        _fail(f"cannot read {letter}: {error.strerror}")
    try:
        report = validate_letter(xml)
    except LiaisonError as error:
        _fail(error.message)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for failure in [*report.errors, *report.warnings]:
            typer.echo(failure.line())
        verdict = "valid" if report.ok else "INVALID"
        typer.echo(
            f"{letter.name}: {verdict} {report.model} — {len(report.errors)} error(s), "
            f"{len(report.warnings)} warning(s) ({', '.join(report.artefacts)})"
        )
    if not report.ok:
        raise typer.Exit(code=1)


@conformance_app.command("run")
def run(
    base: str = typer.Option(..., "--base", help="FHIR base URL (the record) or liaison's root"),
    token: str | None = typer.Option(None, "--token", help="bearer token sent on every request"),
    junit: Path | None = typer.Option(None, "--junit", help="write JUnit XML here"),
    html: Path | None = typer.Option(None, "--html", help="write the HTML report here"),
    actor: str = typer.Option(
        "shared-record", "--actor", help="which scenarios: shared-record | ingestion | access"
    ),
    callers: list[str] = typer.Option(
        None, "--as", help="NAME=TOKEN of another caller a scenario acts as (access: hospital, "
        "outsider)"),
    letter: Path | None = typer.Option(
        None, "--letter", help="LDL-SES to build the test data from (default: official example)"
    ),
    max_entries: int | None = typer.Option(
        None, "--max-entries", min=1,
        help="split liaison's transactions as its pusher does for a capped server (Medplum: 8)",
    ),
) -> None:
    """Play the conformance scenarios of an actor against a server; exit 1 if any fails."""
    from adapter.conformance.runner import run_conformance

    try:
        content = letter.read_bytes() if letter else None
    except OSError as error:
        _fail(f"cannot read {letter}: {error.strerror}")
    tokens = dict(caller.partition("=")[::2] for caller in callers or [])
    if any(not name or not value for name, value in tokens.items()):
        _fail("--as takes NAME=TOKEN")
    try:
        result = run_conformance(
            base, actor=actor, token=token, junit=junit, html=html, letter=content,
            max_entries=max_entries, tokens=tokens,
        )
    except LiaisonError as error:
        _fail(error.message)
    for test in result.tests:
        typer.echo(f"{'PASS' if test.passed else 'FAIL'}  {test.id}  {test.name}")
        for assertion in test.failed_assertions:
            typer.echo(f"      ✗ {assertion.description}: {assertion.detail}")
    typer.echo(
        f"{result.passed}/{len(result.tests)} tests passed, "
        f"{result.failed_assertion_count} failed assertion(s) against {base}"
    )
    if not result.ok:
        raise typer.Exit(code=1)


@conformance_app.command("capability")
def capability(
    out: Path = typer.Option(..., "--out", help="where to write the CapabilityStatement"),
    base: str | None = typer.Option(
        None, "--base", help="FHIR base URL to copy from (default: liaison's embedded record)"
    ),
    token: str | None = typer.Option(None, "--token"),
) -> None:
    """Save a CapabilityStatement (conformance/CapabilityStatement.json: the embedded record's)."""
    from adapter.conformance.capability import (
        embedded_capability,
        fetch_capability,
        write_capability,
    )

    try:
        statement = fetch_capability(base, token=token) if base else embedded_capability()
    except LiaisonError as error:
        _fail(error.message)
    write_capability(statement, out)
    typer.echo(f"wrote {out}")


@conformance_app.command("profiles")
def profiles(
    check_only: bool = typer.Option(
        False, "--check", help="only verify the JSON matches its sources (exit 1 if not)"
    ),
) -> None:
    """Generate conformance/profiles/ (JSON, FSH) from their readable sources (src/*.yaml)."""
    from adapter.config import get_settings
    from adapter.conformance.profile_build import build_all

    generated = build_all(get_settings().conformance_dir / "profiles")
    stale = [p for p, text in generated.items()
             if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if check_only:
        for path in stale:
            typer.echo(f"out of date: {path}")
        if stale:
            raise typer.Exit(code=1)
        return
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generated[path], encoding="utf-8")
        typer.echo(f"wrote {path}")


@conformance_app.command("check")
def check(
    resources: Path = typer.Argument(..., help="a FHIR resource or Bundle (JSON) to check"),
) -> None:
    """Check resources (or every entry of a Bundle) against liaison's profiles."""
    from adapter.conformance.profiles import check_resource

    try:
        document = json.loads(resources.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        _fail(f"cannot read {resources} as JSON: {error}")
    if document.get("resourceType") == "Bundle":
        items = [entry.get("resource", {}) for entry in document.get("entry", [])]
    else:
        items = [document]
    problems = 0
    for item in items:
        for problem in check_resource(item):
            problems += 1
            typer.echo(f"{item.get('resourceType')}/{item.get('id', '?')}: {problem}")
    typer.echo(f"{len(items)} resource(s) checked, {problems} problem(s)")
    if problems:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.add_typer(conformance_app, name="conformance")
