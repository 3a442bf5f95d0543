"""Run the scenarios of one actor against a base URL and write the reports."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fhirpathpy import evaluate

from adapter.config import get_settings
from adapter.conformance.runner.checks import run_check
from adapter.conformance.runner.fixtures import Fixtures
from adapter.conformance.runner.results import RunResult, StepResult, TestResult
from adapter.conformance.runner.scenarios import Scenario, load_requirements, load_scenarios
from adapter.conformance.runner.steps import RunContext, run_request
from adapter.errors import BadRequest, LiaisonError, TargetUnavailable


def _scenario_variables(scenario: Scenario, context: RunContext) -> None:
    for name, source in scenario.variables.items():
        fixture = context.fixtures.get(source["fixture"])
        values = evaluate(fixture.json(), source["fhirpath"], context.fhirpath_environment())
        if not values:
            raise BadRequest(f"variable {name}: {source['fhirpath']} found nothing in the fixture")
        context.variables[name] = str(values[0])


def run_scenario(scenario: Scenario, context: RunContext) -> TestResult:
    started = time.monotonic()
    test = TestResult(
        id=scenario.id,
        name=scenario.name,
        actor=scenario.actor,
        requirements=scenario.requirements,
        description=scenario.description,
    )
    try:
        _scenario_variables(scenario, context)
    except LiaisonError as error:
        test.steps.append(StepResult(name="variables", phase="setup", error=error.message))
        return test
    for phase, steps in (("setup", scenario.setup), ("test", scenario.test)):
        for step in steps:
            outcome = (run_check if step.check else run_request)(step, phase, context)
            test.steps.append(outcome)
            if outcome.error or (phase == "setup" and not outcome.passed):
                test.seconds = time.monotonic() - started
                return test  # later steps depend on this one
    test.seconds = time.monotonic() - started
    return test


def run_conformance(
    base: str,
    *,
    actor: str = "shared-record",
    token: str | None = None,
    junit: Path | None = None,
    html: Path | None = None,
    conformance_dir: Path | None = None,
    only: set[str] | None = None,
    timeout: float = 30.0,
    letter: bytes | None = None,
    max_entries: int | None = None,
    tokens: dict[str, str] | None = None,
) -> RunResult:
    """Play every scenario of `actor` against `base`; write JUnit XML / HTML when asked.

    `letter`: the LDL-SES the fixtures come from (default: the official example), e.g. to use
    a letter of one's own or data no other user of a shared server has.
    `max_entries`: for servers that cap transaction size, the steps marked `split` send
    liaison's bundles in chunks as its pusher would (`target_max_entries`); the scenario that
    checks a whole bundle is taken as one unit still sends it whole.
    `tokens`: other callers' tokens by name, for the steps that call as them (`auth: name`;
    the access scenarios need `hospital` and `outsider`).
    """
    from adapter.conformance.runner.html_report import write_html
    from adapter.conformance.runner.junit import write_junit

    folder = conformance_dir or get_settings().conformance_dir
    scenarios = load_scenarios(folder, actor)
    if only:
        scenarios = [scenario for scenario in scenarios if scenario.id in only]
    requirements = load_requirements(folder)
    run_id = uuid.uuid4().hex[:12]
    fixtures = Fixtures(folder, run_id, letter)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    tests: list[TestResult] = []
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        try:
            client.get(base)  # any answer will do: only an unreachable server stops the run
        except httpx.TransportError as error:
            raise TargetUnavailable(f"cannot reach {base}: {error}") from error
        for scenario in scenarios:
            context = RunContext(client=client, base=base.rstrip("/"), token=token,
                                 fixtures=fixtures, variables={"run_id": run_id},
                                 max_entries=max_entries, tokens=dict(tokens or {}))
            tests.append(run_scenario(scenario, context))
    result = RunResult(
        base=base,
        actor=actor,
        started=started_at,
        seconds=time.monotonic() - started,
        tests=tests,
        requirements=requirements,
        fixtures={name: fixture.origin for name, fixture in fixtures.loaded().items()},
        max_entries=max_entries,
    )
    if junit:
        write_junit(result, junit)
    if html:
        write_html(result, html)
    return result
