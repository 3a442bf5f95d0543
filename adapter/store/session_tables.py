"""Login sessions of people using the coordinator's page, and logins under way.

A browser holds only a random opaque value in a cookie; these rows are found by its SHA-256, so
reading the table gives nobody a cookie that works. Times are POSIX seconds (no time-zone
conversions between SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class LoginSessionRow(SQLModel, table=True):
    """A person logged in: who the identity provider said they are, until when."""

    __tablename__ = "login_session"

    key: str = Field(primary_key=True, max_length=64)  # SHA-256 (hex) of the cookie's value
    subject: str = Field(max_length=255)  # the identity provider's `sub`
    idnat: str = Field(max_length=100)  # idNat_PS: what liaison's roles are looked up by
    person: str = Field(default="", max_length=255)  # the name shown on the page
    csrf: str = Field(max_length=64)  # what the page's forms must carry back
    created_at: float
    expires_at: float = Field(index=True)


class LoginAttemptRow(SQLModel, table=True):
    """A login sent to the identity provider, until it comes back (once) or is stale."""

    __tablename__ = "login_attempt"

    key: str = Field(primary_key=True, max_length=64)  # SHA-256 (hex) of the cookie's value
    state: str = Field(max_length=128)
    nonce: str = Field(max_length=128)
    code_verifier: str = Field(max_length=128)
    next_path: str = Field(default="/", max_length=2000)
    created_at: float = Field(index=True)
