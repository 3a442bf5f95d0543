"""Incoming resources are checked against the FHIR R4 models (fhir.resources R4B) before storing.

The check is the mapping's validator (`adapter.fhir_validation.validate_resource`): the same
fhir.resources models, run once per distinct *shape* of resource and per distinct leaf value,
with the results cached. A letter's bundle is made of resources seen before (the same doctor,
the same hospital) or of known shapes, so the record does not pay the ~1 ms per resource a
model costs again for each entry, while anything from outside is judged as strictly.
"""

from __future__ import annotations

import re
from typing import Any

from adapter.errors import BadRequest, InvalidResource, NotFound
from adapter.fhir_validation import validate_resource as model_problems
from adapter.record.params import is_supported

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_PROBLEMS = 5


def check_type(resource_type: str) -> None:
    if not is_supported(resource_type):
        raise NotFound(f"resource type {resource_type!r} is not supported by this server")


def check_id(resource_id: str) -> None:
    if not _ID.match(resource_id):
        raise BadRequest(f"{resource_id!r} is not a valid FHIR id")


def validate_resource(resource: Any, expected_type: str | None = None, *,
                      model: bool = True) -> dict[str, Any]:
    """The resource if it is a valid R4 resource of a supported type; 400 / 422 otherwise.

    Problems name the element and the rule, never the submitted values (they may be clinical).
    `model=False`: the type and id only, for a resource liaison itself checked against the
    same models before queueing it (see `Repository.transaction(validated=…)`).
    """
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise BadRequest("the body is not a FHIR resource (no resourceType)")
    resource_type = resource["resourceType"]
    if expected_type and resource_type != expected_type:
        raise BadRequest(f"a {resource_type} was sent where a {expected_type} is expected")
    check_type(resource_type)
    if "id" in resource:
        check_id(str(resource["id"]))
    problems = model_problems(resource) if model else []  # "Type: path: rule", never values
    if problems:
        prefix = f"{resource_type}: "
        raise InvalidResource(
            f"{resource_type} is not a valid FHIR R4 resource: "
            + "; ".join(p.removeprefix(prefix) for p in problems[:_MAX_PROBLEMS])
        )
    return resource
