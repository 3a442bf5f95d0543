"""What a conformance run records: exchanges, assertion outcomes, tests, the whole run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from adapter.conformance.runner.scenarios import Requirement


@dataclass
class Exchange:
    """One HTTP request and its response, kept for the report (bodies truncated)."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error: str | None = None  # network error instead of a response


@dataclass
class AssertionResult:
    description: str
    passed: bool
    detail: str = ""


@dataclass
class StepResult:
    name: str
    phase: str  # "setup" | "test"
    exchanges: list[Exchange] = field(default_factory=list)
    assertions: list[AssertionResult] = field(default_factory=list)
    error: str | None = None  # the step could not run (fixture missing, network error…)

    @property
    def passed(self) -> bool:
        return self.error is None and all(assertion.passed for assertion in self.assertions)


@dataclass
class TestResult:
    id: str
    name: str
    actor: str
    requirements: tuple[str, ...]
    description: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)

    @property
    def failed_assertions(self) -> list[AssertionResult]:
        failed = [a for step in self.steps for a in step.assertions if not a.passed]
        errors = [
            AssertionResult(f"step '{step.name}' could not run", False, step.error)
            for step in self.steps
            if step.error
        ]
        return errors + failed

    def server_said(self) -> str | None:
        """The message of the OperationOutcome answered to the first failed step, if any."""
        for step in self.steps:
            if step.passed or not step.exchanges:
                continue
            try:
                body = json.loads(step.exchanges[-1].response_body or "null")
            except ValueError:
                return None
            if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
                return None
            for issue in body.get("issue", []):
                text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
                if text:
                    return str(text)
            return None
        return None

    @property
    def assertion_count(self) -> int:
        return sum(len(step.assertions) for step in self.steps)


@dataclass
class RunResult:
    base: str
    actor: str
    started: str
    seconds: float
    tests: list[TestResult]
    requirements: dict[str, Requirement]
    fixtures: dict[str, str] = field(default_factory=dict)  # fixture name → origin
    max_entries: int | None = None  # transactions split for a capped server (see engine)

    @property
    def passed(self) -> int:
        return sum(1 for test in self.tests if test.passed)

    @property
    def ok(self) -> bool:
        return all(test.passed for test in self.tests)

    @property
    def failed_assertion_count(self) -> int:
        return sum(len(test.failed_assertions) for test in self.tests)

    def traceability(self) -> list[tuple[Requirement, list[TestResult]]]:
        """Requirement → the tests that cover it (requirements of this actor, plus any cited)."""
        cited = {req for test in self.tests for req in test.requirements}
        rows = []
        for requirement in self.requirements.values():
            if requirement.actor != self.actor and requirement.id not in cited:
                continue
            covering = [test for test in self.tests if requirement.id in test.requirements]
            rows.append((requirement, covering))
        return rows

    def differences(self) -> list[str]:
        """One line per failed test: what this server does differently from what is required."""
        lines = []
        for test in self.tests:
            step = next((step for step in test.steps if not step.passed), None)
            if step is None:
                continue
            failed = [a for a in step.assertions if not a.passed]
            what = f"{failed[0].description} — {failed[0].detail}" if failed else step.error
            requirements = ", ".join(test.requirements) or "no requirement"
            line = f"{test.id} ({requirements}) {test.name}: [{step.name}] {what}"
            said = test.server_said()
            lines.append(f"{line} (server: {said})" if said else line)
        return lines
