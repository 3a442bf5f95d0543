"""Signing keys: liaison's own key (kept in the data directory) and an external issuer's JWKS."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from adapter.config import get_settings
from adapter.errors import Unauthorized

ALGORITHM = "ES256"
_JWKS_TTL_SECONDS = 300.0
_lock = threading.Lock()
_jwks_cache: dict[str, tuple[float, KeySet]] = {}
_local_keys: dict[Path, ECKey] = {}


def key_path() -> Path:
    return get_settings().data_dir / "auth" / "signing-key.pem"


def local_private_key() -> ECKey:
    """liaison's signing key, created on first use (PKCS#8 PEM, readable by the owner only),
    its `kid` the RFC 7638 thumbprint."""
    path = key_path()
    with _lock:
        if path in _local_keys and path.exists():
            return _local_keys[path]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as pem:
                pem.write(ECKey.generate_key("P-256").as_pem(private=True))
        key = ECKey.import_key(path.read_bytes())
        key.ensure_kid()  # the thumbprint, computed once per key rather than per token
        _local_keys[path] = key
        return key


def local_kid() -> str:
    kid = local_private_key().kid
    assert kid is not None  # set by local_private_key
    return kid


_public_key: list[tuple[ECKey, ECKey]] = []  # (the private key, its public half)


def local_public_key() -> ECKey:
    """The public half of the local key, with its `kid`: built once per key, not per request
    (its thumbprint alone was ~4 % of the server's time per letter)."""
    private = local_private_key()
    with _lock:
        if not _public_key or _public_key[0][0] is not private:  # first use, or a new key
            _public_key[:] = [(private, ECKey.import_key(private.as_dict(private=False)))]
        return _public_key[0][1]


def local_jwks() -> dict:
    """The public half of the local key, as a JWKS (what a peer would configure to trust us)."""
    return {"keys": [local_public_key().as_dict(alg=ALGORITHM, use="sig")]}


def external_keys(jwks_url: str) -> KeySet:
    """The external issuer's keys, fetched from its JWKS URL and cached for a few minutes."""
    now = time.monotonic()
    cached = _jwks_cache.get(jwks_url)
    if cached and now - cached[0] < _JWKS_TTL_SECONDS:
        return cached[1]
    import httpx  # only for an external issuer: `liaison token` does without it

    try:
        response = httpx.get(jwks_url, timeout=10.0)
        response.raise_for_status()
        keys = KeySet.import_key_set(response.json())
    except (httpx.HTTPError, JoseError, ValueError, KeyError, TypeError) as error:
        if cached:  # keys rotate seldom: the last ones fetched beat refusing every caller
            return cached[1]
        raise Unauthorized(f"the token issuer's keys cannot be fetched ({error})") from error
    _jwks_cache[jwks_url] = (now, keys)
    return keys


def forget_external_keys() -> None:
    _jwks_cache.clear()
