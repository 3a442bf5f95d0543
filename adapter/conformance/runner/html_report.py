"""A readable HTML report: summary, differences, each test's assertions (request and response
shown for failures), and the requirements traceability table."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from adapter.conformance.runner.results import RunResult

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def render_html(result: RunResult) -> str:
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    return environment.get_template("report.html.j2").render(run=result)


def write_html(result: RunResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result), encoding="utf-8")
