"""Built-in checks a scenario step can call by name when one request is not enough.

`capability-search-params`: the CapabilityStatement is honest — every search parameter and
`_include` it declares, for the resource types liaison uses, is accepted by the server in
strict handling, and a search parameter given a value nothing can match finds nothing (a
server that refuses a parameter it advertises fails, and so does one that silently ignores it
and returns everything). Run it after data was loaded, or the "ignored" case cannot show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.conformance.runner.results import AssertionResult, StepResult
from adapter.conformance.runner.scenarios import Step
from adapter.conformance.runner.steps import RunContext, response_json, send
from adapter.errors import BadRequest

# a syntactically valid value per search parameter type that no stored resource can match
# (composite/special: skipped)
_PROBE_VALUES = {
    "token": "urn:liaison:conformance|no-such-code",
    "string": "liaison-no-such-string",
    "reference": "Patient/liaison-no-such-patient",
    "date": "1801-01-01",
    "number": "-987654321",
    "quantity": "-987654321",
    "uri": "http://example.org/liaison-no-such-uri",
}


def _declared(capability: dict[str, Any], resource_types: set[str]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for rest in capability.get("rest", []):
        if rest.get("mode", "server") != "server":
            continue
        resources.extend(r for r in rest.get("resource", []) if r.get("type") in resource_types)
    return resources


def _matches(body: dict[str, Any]) -> int:
    return sum(
        1
        for entry in body.get("entry", [])
        if (entry.get("search") or {}).get("mode", "match") == "match"
    )


def _probe(context: RunContext, result: StepResult, url: str, what: str, *, filters: bool) -> None:
    exchange, response = send(
        context, {"method": "GET", "url": url, "headers": {"Prefer": "handling=strict"}}
    )
    body = response_json(response)
    answered = (
        response is not None
        and response.status_code == 200
        and isinstance(body, dict)
        and body.get("resourceType") == "Bundle"
    )
    got = exchange.error or f"{exchange.status} {body.get('resourceType') if body else ''}"
    passed = answered
    if answered and filters and _matches(body):
        passed, got = False, f"{_matches(body)} match(es) for a value nothing has: ignored?"
    result.assertions.append(AssertionResult(f"declared {what} works ({url})", passed, got))
    if not passed:
        result.exchanges.append(exchange)


def capability_search_params(step: Step, context: RunContext, result: StepResult) -> None:
    capability = context.saved.get(step.options.get("from", "capability"))
    if not isinstance(capability, dict):
        raise BadRequest("capability-search-params needs a saved CapabilityStatement")
    resource_types = set(step.options.get("resource_types") or [])
    declared = _declared(capability, resource_types)
    result.assertions.append(
        AssertionResult(
            "the CapabilityStatement declares the resource types liaison pushes",
            {r["type"] for r in declared} >= resource_types,
            f"missing: {sorted(resource_types - {r['type'] for r in declared}) or 'none'}",
        )
    )
    for resource in declared:
        kind = resource["type"]
        for parameter in resource.get("searchParam", []):
            value = _PROBE_VALUES.get(parameter.get("type", ""))
            if value is None or parameter.get("name", "").startswith("_"):
                continue  # composite/special types; _id/_lastUpdated are probed as common ones
            _probe(context, result, f"{kind}?{parameter['name']}={value}&_count=1",
                   f"search parameter {kind}.{parameter['name']}", filters=True)
        for include in resource.get("searchInclude", []):
            if include == "*":
                continue
            _probe(context, result, f"{kind}?_include={include}&_count=1", f"_include {include}",
                   filters=False)


_CHECKS: dict[str, Callable[[Step, RunContext, StepResult], None]] = {
    "capability-search-params": capability_search_params,
}


def run_check(step: Step, phase: str, context: RunContext) -> StepResult:
    """A step that checks something other than one answer (e.g. the change feed)."""
    result = StepResult(name=step.name, phase=phase)
    check = _CHECKS.get(step.check or "")
    try:
        if check is None:
            raise BadRequest(f"unknown check {step.check!r} (known: {', '.join(_CHECKS)})")
        check(step, context, result)
    except BadRequest as error:
        result.error = error.message
    return result
