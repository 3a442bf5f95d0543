"""People log in to the coordinator's page with OpenID Connect (e.g. Pro Santé Connect).

- `GET /login?next=/coordination/page` — a login begins: state, nonce and PKCE verifier kept
  server-side for this browser (a short-lived cookie), then off to the identity provider;
- `GET /login/callback` — the provider's answer: the state must be the one this browser's
  login sent, the code is exchanged and the ID token checked (`adapter/auth/oidc.py`); a
  person identified by their idNat_PS gets a session (cookie `HttpOnly`, `Secure`,
  `SameSite=Lax`, `Path=/`) and goes back where they were going;
- `POST /logout` (the page's form, with its `csrf` field) — the session is deleted, and its
  cookie;
- `GET /login/done` — said after logout.

Whether the person coordinates a CPTS is read at each request (`page_access`), not here.
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapter.api.html_pages import LOGIN_LINK, message_page
from adapter.api.page_access import LoginRequired, check_form, login_session, session_store
from adapter.auth.oidc import OidcClient
from adapter.auth.sessions import LOGIN_COOKIE, LOGIN_SECONDS, SESSION_COOKIE, SessionStore
from adapter.config import Settings
from adapter.errors import LoginFailed
from adapter.store.db import get_engine

logger = logging.getLogger("liaison.login")
router = APIRouter(tags=["login"], include_in_schema=False)
DEFAULT_NEXT = "/coordination/page"
_PROVIDER_ERROR = re.compile(r"^[a-z_]{1,64}$")


class NotIdentified(LoginFailed):
    """The provider vouched for someone, but not by an idNat_PS liaison's roles are keyed by."""

    http_status = 403
    french_title = "Identité non reconnue"
    french_text = ("Le fournisseur d'identité ne nous a pas transmis votre identifiant national "
                   "de professionnel de santé (idNat_PS, RPPS) : liaison ne peut pas savoir qui "
                   "vous êtes. Connectez-vous avec votre carte CPS ou e-CPS, ou demandez à la "
                   "coordination de votre CPTS.")


class _Refused(LoginFailed):
    french_title = "Connexion refusée"
    french_text = ("La connexion n'a pas abouti et vous n'êtes pas connecté(e). Recommencez ; "
                   "si cela se reproduit, signalez-le à l'administrateur de liaison en donnant "
                   "l'heure : la cause est dans son journal.")


def install(app: FastAPI, settings: Settings) -> None:
    """Sessions and the login routes on `app` (the login only with an identity provider)."""
    engine = getattr(app.state, "engine", None) or get_engine(settings.resolved_database_url)
    app.state.sessions = SessionStore(engine, lifetime_seconds=settings.session_hours * 3600)
    app.state.oidc = OidcClient(settings, redirect_uri=_base(settings) + "/login/callback") \
        if settings.oidc_issuer else None
    app.add_exception_handler(LoginRequired, _to_login)
    app.include_router(router)


def _base(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/")


async def _to_login(request: Request, error: Exception) -> Response:
    assert isinstance(error, LoginRequired)
    response = RedirectResponse(f"/login?next={quote(error.next_path, safe='')}", status_code=303)
    if SESSION_COOKIE in request.cookies:  # an ended session: its cookie goes too
        _forget(response, SESSION_COOKIE)
    return response


def _local(next_path: str | None) -> str:
    """Where to go after login: a path of liaison only (never another site)."""
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") \
            or "\\" in next_path or any(ord(c) < 0x20 for c in next_path):
        return DEFAULT_NEXT
    return next_path


def _client(request: Request) -> OidcClient:
    client: OidcClient | None = getattr(request.app.state, "oidc", None)
    if client is None:
        raise _Refused("no identity provider is configured (LIAISON_OIDC_ISSUER)")
    return client


def _set(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True,
                        samesite="lax")


def _forget(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")


@router.get("/login")
def login(request: Request, next: str | None = None) -> Response:
    request.state.html_errors = True
    client = _client(request)
    cookie, pending = session_store(request).begin_login(_local(next))
    response = RedirectResponse(client.authorization_url(pending), status_code=303)
    _set(response, LOGIN_COOKIE, cookie, LOGIN_SECONDS)
    return response


@router.get("/login/callback")
def callback(request: Request, code: str | None = None, state: str | None = None,
             error: str | None = None) -> Response:
    request.state.html_errors = True
    sessions = session_store(request)
    try:
        pending = sessions.take_login(request.cookies.get(LOGIN_COOKIE))  # once, whatever comes
        if pending is None:
            raise _Refused("no login under way in this browser (none, already used, or older "
                           "than 10 minutes)")
        if error:
            said = error if _PROVIDER_ERROR.match(error) else "(unreadable)"
            raise _Refused(f"the identity provider answered with the error {said}")
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise _Refused("the state of the answer is not the one this browser's login sent")
        if not code:
            raise _Refused("the identity provider's answer has no code")
        identity = _client(request).identify(code, pending)
        if identity.idnat is None:
            raise NotIdentified("the identity provider gave no idNat_PS for this person")
    except LoginFailed as refused:
        logger.warning("login refused: %s", refused.message)  # never a token or a cookie
        if not isinstance(refused, NotIdentified | _Refused):
            raise _Refused(refused.message) from refused
        raise
    sessions.close(request.cookies.get(SESSION_COOKIE))  # a new login replaces the old one
    cookie, _ = sessions.open(subject=identity.subject, idnat=identity.idnat,
                              person=identity.person)
    response = RedirectResponse(pending.next_path, status_code=303)
    _set(response, SESSION_COOKIE, cookie, int(sessions.lifetime_seconds))
    _forget(response, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    request.state.html_errors = True
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(login_session, request)
    if session is not None:
        await check_form(request, session)  # another site cannot log the person out either
        await run_in_threadpool(session_store(request).close, cookie)
    response = RedirectResponse("/login/done", status_code=303)
    _forget(response, SESSION_COOKIE)
    return response


@router.get("/login/done")
def logged_out() -> HTMLResponse:
    return message_page(200, "Vous êtes déconnecté(e)",
                        "Votre session liaison est fermée sur ce navigateur.", link=LOGIN_LINK)
