"""A FHIR server that gets things wrong on purpose, to prove the runner reports failures: its
CapabilityStatement declares a search parameter it refuses and one it ignores, it answers
transactions with a plain 200 `{}` and errors without OperationOutcome."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

CAPABILITY = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "interaction": [{"code": "transaction"}],
            "resource": [
                {"type": "Patient", "searchParam": [{"name": "name", "type": "string"},
                                                    {"name": "birthdate", "type": "date"}]},
            ],
        }
    ],
}


def create_deficient_app() -> FastAPI:
    app = FastAPI()

    @app.get("/fhir/metadata")
    def metadata() -> JSONResponse:
        return JSONResponse(CAPABILITY)

    @app.post("/fhir")
    def transaction() -> JSONResponse:
        return JSONResponse({})

    @app.get("/fhir/Patient")
    def search_patient(request: Request) -> JSONResponse:
        if "name" in request.query_params:
            return JSONResponse({"error": "unsupported"}, status_code=400)
        # every other parameter is silently ignored: everything matches
        patient = {"resourceType": "Patient", "id": "p1"}
        return JSONResponse({"resourceType": "Bundle", "type": "searchset",
                             "entry": [{"resource": patient, "search": {"mode": "match"}}]})

    @app.api_route("/fhir/{rest:path}", methods=["GET", "POST", "PUT"])
    def anything(rest: str) -> PlainTextResponse:
        return PlainTextResponse("nope", status_code=200)

    return app
