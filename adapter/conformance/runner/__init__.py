"""The conformance test runner: scenarios (YAML) → HTTP steps → JUnit XML + HTML report."""

from adapter.conformance.runner.engine import run_conformance
from adapter.conformance.runner.results import RunResult, TestResult

__all__ = ["RunResult", "TestResult", "run_conformance"]
