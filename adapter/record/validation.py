"""Incoming resources are checked against the FHIR R4 models (fhir.resources R4B) before storing."""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapter.errors import BadRequest, InvalidResource, NotFound
from adapter.record.params import is_supported

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_PROBLEMS = 5


def check_type(resource_type: str) -> None:
    if not is_supported(resource_type):
        raise NotFound(f"resource type {resource_type!r} is not supported by this server")


def check_id(resource_id: str) -> None:
    if not _ID.match(resource_id):
        raise BadRequest(f"{resource_id!r} is not a valid FHIR id")


def validate_resource(resource: Any, expected_type: str | None = None) -> dict[str, Any]:
    """The resource if it is a valid R4 resource of a supported type; 400 / 422 otherwise.

    Problems name the element and the rule, never the submitted values (they may be clinical).
    """
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise BadRequest("the body is not a FHIR resource (no resourceType)")
    resource_type = resource["resourceType"]
    if expected_type and resource_type != expected_type:
        raise BadRequest(f"a {resource_type} was sent where a {expected_type} is expected")
    check_type(resource_type)
    if "id" in resource:
        check_id(str(resource["id"]))
    try:
        get_fhir_model_class(resource_type).model_validate(resource)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or resource_type}: {problem['msg']}"
            for problem in error.errors(include_input=False)[:_MAX_PROBLEMS]
        ]
        raise InvalidResource(
            f"{resource_type} is not a valid FHIR R4 resource: " + "; ".join(problems)
        ) from None
    return resource
