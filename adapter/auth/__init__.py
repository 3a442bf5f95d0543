"""Bearer-token authentication: who is calling liaison's APIs (JWT via joserfc)."""

from adapter.auth.principal import SYSTEM, Principal
from adapter.auth.tokens import issue_token, verify_token

__all__ = ["SYSTEM", "Principal", "issue_token", "verify_token"]
