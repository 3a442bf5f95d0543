"""Logging people in with OpenID Connect (authorization code, PKCE S256), e.g. Pro Santé Connect.

The identity provider is found by its discovery document
(`{LIAISON_OIDC_ISSUER}/.well-known/openid-configuration`, whose `issuer` must be that very
URL). authlib builds the authorization request and exchanges the code (client authenticated,
PKCE verifier sent); the ID token is checked here with joserfc against the provider's JWKS:
signature by a key-pair algorithm, `iss`, `aud` (liaison's client id, `azp` when several
audiences), `exp`, `iat`, `nonce` (the one this browser's login sent), and `acr` when a level
was asked. The professional's idNat_PS is read from the ID token's claims, else from the
userinfo answer (Pro Santé Connect gives `SubjectNameID` there), whose `sub` must be the ID
token's.

What is refused raises `LoginFailed` with the reason for the operator's log (never a token).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from adapter.auth.sessions import PendingLogin
from adapter.auth.tokens import header_kid, idnat_of
from adapter.config import Settings
from adapter.errors import LoginFailed

# key-pair signatures only (as for bearer tokens): never `none`, never an HMAC
_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_LEEWAY_SECONDS = 30
_DISCOVERY_SECONDS = 3600  # the discovery document and keys are read again after this
_REFETCH_SECONDS = 30  # an unknown key id makes liaison read the keys again, not more often
_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Identity:
    """Who the identity provider says logged in."""

    subject: str
    idnat: str | None
    person: str  # given and family names, as the provider gives them


@dataclass(frozen=True)
class _Provider:
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None
    jwks_uri: str


class OidcClient:
    """liaison as a client of one identity provider."""

    def __init__(self, settings: Settings, redirect_uri: str) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id):
            raise ValueError("no identity provider configured (LIAISON_OIDC_ISSUER)")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.scopes = settings.oidc_scopes
        self.acr_values = settings.oidc_acr_values
        self.redirect_uri = redirect_uri
        self._lock = threading.Lock()
        self._provider: _Provider | None = None
        self._keys: KeySet | None = None
        self._read_at = 0.0

    def _client(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client_id, client_secret=self.client_secret, scope=self.scopes,
            redirect_uri=self.redirect_uri, code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic", timeout=_TIMEOUT_SECONDS)

    # -- the provider's metadata and keys ------------------------------------------------------

    def _discover(self, *, keys_only: bool = False) -> None:
        try:
            if not keys_only or self._provider is None:
                document = _get_json(f"{self.issuer}/.well-known/openid-configuration")
                if document.get("issuer", "").rstrip("/") != self.issuer:
                    raise LoginFailed("the identity provider's discovery document names "
                                      "another issuer")
                self._provider = _Provider(
                    authorization_endpoint=str(document["authorization_endpoint"]),
                    token_endpoint=str(document["token_endpoint"]),
                    userinfo_endpoint=document.get("userinfo_endpoint"),
                    jwks_uri=str(document["jwks_uri"]))
            self._keys = KeySet.import_key_set(_get_json(self._provider.jwks_uri))  # type: ignore[arg-type]
        except (httpx.HTTPError, KeyError, ValueError, TypeError, JoseError) as error:
            raise LoginFailed(f"the identity provider cannot be read "
                              f"({error.__class__.__name__})") from error
        self._read_at = time.monotonic()

    def _metadata(self) -> tuple[_Provider, KeySet]:
        with self._lock:
            if self._provider is None or self._keys is None or \
                    time.monotonic() - self._read_at > _DISCOVERY_SECONDS:
                self._discover()
            assert self._provider is not None and self._keys is not None
            return self._provider, self._keys

    def _keys_naming(self, token: str) -> KeySet:
        """The provider's keys, read again once when the token names a key not among them
        (the provider rotated its keys)."""
        _, keys = self._metadata()
        kid = header_kid(token)
        if kid is None or any(key.kid == kid for key in keys.keys):
            return keys
        with self._lock:
            if time.monotonic() - self._read_at > _REFETCH_SECONDS:
                self._discover(keys_only=True)
            assert self._keys is not None
            return self._keys

    # -- the flow ----------------------------------------------------------------------------

    def authorization_url(self, pending: PendingLogin) -> str:
        """Where to send the browser: the provider's login, for this login under way."""
        provider, _ = self._metadata()
        extra = {"acr_values": self.acr_values} if self.acr_values else {}
        url, _ = self._client().create_authorization_url(
            provider.authorization_endpoint, state=pending.state,
            code_verifier=pending.code_verifier, nonce=pending.nonce, **extra)
        return str(url)

    def identify(self, code: str, pending: PendingLogin) -> Identity:
        """The code exchanged (with the PKCE verifier), the ID token checked, the person read."""
        provider, _ = self._metadata()
        try:
            with self._client() as client:
                tokens = client.fetch_token(
                    provider.token_endpoint, grant_type="authorization_code", code=code,
                    code_verifier=pending.code_verifier)
        except Exception as error:  # authlib's OAuthError, httpx errors, a non-JSON answer
            raise LoginFailed(f"the identity provider refused the code "
                              f"({error.__class__.__name__})") from error
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginFailed("the identity provider gave no ID token")
        claims = self._checked_id_token(id_token, pending.nonce)
        if (idnat_of(claims) is None or not _name(claims)) and provider.userinfo_endpoint:
            claims = {**self._userinfo(provider.userinfo_endpoint, tokens, claims), **claims}
        return Identity(subject=str(claims["sub"]), idnat=idnat_of(claims),
                        person=_name(claims))

    def _checked_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        expected = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            claims = dict(jwt.decode(id_token, self._keys_naming(id_token),
                                     algorithms=list(_ALGORITHMS)).claims)
            expected.validate(claims)
        except (JoseError, ValueError, KeyError, TypeError) as error:
            raise LoginFailed(f"the ID token is not valid here "
                              f"({error.__class__.__name__}: {_claim_named(error)})") from error
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise LoginFailed("the ID token names several audiences and liaison is not its azp")
        if self.acr_values and claims.get("acr") not in self.acr_values.split():
            raise LoginFailed("the ID token's level of assurance (acr) is not the one asked")
        return claims

    def _userinfo(self, endpoint: str, tokens: dict[str, Any],
                  id_claims: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = httpx.get(endpoint, timeout=_TIMEOUT_SECONDS, headers={
                "Authorization": f"Bearer {tokens.get('access_token', '')}",
                "Accept": "application/json, application/jwt"})
            answer.raise_for_status()
            if answer.headers.get("content-type", "").startswith("application/jwt"):
                # a signed userinfo answer: the provider's key, for liaison
                signed = answer.text.strip()
                info = dict(jwt.decode(signed, self._keys_naming(signed),
                                       algorithms=list(_ALGORITHMS)).claims)
                jwt.JWTClaimsRegistry(
                    iss={"essential": True, "value": self.issuer},
                    aud={"essential": True, "value": self.client_id}).validate(info)
            else:
                info = dict(answer.json())
        except (httpx.HTTPError, ValueError, TypeError, JoseError) as error:
            raise LoginFailed(f"the identity provider's userinfo cannot be read "
                              f"({error.__class__.__name__})") from error
        if info.get("sub") != id_claims.get("sub"):  # OIDC Core 5.3.4: else it is someone else
            raise LoginFailed("the userinfo answer is about another subject than the ID token")
        return info


def _get_json(url: str) -> dict[str, Any]:
    answer = httpx.get(url, timeout=_TIMEOUT_SECONDS, headers={"Accept": "application/json"})
    answer.raise_for_status()
    document = answer.json()
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _claim_named(error: Exception) -> str:
    return str(getattr(error, "claim", "") or getattr(error, "error", "") or "signature")


def _name(claims: dict[str, Any]) -> str:
    parts = [claims.get("given_name"), claims.get("family_name")]
    return " ".join(str(part) for part in parts if part) or str(claims.get("name") or "")
