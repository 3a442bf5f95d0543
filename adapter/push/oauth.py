"""OAuth2 client credentials for the push target: a plain client secret, or SMART backend
services (`private_key_jwt`: a client assertion signed RS384/ES384, expiring within 5 minutes).

The access token is cached until shortly before it expires, and dropped when the target
answers 401 so the next call fetches a fresh one.
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():  # authlib.jose announces joserfc; its API stays until authlib 2
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt

from adapter.errors import TargetRejected, TargetUnavailable

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 300  # SMART servers refuse assertions valid for more than 5 minutes
REFRESH_MARGIN_SECONDS = 30


def signing_algorithm(key: Any) -> str:
    """RS384 for RSA keys, ES384 for EC keys (what SMART backend services servers expect)."""
    kty = key.as_dict().get("kty")
    if kty == "RSA":
        return "RS384"
    if kty == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[key.as_dict()["crv"]]
    raise ValueError(f"unsupported key type for a client assertion: {kty}")


def client_assertion(client_id: str, token_url: str, private_key_pem: bytes) -> str:
    """A signed JWT proving the client holds its registered private key."""
    key = JsonWebKey.import_key(private_key_pem)
    now = int(time.time())
    header = {"alg": signing_algorithm(key), "typ": "JWT", "kid": key.thumbprint()}
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    }
    return jwt.encode(header, claims, key).decode()


class ClientCredentials:
    """Fetches and caches an access token with the client credentials grant."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        *,
        scope: str | None = None,
        client_secret: str | None = None,
        private_key: Path | bytes | None = None,
        timeout: float = 30.0,
    ) -> None:
        if client_secret is None and private_key is None:
            raise ValueError("client credentials need a client secret or a private key")
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.client_secret = client_secret
        self.private_key = (
            private_key.read_bytes() if isinstance(private_key, Path) else private_key
        )
        self.timeout = timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        auth: httpx.BasicAuth | None = None
        if self.private_key is not None:
            form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
            form["client_assertion"] = client_assertion(
                self.client_id, self.token_url, self.private_key
            )
        else:
            auth = httpx.BasicAuth(self.client_id, self.client_secret or "")
        try:
            answer = httpx.post(self.token_url, data=form, auth=auth, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise TargetUnavailable(
                f"token endpoint unreachable: {type(error).__name__}"
            ) from error
        if answer.status_code >= 500 or answer.status_code in (408, 429):
            raise TargetUnavailable(f"token endpoint answered {answer.status_code}")
        if answer.status_code != 200:
            raise TargetRejected(
                f"token endpoint refused the client credentials ({answer.status_code})",
                status=answer.status_code,
            )
        body = answer.json()
        self._token = body["access_token"]
        lifetime = float(body.get("expires_in", 300))
        self._expires_at = time.monotonic() + max(0.0, lifetime - REFRESH_MARGIN_SECONDS)
