"""Errors in the shapes huggingface_hub maps to its exceptions: X-Error-Code and
X-Error-Message headers plus a JSON {"error": ...} body."""

from __future__ import annotations

from fastapi import HTTPException

REPO_NOT_FOUND = "RepoNotFound"
HEADER_MESSAGE_LIMIT = 1000


def header_safe(message: str) -> str:
    """The message as an HTTP header value: one line of printable ASCII (other characters
    escaped), at most HEADER_MESSAGE_LIMIT long. A name or path from the request may hold
    anything; a header that can't be encoded would turn a refusal into a 500, and a line
    break in one would end the headers. The JSON body keeps the message as it is."""
    one_line = " ".join(message.splitlines())
    escaped = one_line.encode("ascii", "backslashreplace").decode("ascii")
    printable = "".join(c if " " <= c <= "~" else "?" for c in escaped)
    return printable[:HEADER_MESSAGE_LIMIT]


class HubError(HTTPException):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": header_safe(message)}
        if code:
            headers["X-Error-Code"] = code
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="Spaceport"'
        super().__init__(status_code=status, detail=message, headers=headers)


def repo_not_found(full_name: str) -> HubError:
    return HubError(404, f"Repository not found: {full_name}", REPO_NOT_FOUND)
