"""Attacks on bearer tokens and on what answers without one, through the whole app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapter.api.app import create_app
from adapter.auth import issue_token, keys
from adapter.cli import app as cli
from adapter.config import Settings, get_settings
from adapter.errors import Misconfigured
from tests.support.servers import free_port, serve_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt

PCP = "801984758437"
SETTINGS = {"validation_mode": "off", "push_in_server": False}


@pytest.fixture(autouse=True)
def _fresh_keys() -> Iterator[None]:
    keys.forget_external_keys()
    yield
    keys.forget_external_keys()


@contextmanager
def app(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Iterator[TestClient]:
    """The app with `overrides`, also seen by code reading the process-wide settings."""
    for name, value in overrides.items():
        monkeypatch.setenv(f"LIAISON_{name.upper()}", str(value))
    get_settings.cache_clear()
    settings = Settings(**{**SETTINGS, **overrides})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(settings)) as client:
        yield client


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def local_claims(**claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "liaison-local", "aud": "liaison", "exp": now + 600, "kind": "professional",
            "idnat": PCP, **claims}


def signed_locally(**claims: Any) -> str:
    # liaison's key as another JOSE implementation reads it from its PEM
    key = JsonWebKey.import_key(keys.local_private_key().as_pem(private=True))
    payload = {k: v for k, v in local_claims(**claims).items() if v is not None}
    return jwt.encode({"alg": "ES256", "kid": key.thumbprint()}, payload, key).decode()


def status(client: TestClient, token: str, path: str = "/fhir/CarePlan") -> int:
    return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_forged_and_stale_tokens_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with app(monkeypatch) as client:
        none_header = b64(json.dumps({"alg": "none"}).encode())
        unsigned = f"{none_header}.{b64(json.dumps(local_claims()).encode())}."
        public = keys.local_private_key().as_pem(private=False)
        signing_input = (f"{b64(json.dumps({'alg': 'HS256'}).encode())}."
                         f"{b64(json.dumps(local_claims()).encode())}")
        confused = signing_input + "." + b64(
            hmac.new(public, signing_input.encode(), hashlib.sha256).digest())
        refused = {
            "alg none": unsigned,
            "HS256 signed with the public key": confused,
            "expired": signed_locally(exp=int(time.time()) - 120),
            "wrong issuer": signed_locally(iss="https://elsewhere.example"),
            "another audience": signed_locally(aud="https://other-service.example"),
            "no audience": signed_locally(aud=None),
        }
        for name, token in refused.items():
            assert status(client, token) == 401, name
        assert status(client, signed_locally()) == 200
        assert status(client, issue_token("professional", idnat=PCP)) == 200


class ExternalIssuer:
    """A Pro Santé Connect-like issuer: its own key, published as a JWKS on loopback."""

    def __init__(self) -> None:
        self.key = JsonWebKey.generate_key("EC", "P-256", is_private=True)
        public = {**self.key.as_dict(is_private=False), "kid": "psc-1"}
        self.app = FastAPI()
        self.app.get("/jwks")(lambda: {"keys": [public]})

    def token(self, audience: str) -> str:
        now = int(time.time())
        claims = {"iss": "https://psc.example", "aud": audience, "exp": now + 60,
                  "SubjectNameID": PCP, "scope": "openid"}
        return jwt.encode({"alg": "ES256", "kid": "psc-1"}, claims, self.key).decode()


def test_an_external_issuers_token_for_another_service_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = ExternalIssuer()
    with serve_app(issuer.app) as root, app(monkeypatch, jwks_url=f"{root}/jwks",
                                            token_issuer="https://psc.example",
                                            token_audience="liaison-psc") as client:
        assert status(client, issuer.token("another-service")) == 401
        assert status(client, issuer.token("liaison-psc")) == 200


def test_local_tokens_keep_working_while_the_external_jwks_is_unreachable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = ExternalIssuer()
    nowhere = f"http://127.0.0.1:{free_port()}/jwks"
    with app(monkeypatch, jwks_url=nowhere, token_audience="liaison") as client:
        assert status(client, issue_token("professional", idnat=PCP)) == 200
        assert status(client, issuer.token("liaison")) == 401


def test_trusting_an_external_issuer_without_an_audience_refuses_to_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Misconfigured, match="LIAISON_TOKEN_AUDIENCE"):
        create_app(Settings(jwks_url="https://psc.example/jwks", **SETTINGS))
    monkeypatch.setenv("LIAISON_JWKS_URL", "https://psc.example/jwks")
    get_settings.cache_clear()
    answer = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    assert answer.exit_code == 2
    assert answer.stderr.count("\n") == 1 and "LIAISON_TOKEN_AUDIENCE" in answer.stderr


def _directory(client: TestClient) -> None:
    from adapter.directory.importer import import_path
    from adapter.store.db import get_engine
    from tests.support.paths import FIXTURES

    for name in ("PS_LibreAcces_Personne_activite_202611270000.txt",
                 "Extraction_Correspondance_MSSante_202611270000.txt"):
        import_path(get_engine(), FIXTURES / "directory" / name)
    import_path(get_engine(), FIXTURES / "coordination" / "local_directory.csv")


def test_the_directory_needs_a_token_unless_published_and_then_only_its_public_part(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with app(monkeypatch) as client:
        _directory(client)
        assert client.get("/annuaire/fhir/Practitioner").status_code == 401
        with_token = client.get("/annuaire/fhir/Practitioner", params={"_count": "1000"},
                                headers={"Authorization": f"Bearer {issue_token('system')}"})
        assert "mssante" in with_token.text  # the full directory, mailboxes included
    with app(monkeypatch, annuaire_public="true") as client:
        public = client.get("/annuaire/fhir/Practitioner", params={"_count": "1000"})
        assert public.status_code == 200 and public.json()["total"] > 0
        assert "mssante" not in public.text.lower()
        local = client.get("/annuaire/fhir/Practitioner", params={"identifier": "810000000017"})
        assert local.json()["total"] == 0  # the CPTS coordinator of a local list: not public
        assert client.get("/annuaire/fhir/Practitioner/810000000017").status_code == 404


def test_a_huge_count_is_served_as_the_documented_maximum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    system = {"Authorization": f"Bearer {issue_token('system')}"}
    with app(monkeypatch, max_page_size=3) as client:
        for n in range(5):
            client.post("/fhir/Practitioner", headers=system,
                        json={"resourceType": "Practitioner", "name": [{"family": f"D{n}"}]})
        page = client.get("/fhir/Practitioner", params={"_count": "100000"}, headers=system)
        assert len(page.json()["entry"]) == 3
        following = next(link["url"] for link in page.json()["link"]
                         if link["relation"] == "next")
        assert "_count=3" in following
        _directory(client)
        listed = client.get("/annuaire/fhir/Practitioner", headers=system,
                            params={"_count": "100000"})
        assert len(listed.json()["entry"]) == 3
        assert all("_count=3" in link["url"] for link in listed.json()["link"])


def test_operations_endpoints_can_be_kept_for_system_tokens(
        monkeypatch: pytest.MonkeyPatch) -> None:
    professional = {"Authorization": f"Bearer {issue_token('professional', idnat=PCP)}"}
    system = {"Authorization": f"Bearer {issue_token('system')}"}
    with app(monkeypatch) as client:
        assert client.get("/metrics").status_code == 200  # open by default
    with app(monkeypatch, ops_auth="true") as client:
        for path in ("/metrics", "/readyz"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers=professional).status_code == 403
            assert client.get(path, headers=system).status_code == 200
        assert client.get("/healthz").status_code == 200  # liveness stays open


def test_an_external_issuer_cannot_vouch_for_anyone_but_a_professional(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An identity provider for people signing `kind: system` must not open liaison."""
    issuer = ExternalIssuer()
    now = int(time.time())
    claims = {"iss": "https://psc.example", "aud": "liaison-psc", "exp": now + 60,
              "kind": "system", "scope": "system/*.cruds"}
    as_system = jwt.encode({"alg": "ES256", "kid": "psc-1"}, claims, issuer.key).decode()
    with serve_app(issuer.app) as root, app(monkeypatch, jwks_url=f"{root}/jwks",
                                            token_issuer="https://psc.example",
                                            token_audience="liaison-psc") as client:
        assert status(client, as_system) == 401
        assert status(client, issuer.token("liaison-psc")) == 200  # a professional: fine
