"""The one error shape of every API route, as huggingface_hub maps it to its exceptions:
a JSON body `{"error": message}` (orchestrator/api/wire.py's ErrorBody) with the
X-Error-Message header, and X-Error-Code where the client branches on it (RepoNotFound,
RevisionNotFound, EntryNotFound...).

Routes raise `HubError`; `install` makes FastAPI's own refusals (an unknown route, a
method the route lacks, a body or parameter that fails validation) and an unexpected
failure answer in the same shape, so no client ever sees `{"detail": ...}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.api.wire import ErrorBody
from orchestrator.billing.accounts import OutOfCredit

REPO_NOT_FOUND = "RepoNotFound"
HEADER_MESSAGE_LIMIT = 1000
# What a route's OpenAPI entry says its refusals look like.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused: `error` says what to fix"},
}


def header_safe(message: str) -> str:
    """The message as an HTTP header value: one line of printable ASCII (other characters
    escaped), at most HEADER_MESSAGE_LIMIT long. A name or path from the request may hold
    anything; a header that can't be encoded would turn a refusal into a 500, and a line
    break in one would end the headers. The JSON body keeps the message as it is."""
    one_line = " ".join(message.splitlines())
    escaped = one_line.encode("ascii", "backslashreplace").decode("ascii")
    printable = "".join(c if " " <= c <= "~" else "?" for c in escaped)
    return printable[:HEADER_MESSAGE_LIMIT]


def error_headers(status: int, message: str, code: str | None = None) -> dict[str, str]:
    headers = {"X-Error-Message": header_safe(message)}
    if code:
        headers["X-Error-Code"] = code
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="Spaceport"'
    return headers


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    url: str | None = None,
    media_type: str | None = None,
    lfs: bool = False,
) -> JSONResponse:
    """The error answer. `url`: where the Space that already exists is (a 409 on create);
    `lfs`: the message also as `message`, which git-lfs prints."""
    body = ErrorBody(error=message, url=url, message=message if lfs else None)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status,
        headers=(headers if headers is not None else error_headers(status, message, code)),
        media_type=media_type,
    )


class HubError(HTTPException):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(
            status_code=status, detail=message, headers=error_headers(status, message, code)
        )


def repo_not_found(full_name: str) -> HubError:
    return HubError(404, f"Repository not found: {full_name}", REPO_NOT_FOUND)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for item in exc.errors():
        location = [str(part) for part in item.get("loc", ())]
        where = ".".join(location) or "request"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def install(app: FastAPI) -> None:
    """Every refusal, FastAPI's and Starlette's included, in the one shape."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if isinstance(exc, HubError):
            return error_response(exc.status_code, message, headers=exc.headers)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No such route: {request.url.path} (see /docs for the API)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        headers = error_headers(exc.status_code, message) | dict(exc.headers or {})
        return error_response(exc.status_code, message, headers=headers)

    @app.exception_handler(OutOfCredit)
    async def out_of_credit(_request: Request, exc: OutOfCredit) -> JSONResponse:
        # 402 Payment Required: a paid tier asked for without credit; the message says
        # what it costs and who can grant some.
        return error_response(402, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # A value that failed validation is never echoed: it may be a secret.
        return error_response(422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def server_error(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette logs the exception and re-raises it after this answer is sent.
        return error_response(500, "Internal server error: the server's log says why")
