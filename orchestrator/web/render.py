"""Rendering a page: one Jinja2 environment, one layout (templates/base.html), and what every
page knows (who is signed in, where the static files are)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from orchestrator.core.auth import Principal
from orchestrator.web.viewer import csrf_of

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_ROUTE = "/static"
# A form's result, said once on the page it leads to (a cookie, so the URL stays clean).
NOTICE_COOKIE = "spaceport-notice"
MAX_NOTICE = 300


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.globals["query_with"] = query_with
    return env


@functools.cache
def _static_version() -> str:
    """A version for the static files' URLs, so a changed stylesheet is never read from a
    stale cache: the newest modification time among them."""
    return str(max(int(p.stat().st_mtime) for p in STATIC.iterdir()))


def static_url(name: str) -> str:
    return f"{STATIC_ROUTE}/{name}?v={_static_version()}"


def query_with(request: Request, **changes: object) -> str:
    """The request's query string with `changes` made (a pager's link keeps the filters)."""
    params = dict(request.query_params)
    params.update({k: str(v) for k, v in changes.items()})
    return urlencode(params)


def page(
    request: Request,
    template: str,
    viewer: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page `template` with `context`, inside the layout. `viewer` is who is signed in
    (None: nobody), for the header and for what the page offers."""
    notice = unquote(request.cookies.get(NOTICE_COOKIE, ""))[:MAX_NOTICE]
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            viewer=viewer,
            path=request.url.path,
            csrf=csrf_of(request),
            notice=notice,
            **context,
        )
    )
    response = HTMLResponse(
        html,
        status_code=status_code,
        # Pages are not framed by other sites (a Space's own iframe is the other way round).
        headers={"X-Frame-Options": "DENY", "Cache-Control": "no-store"},
    )
    if notice:
        response.delete_cookie(NOTICE_COOKIE, path="/")
    return response


def done(url: str, notice: str) -> RedirectResponse:
    """The answer to a form that worked: back to a page (303, so a reload doesn't send the
    form again), which says `notice` once."""
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        NOTICE_COOKIE,
        quote(notice[:MAX_NOTICE]),
        max_age=60,
        path="/",
        httponly=True,
        samesite="lax",
    )
    return response
