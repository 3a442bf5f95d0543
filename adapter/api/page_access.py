"""Who is using the coordinator's page, and whether a form they post is really theirs.

The page's routes take their caller from here, so that how a person proves who they are is
decided in one place:

- a bearer token, as every API client (it wins when present: a browser never adds one on its
  own, so nothing a browser sends by itself is taken for it);
- else a login session (`adapter/auth/sessions.py`, opened by `login_routes`): its cookie
  names the person, and the local directory says at each request whether they coordinate a
  CPTS (a coordinator removed from it no longer reads the page at the next load);
- else a browser (Accept: text/html) is sent to log in and brought back, and an API client
  gets 401 as before.

A form posted with a session must carry the session's CSRF token in its `csrf` field and, when
the browser says where the form comes from (`Origin`, else `Referer`), come from liaison's own
origin (`LIAISON_PUBLIC_BASE_URL`): another site can make a browser post with the cookie
(`SameSite=Lax` stops that for cross-site POSTs in current browsers, not for a sibling site),
never read the token. Errors met by a person with a session are answered as pages in French.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from adapter.auth.dependency import current_principal
from adapter.auth.principal import Principal
from adapter.auth.sessions import SESSION_COOKIE, LoginSession, SessionStore
from adapter.coordination.coordinators import territories_coordinated_by
from adapter.errors import Forbidden, Unauthorized


class LoginRequired(Unauthorized):
    """A browser without a session asked for the page: it is sent to log in, then back."""

    def __init__(self, next_path: str) -> None:
        super().__init__("log in to read this page")
        self.next_path = next_path


class FormRefused(Forbidden):
    """A form the session's person did not post from liaison's page (CSRF)."""

    french_title = "Formulaire refusé"
    french_text = ("Ce formulaire ne vient pas de la page de coordination ouverte dans votre "
                   "session (jeton anti-falsification absent ou faux, ou envoyé par un autre "
                   "site). Rien n'a été enregistré : rechargez la page et recommencez.")


def session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


def login_session(request: Request) -> LoginSession | None:
    """The session the request's cookie opens (looked up once per request)."""
    if not hasattr(request.state, "login_session"):
        request.state.login_session = session_store(request).find(
            request.cookies.get(SESSION_COOKIE))
    found: LoginSession | None = request.state.login_session
    return found


def _person(request: Request, session: LoginSession) -> Principal:
    # a person's errors are pages (`adapter/api/errors.py`), not OperationOutcome JSON
    request.state.html_errors = True
    engine = request.app.state.engine
    return session.principal(territories_coordinated_by(engine, session.idnat))


def _wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and \
        getattr(request.app.state, "oidc", None) is not None and \
        request.app.state.settings.auth_required


def page_principal(request: Request) -> Principal:
    """The person reading the page."""
    if "authorization" in request.headers:
        return current_principal(request)
    session = login_session(request)
    if session is not None:
        return _person(request, session)
    if _wants_page(request):
        query = f"?{request.url.query}" if request.url.query else ""
        raise LoginRequired(request.url.path + query)
    return current_principal(request)


async def form_principal(request: Request) -> Principal:
    """The person posting one of the page's forms. A bearer token is not sent by a browser on
    its own, so a form posted with one cannot be forged by another site; with a session, the
    form must come from liaison's page (same origin, the session's CSRF token)."""
    if "authorization" in request.headers:
        return current_principal(request)
    session = await run_in_threadpool(login_session, request)
    if session is None:
        return current_principal(request)
    request.state.html_errors = True
    await check_form(request, session)
    return await run_in_threadpool(_person, request, session)


async def check_form(request: Request, session: LoginSession) -> None:
    """FormRefused unless the form comes from liaison's origin with the session's token."""
    expected = _origin(request.app.state.settings.public_base_url)
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin is not None and origin.lower() != expected:
        raise FormRefused(f"the form was posted from another origin ({origin[:100]})")
    if origin is None and referer is not None and _origin(referer) != expected:
        raise FormRefused("the form was posted from another site (Referer)")
    sent = (await request.form()).get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(),
                                                            session.csrf.encode()):
        raise FormRefused("the form's csrf field is not this session's token")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def csrf_token(request: Request) -> str:
    """The value the page's forms carry in their hidden `csrf` field ('' without a session)."""
    session = getattr(request.state, "login_session", None)
    return session.csrf if isinstance(session, LoginSession) else ""


def signed_in_as(request: Request) -> str:
    """The name of the person whose session reads the page ('' with a bearer token)."""
    session = getattr(request.state, "login_session", None)
    return (session.person or session.idnat) if isinstance(session, LoginSession) else ""
