"""The report of a conversion: what was not mapped (with its XPath), as an OperationOutcome."""

from __future__ import annotations

from typing import Any

from lxml import etree

from adapter.cda.reader import HL7_NS

_HL7 = f"{{{HL7_NS}}}"


def _name(tag: str) -> str:
    namespace, _, local = tag[1:].rpartition("}") if tag[:1] == "{" else ("", "", tag)
    return f"hl7:{local}" if namespace == HL7_NS else local


def xpath_of(element: etree._Element) -> str:
    """A readable XPath (hl7: prefix, 1-based positions) pointing at `element`."""
    tree = element.getroottree()
    root = f"/{_name(tree.getroot().tag)}"
    if element.getparent() is None:
        return root
    # lxml writes the same steps in C ({ns}tag, [n] only among same-name siblings)
    path = tree.getelementpath(element).replace(_HL7, "hl7:")
    if "{" not in path:
        return f"{root}/{path}"
    return _xpath_step_by_step(element)  # elements of other namespaces: no prefix, local name


def _xpath_step_by_step(element: etree._Element) -> str:
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        tag = node.tag
        parent = node.getparent()
        if parent is None:
            steps.append(_name(tag))
            break
        before = sum(1 for _ in node.itersiblings(tag, preceding=True))
        alone = before == 0 and next(node.itersiblings(tag), None) is None
        steps.append(_name(tag) if alone else f"{_name(tag)}[{before + 1}]")
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
