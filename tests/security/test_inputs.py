"""Hostile inputs: each gets a clear refusal (an OperationOutcome, never a 500), leaks
nothing and stores nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import Settings
from tests.support.letter_variants import letter_variant

CDA = {"Content-Type": "application/hl7-cda+xml"}
HOSPITAL = "1750803447"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    database = {"database_url": request.getfixturevalue("postgres_url")} \
        if request.param == "postgres" else {}
    settings = Settings(validation_mode="off", push_in_server=False, max_letter_bytes=300_000,
                        **database)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def hospital() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token('hospital', organization=HOSPITAL)}"}


def system() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token('system')}"}


def nothing_stored(client: TestClient) -> bool:
    return client.get("/fhir/Patient", headers=system()).json()["total"] == 0


def refused(answer) -> bool:  # type: ignore[no-untyped-def]
    return 400 <= answer.status_code < 500 and \
        answer.json()["resourceType"] == "OperationOutcome"


def test_an_external_entity_is_never_resolved(client: TestClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    letter = letter_variant(701).replace(
        b"<ClinicalDocument", f'<!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM '
        f'"file://{secret}">]>\n<ClinicalDocument'.encode(), 1).replace(
        b"<title>", b"<title>&x;", 1)
    answer = client.post("/discharge-letters", content=letter, headers={**hospital(), **CDA})
    assert refused(answer)
    assert "TOP-SECRET" not in answer.text
    assert nothing_stored(client)


def test_an_entity_expansion_bomb_is_refused_at_once(client: TestClient) -> None:
    levels = "".join(f'<!ENTITY e{n} "{"&e" + str(n - 1) + ";" * 1}' + f'&e{n - 1};' * 9 + '">'
                     for n in range(1, 10))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY e0 "lol">{levels}]>'
            '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&e9;</title></ClinicalDocument>')
    started = time.perf_counter()
    answer = client.post("/discharge-letters", content=bomb.encode(),
                         headers={**hospital(), **CDA})
    assert refused(answer)
    assert time.perf_counter() - started < 5  # never expanded (10^9 "lol")
    assert nothing_stored(client)


def test_an_oversize_letter_is_refused_before_it_is_read(client: TestClient) -> None:
    answer = client.post("/discharge-letters", content=b"<a>" + b" " * 400_000 + b"</a>",
                         headers={**hospital(), **CDA})
    assert answer.status_code == 413 and refused(answer)


@pytest.mark.parametrize("depth", [200, 900, 100_000])
def test_deeply_nested_json_is_a_clear_bad_request(client: TestClient, depth: int) -> None:
    nested = '{"resourceType": "Patient", "extension": [' + '{"extension": [' * depth \
        + "{}" + "]}" * depth + "]}"
    answer = client.post("/fhir/Patient", content=nested.encode(),
                         headers={**system(), "Content-Type": "application/fhir+json"})
    assert refused(answer), answer.text[:300]
    bundle = '{"resourceType": "Bundle", "type": "transaction", "entry": ' + "[" * depth \
        + "]" * depth + "}"
    answer = client.post("/fhir", content=bundle.encode(),
                         headers={**system(), "Content-Type": "application/fhir+json"})
    assert refused(answer), answer.text[:300]
    assert nothing_stored(client)


@pytest.mark.parametrize("path", ["/coordination/consent", "/fhir/Subscription"])
def test_deeply_nested_json_to_other_routes_is_a_clear_bad_request(client: TestClient,
                                                                    path: str) -> None:
    depth = 100_000
    nested = '{"ins": ' + "[" * depth + "]" * depth + "}"
    answer = client.post(path, content=nested.encode(),
                         headers={**system(), "Content-Type": "application/json"})
    assert refused(answer), answer.text[:300]
