"""A small real OpenID Connect provider on loopback, for the login tests.

Endpoints written by hand (FastAPI, served by uvicorn in a thread like `servers.serve_app`):
discovery, JWKS, authorize (a login form where the test user is chosen), token (the code once,
its redirect URI, the PKCE S256 verifier and the client's secret checked), userinfo. ID tokens
are signed RS256 with a key made for each provider. Like Pro Santé Connect, the ID token says
who by `sub` only and the userinfo answer gives `SubjectNameID` (the idNat_PS) and the names,
unless a user is declared with `idnat_in_id_token`.

A test makes it misbehave through `tamper` (claims of the next ID tokens replaced),
`signing_key` (another key signs them) and `userinfo_sub`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.support.servers import free_port, serve_app


@dataclass
class User:
    login: str
    idnat: str | None  # None: someone the provider knows without a national id
    given: str = ""
    family: str = ""
    idnat_in_id_token: bool = False


@dataclass
class Provider:
    client_id: str = "liaison-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    users: dict[str, User] = field(default_factory=dict)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(
        2048, parameters={"kid": "test-idp-1", "use": "sig", "alg": "RS256"}))
    signing_key: RSAKey | None = None  # signs instead of `key` (an attacker's)
    tamper: dict[str, Any] = field(default_factory=dict)  # claims replaced (None: left out)
    userinfo_sub: str | None = None  # a userinfo answer about someone else
    issuer: str = ""
    redirect_uris: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, User] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)

    def add(self, user: User) -> User:
        self.users[user.login] = user
        return user

    def id_token(self, user: User, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.client_id,
                                  "sub": _subject(user), "iat": now, "exp": now + 300,
                                  "nonce": nonce, "acr": "eidas1", "auth_time": now}
        if user.idnat_in_id_token and user.idnat:
            claims.update(SubjectNameID=user.idnat, given_name=user.given,
                          family_name=user.family)
        claims.update(self.tamper)
        claims = {name: value for name, value in claims.items() if value is not None}
        key = self.signing_key or self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


def _subject(user: User) -> str:
    return "sub-" + hashlib.sha256(user.login.encode()).hexdigest()[:16]


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _refuse(error: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def provider_app(provider: Provider) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        base = provider.issuer
        return {"issuer": base, "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token", "userinfo_endpoint": f"{base}/userinfo",
                "jwks_uri": f"{base}/jwks", "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"]}

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return KeySet([provider.key]).as_dict(private=False)

    @app.get("/authorize", response_class=HTMLResponse)
    def authorize(request: Request) -> Any:
        asked = dict(request.query_params)
        provider.authorize_requests.append(asked)
        if asked.get("client_id") != provider.client_id or \
                asked.get("redirect_uri") not in provider.redirect_uris:
            return HTMLResponse("unknown client or redirect URI", status_code=400)
        if asked.get("response_type") != "code" or asked.get("code_challenge_method") != "S256" \
                or not asked.get("code_challenge") or not asked.get("nonce"):
            return HTMLResponse("code flow with PKCE S256 and a nonce only", status_code=400)
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in asked.items())
        return HTMLResponse(
            "<!doctype html><html lang='fr'><head><meta charset='utf-8'>"
            "<title>Fournisseur d'identité de test</title></head><body>"
            "<h1>Connexion (fournisseur de test)</h1>"
            f"<form method='post' action='/authorize'>{hidden}"
            "<label>Identifiant <input name='login' id='login'></label>"
            "<button type='submit' id='connect'>Se connecter</button></form></body></html>")

    @app.post("/authorize")
    def authorized(request: Request, login: str = Form(...), redirect_uri: str = Form(...),
                   state: str = Form(""), nonce: str = Form(...),
                   code_challenge: str = Form(...), client_id: str = Form(...)) -> Any:
        user = provider.users.get(login)
        if user is None or redirect_uri not in provider.redirect_uris:
            return HTMLResponse("inconnu", status_code=400)
        code = secrets.token_urlsafe(24)
        provider.codes[code] = {"user": user, "nonce": nonce, "challenge": code_challenge,
                                "redirect_uri": redirect_uri, "client_id": client_id}
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}",
                                status_code=302)

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        expected = base64.b64encode(
            f"{provider.client_id}:{provider.client_secret}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("authorization", ""),
                                   f"Basic {expected}"):
            return _refuse("invalid_client", 401)
        form = await request.form()
        granted = provider.codes.pop(str(form.get("code")), None)  # a code serves once
        if form.get("grant_type") != "authorization_code" or granted is None or \
                form.get("redirect_uri") != granted["redirect_uri"]:
            return _refuse("invalid_grant")
        if _s256(str(form.get("code_verifier", ""))) != granted["challenge"]:
            return _refuse("invalid_grant")  # PKCE: not the one who started the login
        access = secrets.token_urlsafe(24)
        provider.access_tokens[access] = granted["user"]
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 120,
                             "id_token": provider.id_token(granted["user"], granted["nonce"])})

    @app.get("/userinfo")
    def userinfo(request: Request) -> JSONResponse:
        scheme, _, access = request.headers.get("authorization", "").partition(" ")
        user = provider.access_tokens.get(access) if scheme.lower() == "bearer" else None
        if user is None:
            return _refuse("invalid_token", 401)
        info: dict[str, Any] = {"sub": provider.userinfo_sub or _subject(user),
                                "given_name": user.given, "family_name": user.family}
        if user.idnat:
            info.update(SubjectNameID=user.idnat, preferred_username=user.idnat)
        return JSONResponse(info)

    return app


@contextmanager
def running_provider(client_id: str = "liaison-test") -> Iterator[Provider]:
    """A provider on loopback; a test lists where it may send logins back (`redirect_uris`)."""
    provider = Provider(client_id=client_id)
    port = free_port()
    provider.issuer = f"http://127.0.0.1:{port}"
    with serve_app(provider_app(provider), port=port):
        yield provider
