"""JUnit XML for CI systems: one testcase per scenario, one failure listing its failed asserts."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from adapter.conformance.runner.results import RunResult


def junit_xml(result: RunResult) -> bytes:
    failures = sum(1 for test in result.tests if not test.passed)
    suites = etree.Element("testsuites", name="liaison conformance",
                           tests=str(len(result.tests)), failures=str(failures),
                           time=f"{result.seconds:.3f}")
    suite = etree.SubElement(
        suites, "testsuite", name=f"{result.actor} @ {result.base}",
        tests=str(len(result.tests)), failures=str(failures), errors="0",
        timestamp=result.started, time=f"{result.seconds:.3f}",
    )
    properties = etree.SubElement(suite, "properties")
    etree.SubElement(properties, "property", name="base", value=result.base)
    etree.SubElement(properties, "property", name="actor", value=result.actor)
    for name, origin in sorted(result.fixtures.items()):
        etree.SubElement(properties, "property", name=f"fixture.{name}", value=origin)
    for test in result.tests:
        case = etree.SubElement(suite, "testcase", classname=f"{result.actor}.{test.id}",
                                name=test.name, time=f"{test.seconds:.3f}")
        case_properties = etree.SubElement(case, "properties")
        for requirement in test.requirements:
            etree.SubElement(case_properties, "property", name="requirement", value=requirement)
        if not test.passed:
            failed = test.failed_assertions
            failure = etree.SubElement(case, "failure", type="AssertionFailed",
                                       message=f"{failed[0].description}: {failed[0].detail}")
            failure.text = "\n".join(f"{a.description}: {a.detail}" for a in failed)
        output = etree.SubElement(case, "system-out")
        output.text = "\n".join(
            f"[{step.phase}] {step.name}: "
            + ", ".join(f"{'ok' if a.passed else 'FAILED'} {a.description}"
                        for a in step.assertions)
            for step in test.steps
        )
    return etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_junit(result: RunResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(result))
