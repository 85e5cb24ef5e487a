"""How the pages say no: a page in plain words, with the details behind a toggle, in the
same layout as every other page (templates/error.html). The API keeps its JSON error shape
(api/errors.py); these are for people."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from orchestrator.core.auth import Principal
from orchestrator.web.render import page
from orchestrator.web.viewer import SignInNeeded, StaleForm


def error_page(
    request: Request,
    viewer: Principal | None,
    status_code: int,
    heading: str,
    message: str,
    details: str = "",
) -> HTMLResponse:
    return page(
        request,
        "error.html",
        viewer,
        status_code=status_code,
        heading=heading,
        message=message,
        details=details,
    )


def not_found(request: Request, viewer: Principal | None, what: str = "page") -> HTMLResponse:
    """The one 404 of the pages: a private Space reads exactly as a missing one."""
    return error_page(
        request,
        viewer,
        404,
        "Not found",
        f"There is no {what} here, or you are not allowed to see it."
        + ("" if viewer else " Signing in may show it."),
    )


def sign_in_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_path, safe='/')}", status_code=303)


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, _exc: SignInNeeded) -> Response:
        return sign_in_redirect(request.url.path)

    @app.exception_handler(StaleForm)
    async def _stale(request: Request, _exc: StaleForm) -> Response:
        return error_page(
            request,
            None,
            403,
            "This form is out of date",
            "The form was sent from a page older than your current sign-in (or from another "
            "site). Go back, reload the page and send it again.",
        )
