"""Bad input is the client's to fix: a 4xx in the Hub's error shape, never a 500.

* FastAPI's own validation (malformed JSON, a body that is not an object, a query or
  path parameter of the wrong type) answers 422 with one line naming what is wrong,
  in the same shape as every other error (orchestrator/api/errors.py).
* A NUL character in a URL's path or query is refused with 400 before any route sees
  it: no name contains one, and PostgreSQL can't even compare text holding one.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api import errors

NUL_MESSAGE = "URLs must not contain NUL characters (%00)"


class RefuseNul:
    """ASGI middleware: 400 for a NUL in the path or query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").lower()
            if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
                await errors.error_response(400, NUL_MESSAGE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    errors.install(app)
    app.add_middleware(RefuseNul)
