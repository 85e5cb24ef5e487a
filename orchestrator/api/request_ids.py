"""X-Request-Id on every answer of the control plane (API, git, LFS), as the Hub sends it:
the client's own id when it sent a sane one, else a new random one. huggingface_hub puts
it in its exceptions' messages ("(Request ID: ...)"), and the server's access log line
ends with the same `request_id=...`, so a user can report one and the admin find it.

Space hosts are not touched: what a Space's app answers is the app's own.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
from contextvars import ContextVar
from typing import Any

import uvicorn.config
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
# Letters, digits and a little punctuation (UUIDs, AWS trace ids "Root=1-...", base64url):
# anything else, or longer, would be a header or log line someone else wrote.
SANE = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}$")

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_id() -> str:
    return secrets.token_hex(16)


def _incoming(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == HEADER and SANE.match(value):
            return value.decode("ascii")
    return None


class RequestIds:
    """ASGI middleware: the request's id in `current` while it is served (uvicorn writes
    its access log line from inside the response's `send`, so the filter below sees it),
    and in the X-Request-Id header of the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope) or new_id()
        token = current.set(request_id)

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            current.reset(token)


class AccessLogRequestId(logging.Filter):
    """Gives each access log record its `request_id` field: ` request_id=...` for a
    control-plane request, empty for a Space host's (see uvicorn_log_config)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current.get()
        record.request_id = f" request_id={request_id}" if request_id else ""
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging config, its access lines ending with the request's id (its
    access formatter builds the line from the record's fields, not from the message)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["access"]["fmt"] += "%(request_id)s"
    return config
