"""Errors in the shapes huggingface_hub maps to its exceptions: X-Error-Code and
X-Error-Message headers plus a JSON {"error": ...} body."""

from __future__ import annotations

from fastapi import HTTPException

REPO_NOT_FOUND = "RepoNotFound"


class HubError(HTTPException):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="Spaceport"'
        super().__init__(status_code=status, detail=message, headers=headers)


def repo_not_found(full_name: str) -> HubError:
    return HubError(404, f"Repository not found: {full_name}", REPO_NOT_FOUND)
