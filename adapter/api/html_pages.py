"""Pages in French for people using liaison in a browser: the login's outcome and the errors of
the coordinator's page (an API caller gets the same errors as OperationOutcome JSON)."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from adapter.errors import LiaisonError

_PAGES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                     autoescape=select_autoescape(["html"]))
LOGIN_LINK = ("/login", "Se connecter")
PAGE_LINK = ("/coordination/page", "Retour à la page de coordination")

# what a person is told for each status, unless the error says more (`french_title`/`_text`)
_SAID: dict[int, tuple[str, str]] = {
    400: ("Demande incomplète", "Ce qui a été envoyé ne peut pas être pris en compte."),
    401: ("Connexion nécessaire", "Votre session a pris fin ou vous n'êtes pas connecté(e)."),
    403: ("Accès refusé", "Votre compte ne permet pas d'ouvrir cette page ou de faire cette "
          "action : la page de coordination est réservée aux coordinateurs et coordinatrices "
          "de parcours qu'une CPTS a déclarés à liaison."),
    404: ("Introuvable", "Ce que vous cherchez n'existe pas ou ne vous est pas accessible."),
    409: ("Déjà fait", "Cela a déjà été fait (par vous ou par quelqu'un d'autre)."),
}


def message_page(status: int, title: str, text: str, *, detail: str | None = None,
                 link: tuple[str, str] | None = None, logout_csrf: str = "") -> HTMLResponse:
    body = _PAGES.get_template("message.html").render(
        title=title, text=text, detail=detail, link=link, logout_csrf=logout_csrf)
    return HTMLResponse(body, status_code=status)


def error_page(error: LiaisonError, *, logout_csrf: str = "") -> HTMLResponse:
    """An error of liaison told to a person: what it means for them, and the detail."""
    title, text = _SAID.get(error.http_status, ("Erreur", "La demande n'a pas abouti."))
    title = getattr(error, "french_title", None) or title
    text = getattr(error, "french_text", None) or text
    # refused (403): a way out is to log out and in as someone else, not back to the page
    link = {401: LOGIN_LINK, 403: None}.get(error.http_status, PAGE_LINK)
    return message_page(error.http_status, title, text, detail=error.message, link=link,
                        logout_csrf=logout_csrf)
