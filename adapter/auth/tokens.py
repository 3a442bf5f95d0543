"""Issuing and validating JWT bearer tokens (joserfc).

Local tokens are signed with the key in the data directory; when `jwks_url` is configured,
tokens signed by that issuer's keys (e.g. Pro Santé Connect) are accepted too. Either way the
`iss` must be the configured `token_issuer`, the `aud` the configured audience (local tokens
carry it: an issuer signing for several services must not open liaison with a token meant for
another), and the token must not be expired. A token is checked against the key its header
names (`kid`): the local key, or the external issuer's — so local tokens keep working while
the external JWKS cannot be fetched.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections import OrderedDict
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from adapter.auth.keys import ALGORITHM, external_keys, local_private_key, local_public_key
from adapter.auth.principal import DEFAULT_SCOPES, KINDS, Principal
from adapter.config import get_settings
from adapter.errors import BadRequest, Unauthorized

DEFAULT_LIFETIME_SECONDS = 12 * 3600
# Claims an external OIDC issuer may use for the professional's idNat_PS (PSC: SubjectNameID).
_IDNAT_CLAIMS = ("idnat", "SubjectNameID", "preferred_username")
# Only signatures by a key pair: an HMAC "signed" with a public key (algorithm confusion) or
# `none` must never be even tried (joserfc's default, its "recommended" set, includes HS256 and
# leaves out ES384, RS384... that issuers use).
_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_LEEWAY_SECONDS = 30


def issue_token(kind: str, *, lifetime: int = DEFAULT_LIFETIME_SECONDS, **claims: Any) -> str:
    """A bearer token for `kind` signed with the local key; claims: idnat, cpts, organization,
    organizations (a list, for a hospital group), scope (space separated), sub."""
    if kind not in KINDS:
        raise BadRequest(f"unknown token kind {kind!r} (expected one of {', '.join(KINDS)})")
    if kind == "professional" and not claims.get("idnat"):
        raise BadRequest("a professional token needs the professional's idNat_PS (--idnat)")
    if kind == "coordinator" and not claims.get("cpts"):
        raise BadRequest("a coordinator token needs the CPTS identifier (--cpts)")
    key = local_private_key()
    now = int(time.time())
    payload = {
        "iss": get_settings().token_issuer,
        "aud": get_settings().audience,
        "sub": claims.pop("sub", None) or _default_subject(kind, claims),
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
        "kind": kind,
        "scope": claims.pop("scope", None) or " ".join(DEFAULT_SCOPES[kind]),
        **{name: value for name, value in claims.items() if value is not None},
    }
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, payload, key, algorithms=[ALGORITHM])


def _default_subject(kind: str, claims: dict[str, Any]) -> str:
    who = claims.get("idnat") or claims.get("cpts") or claims.get("organization") or "local"
    return f"{kind}:{who}"


def header_kid(token: str) -> str | None:
    """The `kid` a token's header names (nothing of it checked: only to pick a key)."""
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _signed_externally(token: str) -> bool:
    """Whether `token` names a key of the external issuer (any `kid` but the local key's; a
    token without `kid` is taken as local: liaison's own always carry it)."""
    kid = header_kid(token)
    return get_settings().jwks_url is not None and kid is not None \
        and kid != local_public_key().kid


def verify_token(token: str) -> Principal:
    """The caller a bearer token proves; Unauthorized if it is not valid here and now."""
    settings = get_settings()
    expected = jwt.JWTClaimsRegistry(
        leeway=_LEEWAY_SECONDS,
        iss={"essential": True, "value": settings.token_issuer},
        exp={"essential": True},
        aud={"essential": True, "value": settings.audience},
    )
    external = _signed_externally(token)
    # the external issuer's keys are fetched only for its tokens: an unreachable JWKS
    # refuses those (Unauthorized), never liaison's own
    keys = external_keys(settings.jwks_url) if external and settings.jwks_url \
        else KeySet([local_public_key()])
    try:
        claims = _signed_claims(token, keys)
        expected.validate(claims)
    except (JoseError, ValueError, KeyError, TypeError) as error:  # any malformed token: 401
        raise Unauthorized(f"invalid bearer token ({error.__class__.__name__})") from error
    principal = principal_from_claims(claims)
    if external and principal.kind != "professional":
        # an identity provider for people (Pro Santé Connect) vouches for professionals only;
        # hospitals, coordinators and liaison's services hold liaison's own tokens
        raise Unauthorized("an external issuer's token can only identify a professional")
    return principal


# Checking a signature is most of what a read costs the server beyond its query (software
# pulls every few minutes with the same token): a token's signature, once checked against a
# key, is remembered by the token and that key's thumbprint — a key replaced checks again.
# The claims (expiry, issuer, audience) are checked at every use.
_CHECKED: OrderedDict[tuple[str, tuple[str, ...]], dict[str, Any]] = OrderedDict()
_CHECKED_MAX = 4096


def _signed_claims(token: str, keys: KeySet) -> dict[str, Any]:
    """The claims of `token` once its signature is checked against one of `keys`."""
    known = (token, tuple(sorted(_thumbprint(key) for key in keys.keys)))
    claims = _CHECKED.get(known)
    if claims is None:
        claims = jwt.decode(token, keys, algorithms=_ALGORITHMS).claims
        _CHECKED[known] = claims
        if len(_CHECKED) > _CHECKED_MAX:
            _CHECKED.popitem(last=False)
    return dict(claims)


# A key's thumbprint, by the key object (the local key and the issuer's JWKS are kept, so the
# same objects come back): hashing the key at every read cost as much as the cache saved. The
# key is held beside its thumbprint, so its id is not reused while it is remembered.
_THUMBPRINTS: dict[int, tuple[Any, str]] = {}


def _thumbprint(key: Any) -> str:
    known = _THUMBPRINTS.get(id(key))
    if known is None:
        if len(_THUMBPRINTS) >= _CHECKED_MAX:
            _THUMBPRINTS.clear()
        known = _THUMBPRINTS[id(key)] = (key, key.thumbprint())
    return known[1]


def idnat_of(claims: dict[str, Any]) -> str | None:
    """The professional's idNat_PS among a token's (or an OIDC userinfo answer's) claims."""
    return next((str(claims[c]) for c in _IDNAT_CLAIMS if claims.get(c)), None)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    idnat = idnat_of(claims)
    kind = claims.get("kind") or ("professional" if idnat else None)
    if kind not in KINDS:
        raise Unauthorized("the token does not say who is calling (kind / idnat claim)")
    scope = claims.get("scope")
    # OIDC issuers (Pro Santé Connect) send scopes like "openid scope_all": without any
    # SMART-style scope the kind's defaults apply; SMART scopes, when present, are the rule.
    smart = tuple(s for s in scope.split() if "/" in s) if isinstance(scope, str) else ()
    scopes = smart or DEFAULT_SCOPES[kind]
    return Principal(
        kind=kind,
        subject=claims.get("sub"),
        idnat=idnat if kind == "professional" else claims.get("idnat"),
        cpts=claims.get("cpts"),
        organization=claims.get("organization"),
        organizations=_organizations(claims.get("organizations")),
        scopes=scopes,
    )


def _organizations(claim: Any) -> tuple[str, ...]:
    """The `organizations` claim: a list of idNat_Struct (or one, space separated)."""
    if isinstance(claim, str):
        return tuple(claim.split())
    if isinstance(claim, list):
        return tuple(str(value) for value in claim if value)
    return ()
