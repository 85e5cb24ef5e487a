"""Who is looking at a page, and who is sending a page's form.

A page's viewer is the principal the API sees (api/deps.current_principal: a token, or the
session cookie), except that a bad credential on a page is nobody rather than a 401, so a
stale cookie shows the page signed out instead of an error.

A form (a POST from one of the pages) is only taken from a signed-in session, with the
session's CSRF token in its `csrf` field: the one check every form route makes, here.
"""

from __future__ import annotations

from fastapi import Depends, Form, Request
from sqlmodel import Session

from orchestrator.api.deps import current_principal
from orchestrator.api.errors import HubError
from orchestrator.core import web_sessions
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session


def page_viewer(request: Request, session: Session = Depends(get_session)) -> Principal | None:
    try:
        return current_principal(request, session)
    except HubError:
        return None


class SignInNeeded(Exception):
    """A form sent by nobody signed in: answered with the sign-in page (web/errors.py)."""


class StaleForm(Exception):
    """A form whose CSRF token is not the session's (an old tab, or another site)."""


def form_sender(
    request: Request,
    csrf: str = Form(default="", max_length=128),
    session: Session = Depends(get_session),
) -> Principal:
    row = web_sessions.find_session(session, request.cookies.get(web_sessions.COOKIE))
    if row is None:
        raise SignInNeeded()
    if not web_sessions.csrf_matches(row, csrf):
        raise StaleForm()
    principal = web_sessions.principal_for_session(session, row)
    if principal is None:
        raise SignInNeeded()
    request.state.web_session = row
    return principal


def csrf_of(request: Request) -> str:
    """The signed-in session's CSRF token, for a page's forms and scripts ('' signed out)."""
    row = getattr(request.state, "web_session", None)
    return row.csrf_token if row is not None else ""
