"""Conformance scenarios as data: TestScript-like YAML files, one per test, grouped by actor.

A scenario has `setup` and `test` steps; a step is an HTTP `request` (or a built-in `check`)
followed by `assert`s on status, headers and FHIRPath over the JSON body. Values flow between
steps through `capture` (FHIRPath → `${name}` in later URLs and `%name` in later FHIRPath) and
`save` (the whole response body, as `%name`). See conformance/scenarios/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapter.errors import BadRequest

ACTORS = ("shared-record", "ingestion", "access")


@dataclass(frozen=True)
class Step:
    name: str
    request: dict[str, Any] | None = None  # method, url, headers, body
    check: str | None = None  # a built-in check instead of one request
    poll: dict[str, Any] | None = None  # {until: fhirpath, timeout: seconds}
    save: str | None = None
    capture: dict[str, str] = field(default_factory=dict)
    capture_header: dict[str, str] = field(default_factory=dict)
    asserts: tuple[dict[str, Any], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    id: str
    name: str
    actor: str
    requirements: tuple[str, ...]
    description: str
    variables: dict[str, dict[str, str]]  # name → {fixture, fhirpath}
    setup: tuple[Step, ...]
    test: tuple[Step, ...]
    path: Path


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str
    source: str
    actor: str


def _step(raw: dict[str, Any], where: str) -> Step:
    if "request" not in raw and "check" not in raw:
        raise BadRequest(f"{where}: a step needs a `request` or a `check`")
    return Step(
        name=str(raw.get("name") or raw.get("check") or raw["request"].get("url", "")),
        request=raw.get("request"),
        check=raw.get("check"),
        poll=raw.get("poll"),
        save=raw.get("save"),
        capture=dict(raw.get("capture") or {}),
        capture_header=dict(raw.get("capture_header") or {}),
        asserts=tuple(raw.get("assert") or ()),
        options=dict(raw.get("options") or {}),
    )


def load_scenario(path: Path) -> Scenario:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = path.name
    actor = raw.get("actor") or path.parent.name
    if actor not in ACTORS:
        raise BadRequest(f"{where}: unknown actor {actor!r} (known: {', '.join(ACTORS)})")
    return Scenario(
        id=raw["id"],
        name=raw["name"],
        actor=actor,
        requirements=tuple(raw.get("requirements") or ()),
        description=" ".join(str(raw.get("description", "")).split()),
        variables=dict(raw.get("variables") or {}),
        setup=tuple(_step(step, where) for step in raw.get("setup") or ()),
        test=tuple(_step(step, where) for step in raw.get("test") or ()),
        path=path,
    )


def load_scenarios(conformance_dir: Path, actor: str) -> list[Scenario]:
    if actor not in ACTORS:
        raise BadRequest(f"unknown actor {actor!r} (known: {', '.join(ACTORS)})")
    folder = conformance_dir / "scenarios" / actor
    scenarios = [load_scenario(path) for path in sorted(folder.glob("*.yaml"))]
    ids = [scenario.id for scenario in scenarios]
    duplicates = {scenario_id for scenario_id in ids if ids.count(scenario_id) > 1}
    if duplicates:
        raise BadRequest(f"duplicate scenario ids in {folder}: {', '.join(sorted(duplicates))}")
    return scenarios


def load_requirements(conformance_dir: Path) -> dict[str, Requirement]:
    raw = yaml.safe_load((conformance_dir / "requirements.yaml").read_text(encoding="utf-8"))
    return {
        item["id"]: Requirement(
            id=item["id"],
            text=" ".join(str(item["text"]).split()),
            source=item.get("source", ""),
            actor=item["actor"],
        )
        for item in raw["requirements"]
    }
