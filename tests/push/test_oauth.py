"""OAuth2 client credentials towards the push target: SMART backend services assertions
(RS384 / ES384, at most 5 minutes), plain client secret, token caching and refresh — against a
real token endpoint and a real protected FHIR endpoint on loopback."""

from __future__ import annotations

import base64
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapter.errors import TargetRejected
from adapter.push.oauth import ClientCredentials
from adapter.push.targets import HttpTarget
from tests.push.bundles import letter_bundle
from tests.support.servers import serve_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt

CLIENT_ID = "liaison-pusher"
SECRET = "s3cret"


@dataclass
class AuthServer:
    """A token endpoint and a FHIR endpoint accepting only the tokens it issued."""

    public_key: Any = None
    base: str = ""
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    assertions: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    async def token(self, request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        if "client_assertion" in form:
            assertion = str(form["client_assertion"])
            header = jwt_header(assertion)
            claims = jwt.decode(assertion, self.public_key)
            claims.validate()
            if claims["aud"] != f"{self.base}/token" or claims["iss"] != CLIENT_ID:
                return JSONResponse({"error": "invalid_client"}, 401)
            self.assertions.append((header, dict(claims)))
        else:
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return JSONResponse({"error": "invalid_client"}, 401)
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 300})

    async def fhir(self, request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.issued or token in self.revoked:
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []}, 401)
        bundle = await request.json()
        entries = [{"response": {"status": "201 Created"}} for _ in bundle["entry"]]
        return JSONResponse(
            {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        )


def jwt_header(token: str) -> dict[str, Any]:
    import json

    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    server = AuthServer()
    app = Starlette(
        routes=[
            Route("/token", server.token, methods=["POST"]),
            Route("/fhir", server.fhir, methods=["POST"]),
        ]
    )
    with serve_app(app) as base:
        server.base = base
        yield server


@pytest.mark.parametrize(("kty", "size", "alg"), [("RSA", 2048, "RS384"), ("EC", "P-384", "ES384")])
def test_smart_backend_assertion_is_signed_as_smart_expects_and_short_lived(
    auth_server: AuthServer, kty: str, size: Any, alg: str
) -> None:
    key = JsonWebKey.generate_key(kty, size, is_private=True)
    auth_server.public_key = key.get_public_key() if hasattr(key, "get_public_key") else key
    credentials = ClientCredentials(
        f"{auth_server.base}/token",
        CLIENT_ID,
        scope="system/*.cud",
        private_key=key.as_pem(is_private=True),
    )
    target = HttpTarget(f"{auth_server.base}/fhir", credentials=credentials)
    target.send(letter_bundle(1))
    target.send(letter_bundle(2))
    assert len(auth_server.issued) == 1  # the token is cached between sends
    ((header, claims),) = auth_server.assertions
    assert header["alg"] == alg
    assert claims["sub"] == CLIENT_ID and claims["jti"]
    assert 0 < claims["exp"] - time.time() <= 300


def test_client_secret_is_accepted_and_a_wrong_one_rejected(auth_server: AuthServer) -> None:
    good = ClientCredentials(f"{auth_server.base}/token", CLIENT_ID, client_secret=SECRET)
    assert HttpTarget(f"{auth_server.base}/fhir", credentials=good).send(letter_bundle(3))[
        "type"
    ] == ("transaction-response")
    wrong = ClientCredentials(f"{auth_server.base}/token", CLIENT_ID, client_secret="guess")
    with pytest.raises(TargetRejected) as raised:
        HttpTarget(f"{auth_server.base}/fhir", credentials=wrong).send(letter_bundle(4))
    assert raised.value.status == 401


def test_a_revoked_token_is_replaced_on_the_targets_401(auth_server: AuthServer) -> None:
    credentials = ClientCredentials(f"{auth_server.base}/token", CLIENT_ID, client_secret=SECRET)
    target = HttpTarget(f"{auth_server.base}/fhir", credentials=credentials)
    target.send(letter_bundle(5))
    auth_server.revoked.add(auth_server.issued[-1])
    assert target.send(letter_bundle(6))["type"] == "transaction-response"
    assert auth_server.issued == ["token-1", "token-2"]
