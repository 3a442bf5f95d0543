"""Login sessions of people on the coordinator's page, kept server-side (`login_session`).

The browser holds a random opaque value (a cookie); liaison keeps who it stands for, its CSRF
token and when it ends. A session ends at a fixed time after the login (absolute, not renewed
by use) or at logout, whichever comes first. The logins under way (`login_attempt`: the OIDC
`state`, `nonce` and PKCE verifier) are kept the same way, bound to the browser that started
them by a cookie of their own, and taken once.

Nothing here logs a cookie or a token; rows are found by the SHA-256 of the cookie's value.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from adapter.auth.principal import DEFAULT_SCOPES, Principal
from adapter.store.engine import session_scope
from adapter.store.session_tables import LoginAttemptRow, LoginSessionRow

# `__Host-`: the browser keeps them only when set Secure, for Path=/ and with no Domain, so a
# sibling host cannot plant one (Chromium keeps them on http://127.0.0.1 too: loopback counts
# as secure there)
SESSION_COOKIE = "__Host-liaison-session"
LOGIN_COOKIE = "__Host-liaison-login"
LOGIN_SECONDS = 600  # time given to the person to log in at the identity provider


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


@dataclass(frozen=True)
class LoginSession:
    """Who a session cookie stands for."""

    subject: str
    idnat: str
    person: str  # the name to show
    csrf: str
    expires_at: float

    def principal(self, coordinated: list[str]) -> Principal:
        """Who the person is to liaison: the coordinator of a CPTS when the local directory
        declares them one (`coordinated`: the CPTS, DAC… it names for their idNat_PS; the first
        in order when several), else a professional."""
        if coordinated:
            return Principal(kind="coordinator", subject=self.subject, idnat=self.idnat,
                             cpts=sorted(coordinated)[0], scopes=DEFAULT_SCOPES["coordinator"])
        return Principal(kind="professional", subject=self.subject, idnat=self.idnat,
                         scopes=DEFAULT_SCOPES["professional"])


@dataclass(frozen=True)
class PendingLogin:
    """A login sent to the identity provider: what its answer must match."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str


class SessionStore:
    """Sessions and logins under way in liaison's database; `clock` gives POSIX seconds."""

    def __init__(self, engine: Engine, *, lifetime_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock

    # -- logins under way ------------------------------------------------------------------

    def begin_login(self, next_path: str) -> tuple[str, PendingLogin]:
        """A new login: the value of its cookie, and its state, nonce and PKCE verifier."""
        cookie = secrets.token_urlsafe(32)
        pending = PendingLogin(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                               code_verifier=secrets.token_urlsafe(48), next_path=next_path)
        now = self.clock()
        with session_scope(self.engine) as session:
            session.execute(delete(LoginAttemptRow).where(
                col(LoginAttemptRow.created_at) < now - LOGIN_SECONDS))
            session.add(LoginAttemptRow(key=_key(cookie), state=pending.state,
                                        nonce=pending.nonce,
                                        code_verifier=pending.code_verifier,
                                        next_path=next_path, created_at=now))
        return cookie, pending

    def take_login(self, cookie: str | None) -> PendingLogin | None:
        """The login this browser started, once (it is forgotten here); None if it has none
        or took longer than `LOGIN_SECONDS`."""
        if not cookie:
            return None
        with session_scope(self.engine) as session:
            row = session.get(LoginAttemptRow, _key(cookie))
            if row is None:
                return None
            session.delete(row)
            if row.created_at < self.clock() - LOGIN_SECONDS:
                return None
            return PendingLogin(state=row.state, nonce=row.nonce,
                                code_verifier=row.code_verifier, next_path=row.next_path)

    # -- sessions --------------------------------------------------------------------------

    def open(self, *, subject: str, idnat: str, person: str) -> tuple[str, LoginSession]:
        """A new session: the value of its cookie, and the session."""
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        opened = LoginSession(subject=subject, idnat=idnat, person=person,
                              csrf=secrets.token_urlsafe(32),
                              expires_at=now + self.lifetime_seconds)
        with session_scope(self.engine) as session:
            session.execute(delete(LoginSessionRow).where(
                col(LoginSessionRow.expires_at) < now))
            session.add(LoginSessionRow(key=_key(cookie), subject=subject, idnat=idnat,
                                        person=person, csrf=opened.csrf, created_at=now,
                                        expires_at=opened.expires_at))
        return cookie, opened

    def find(self, cookie: str | None) -> LoginSession | None:
        """The session of this cookie while it lasts; None for an unknown or ended one."""
        if not cookie:
            return None
        with Session(self.engine) as session:
            row = session.get(LoginSessionRow, _key(cookie))
        if row is None or row.expires_at <= self.clock():
            return None
        return LoginSession(subject=row.subject, idnat=row.idnat, person=row.person,
                            csrf=row.csrf, expires_at=row.expires_at)

    def close(self, cookie: str | None) -> None:
        """Logout: the session is gone (its cookie no longer opens anything)."""
        if not cookie:
            return
        with session_scope(self.engine) as session:
            session.execute(delete(LoginSessionRow).where(
                col(LoginSessionRow.key) == _key(cookie)))
