"""The foundations every part relies on: settings from the environment, the CLI entry point."""

from pathlib import Path

from typer.testing import CliRunner

from adapter import __version__
from adapter.cli import app
from adapter.config import get_settings
from adapter.errors import LetterTooLarge, RefusedLetter


def test_settings_follow_the_data_dir_environment(liaison_env: Path) -> None:
    settings = get_settings()
    assert settings.data_dir == liaison_env
    assert settings.resolved_database_url == f"sqlite:///{liaison_env / 'liaison.db'}"
    assert settings.mappings_dir.is_dir()


def test_cli_prints_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_errors_carry_http_status_and_operation_outcome() -> None:
    error = LetterTooLarge("the letter is 30 MiB, over the 20 MiB limit")
    assert isinstance(error, RefusedLetter)
    assert error.http_status == 413
    outcome = error.operation_outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("the letter is 30 MiB")
