"""Bad input is the client's to fix: a 4xx in the Hub's error shape, never a 500.

* FastAPI's own validation (malformed JSON, a body that is not an object, a query or
  path parameter of the wrong type) answers 422 with one line naming what is wrong,
  in the same shape as every other error (X-Error-Message and {"error": ...}).
* A NUL character in a URL's path or query is refused with 400 before any route sees
  it: no name contains one, and PostgreSQL can't even compare text holding one.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.errors import header_safe

NUL_MESSAGE = "URLs must not contain NUL characters (%00)"


def _message(exc: RequestValidationError) -> str:
    problems = []
    for item in exc.errors():
        location = [str(part) for part in item.get("loc", ())]
        where = ".".join(location) or "request"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"X-Error-Message": header_safe(message)}
    )


class RefuseNul:
    """ASGI middleware: 400 for a NUL in the path or query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").lower()
            if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
                await _error(400, NUL_MESSAGE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _message(exc))

    app.add_middleware(RefuseNul)
