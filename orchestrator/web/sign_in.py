"""Signing in and out of the pages (core/web_sessions.py keeps the passwords and sessions).

A password is set with `spaceport user password NAME`; the pages then take it at /login.
Failed attempts per name are limited (FailedSignIns), so a name's password can't be guessed
at the speed of argon2 on this machine, and a flood of them can't take its CPU.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from orchestrator.core import external_sign_in, web_sessions
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import User
from orchestrator.core.settings import get_settings
from orchestrator.web.render import page
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)


class FailedSignIns:
    """At most `limit` failed sign-ins per name in `window` seconds (this process)."""

    def __init__(self, limit: int = 10, window: float = 300.0, max_names: int = 10_000) -> None:
        self.limit, self.window, self.max_names = limit, window, max_names
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> deque[float]:
        times = self._failures.setdefault(name.lower(), deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, name: str) -> bool:
        with self._lock:
            return len(self._recent(name, time.monotonic())) >= self.limit

    def failed(self, name: str) -> None:
        with self._lock:
            if len(self._failures) >= self.max_names:
                self._failures.clear()  # bounded memory: forget all rather than grow
            self._recent(name, time.monotonic()).append(time.monotonic())


FAILURES = FailedSignIns()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]


def _form(
    request: Request,
    viewer: Principal | None,
    next_path: str,
    name: str = "",
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings()
    return page(
        request,
        "login.html",
        viewer,
        status_code=status_code,
        next_path=next_path,
        name=name,
        error=error,
        sso_label=settings.oidc_button_label if external_sign_in.configured(settings) else "",
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, next: str = "/", viewer: Principal | None = Depends(page_viewer)
) -> HTMLResponse:
    return _form(request, viewer, safe_next(next))


@router.post("/login")
def login(
    request: Request,
    name: str = Form(default="", max_length=96),
    password: str = Form(default="", max_length=web_sessions.MAX_PASSWORD),
    next: str = Form(default="/", max_length=2000),
    session: Session = Depends(get_session),
) -> Response:
    target = safe_next(next)
    name = name.strip()
    if FAILURES.blocked(name):
        return _form(
            request,
            None,
            target,
            name,
            status_code=429,
            error="Too many failed sign-ins for this name: wait five minutes and try again.",
        )
    user = web_sessions.check_password(session, name, password)
    if user is None:
        FAILURES.failed(name)
        return _form(
            request,
            None,
            target,
            name,
            status_code=401,
            error="That name and password don't match. Check both and try again; an "
            "administrator sets passwords with `spaceport user password NAME`.",
        )
    return signed_in(session, user, target)


def signed_in(session: Session, user: User, target: str) -> RedirectResponse:
    """A new session for `user` (a password or the external provider proved who it is),
    its cookie, and on to `target`."""
    value, _row = web_sessions.start_session(session, user)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        web_sessions.COOKIE,
        value,
        max_age=int(get_settings().session_days * 86400),
        path="/",
        httponly=True,
        samesite="lax",
        secure=get_settings().public_url.startswith("https://"),
    )
    return response


@router.post("/logout")
def logout(
    request: Request,
    _sender: Principal = Depends(form_sender),
    session: Session = Depends(get_session),
) -> Response:
    web_sessions.end_session(session, request.cookies.get(web_sessions.COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(web_sessions.COOKIE, path="/")
    return response
