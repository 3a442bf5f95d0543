"""OAuth2 client credentials for the push target (authlib's httpx OAuth2 client): a plain
client secret, or SMART backend services (`private_key_jwt`: a client assertion signed
RS384/ES384, expiring within 5 minutes).

The access token is cached until shortly before it expires, and dropped when the target
answers 401 so the next call fetches a fresh one.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from authlib.deprecate import AuthlibDeprecationWarning
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from joserfc.errors import InvalidKeyTypeError
from joserfc.jwk import ECKey, RSAKey

from adapter.errors import TargetRejected, TargetUnavailable

with warnings.catch_warnings():
    # authlib ≥ 1.8 prefers httpx2 and warns when it falls back to httpx, liaison's HTTP client
    warnings.filterwarnings("ignore", "The httpx module is deprecated",
                            AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

ASSERTION_LIFETIME_SECONDS = 300  # SMART servers refuse assertions valid for more than 5 minutes
REFRESH_MARGIN_SECONDS = 30
UNSTATED_LIFETIME_SECONDS = 300  # a token answered without `expires_in`
# authlib builds its client on httpx2 when that is installed, else on httpx: the transport
# errors of either (whichever authlib imported) mean an unreachable token endpoint
_HTTP_ERRORS: tuple[type[Exception], ...] = tuple(
    module.HTTPError for name in ("httpx", "httpx2") if (module := sys.modules.get(name))
)


def signing_algorithm(key: RSAKey | ECKey) -> str:
    """RS384 for RSA keys, ES384 for EC keys (what SMART backend services servers expect)."""
    if isinstance(key, RSAKey):
        return "RS384"
    algorithms = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
    if key.curve_name not in algorithms:
        raise ValueError(f"unsupported curve for a client assertion: {key.curve_name}")
    return algorithms[key.curve_name]


def import_private_key(pem: bytes) -> RSAKey | ECKey:
    """The client's RSA or EC private key (PEM), its `kid` the RFC 7638 thumbprint."""
    try:
        key: RSAKey | ECKey = RSAKey.import_key(pem)
    except InvalidKeyTypeError:
        key = ECKey.import_key(pem)
    key.ensure_kid()
    return key


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """authlib's `private_key_jwt`, with SMART's assertion lifetime (authlib signs for an hour)."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return str(private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header=dict(self.headers),
            expires_in=ASSERTION_LIFETIME_SECONDS,
        ))


def _check_status(response: Any) -> Any:
    """The token endpoint's refusals as the pusher's errors (authlib's OAuthError would not
    tell a throttled or failing server, worth retrying, from refused credentials)."""
    status = response.status_code
    if status >= 500 or status in (408, 429):
        raise TargetUnavailable(f"token endpoint answered {status}")
    if status != 200:
        raise TargetRejected(
            f"token endpoint refused the client credentials ({status})", status=status
        )
    return response


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
        if private_key is not None:
            key = import_private_key(
                private_key.read_bytes() if isinstance(private_key, Path) else private_key
            )
            self._client = OAuth2Client(
                client_id, key, token_endpoint_auth_method=PrivateKeyJWT.name,
                scope=scope, timeout=timeout,
            )
            self._client.register_client_auth_method(SmartPrivateKeyJWT(
                token_url, headers={"kid": key.kid, "typ": "JWT"}, alg=signing_algorithm(key)
            ))
        else:
            self._client = OAuth2Client(
                client_id, client_secret, token_endpoint_auth_method="client_secret_basic",
                scope=scope, timeout=timeout,
            )
        self._client.register_compliance_hook("access_token_response", _check_status)
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            token = self._client.token
            if not token or token.is_expired(leeway=REFRESH_MARGIN_SECONDS):
                token = self._fetch()
            return str(token["access_token"])

    def invalidate(self) -> None:
        with self._lock:
            self._client.token = None

    def close(self) -> None:
        self._client.close()

    def _fetch(self) -> Any:
        try:
            token = self._client.fetch_token(self.token_url, grant_type="client_credentials")
        except _HTTP_ERRORS as error:
            raise TargetUnavailable(
                f"token endpoint unreachable: {type(error).__name__}"
            ) from error
        if token.get("expires_at") is None:  # authlib keeps a token without (or with a zero)
            # expires_in forever: one without a stated lifetime is kept 5 minutes, one of 0 not
            token["expires_at"] = int(time.time()) + int(
                token.get("expires_in", UNSTATED_LIFETIME_SECONDS))
        return token
