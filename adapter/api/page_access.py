"""Who is using the coordinator's page, and whether a form they post is really theirs.

The page's routes take their caller from here, so that how a person proves who they are
(a bearer token today; a login session once people log in) is decided in one place.
"""

from __future__ import annotations

from fastapi import Request

from adapter.auth.dependency import current_principal
from adapter.auth.principal import Principal


def page_principal(request: Request) -> Principal:
    """The person reading the page."""
    return current_principal(request)


async def form_principal(request: Request) -> Principal:
    """The person posting one of the page's forms. A bearer token is not sent by a browser on
    its own, so a form posted with one cannot be forged by another site."""
    return current_principal(request)


def csrf_token(request: Request) -> str:
    """The value the page's forms carry in their hidden `csrf` field ('' without a session)."""
    return ""
