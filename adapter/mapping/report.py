"""The report of a conversion: what was not mapped (with its XPath), as an OperationOutcome."""

from __future__ import annotations

from typing import Any

from lxml import etree

from adapter.cda.reader import HL7_NS


def xpath_of(element: etree._Element) -> str:
    """A readable XPath (hl7: prefix, 1-based positions) pointing at `element`."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        qname = etree.QName(node)
        prefix = "hl7:" if qname.namespace == HL7_NS else ""
        parent = node.getparent()
        if parent is None:
            steps.append(f"{prefix}{qname.localname}")
            break
        same = [sibling for sibling in parent if sibling.tag == node.tag]
        position = f"[{same.index(node) + 1}]" if len(same) > 1 else ""
        steps.append(f"{prefix}{qname.localname}{position}")
        node = parent
    return "/" + "/".join(reversed(steps))


class Report:
    def __init__(self) -> None:
        self._issues: list[dict[str, Any]] = []

    def unmapped(self, element: etree._Element, message: str) -> None:
        self._add("information", "not-supported", message, xpath_of(element))

    def warning(self, message: str, element: etree._Element | None = None,
                code: str = "incomplete") -> None:
        self._add("warning", code, message, xpath_of(element) if element is not None else None)

    def note(self, message: str, element: etree._Element | None = None) -> None:
        self._add("information", "informational", message,
                  xpath_of(element) if element is not None else None)

    def _add(self, severity: str, code: str, message: str, expression: str | None) -> None:
        issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
        if expression:
            issue["expression"] = [expression]
        if issue not in self._issues:
            self._issues.append(issue)

    def outcome(self) -> dict[str, Any]:
        issues = self._issues or [{"severity": "information", "code": "informational",
                                   "diagnostics": "Everything in the letter was mapped."}]
        return {"resourceType": "OperationOutcome", "issue": issues}
