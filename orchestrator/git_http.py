"""Git over smart HTTP at /spaces/{owner}/{name}[.git], served by git's own `git http-backend`.

Spaceport decides who may do what (tokens as HTTP Basic passwords); git does the protocol.
Pushes reach Spaceport through the post-receive hook (orchestrator/git_hook.py), whose
output the pusher sees as `remote:` lines while the request is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlmodel import Session

from orchestrator import spaces
from orchestrator.api.errors import header_safe
from orchestrator.auth import Access, AuthError, authenticate, may_create_in, space_access
from orchestrator.db import get_session
from orchestrator.settings import get_settings

router = APIRouter()

UPLOAD = "git-upload-pack"
RECEIVE = "git-receive-pack"
GIT_PATHS = ("info/refs", UPLOAD, RECEIVE)
HOOK_NAMES = ("post-receive",)


def hooks_dir() -> Path:
    return get_settings().home / "git-hooks"


def install_hooks() -> None:
    """Write the hooks every Space repo uses (through core.hooksPath), pointing at this
    Python, so a hook always runs the same Spaceport as the server."""
    directory = hooks_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        path = directory / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m orchestrator.git_hook {name}\n')
        path.chmod(0o755)


def _deny(status: int, message: str, *, ask_credentials: bool = False) -> Response:
    headers = {"X-Error-Message": header_safe(message)}
    if ask_credentials:
        headers["WWW-Authenticate"] = 'Basic realm="Spaceport", charset="UTF-8"'
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


def _not_found() -> Response:
    """The one answer, once signed in, for a Space that is missing, private to someone
    else, or in a namespace you can't create in: the same status, body and headers, so
    none of them can be told from another."""
    return _deny(
        404,
        "Repository not found (to create a Space, push to your own namespace with a write token)",
    )


def _service(path: str, request: Request) -> str | None:
    if path == "info/refs":
        return request.query_params.get("service") or UPLOAD
    return path if path in (UPLOAD, RECEIVE) else None


@router.api_route("/spaces/{owner}/{repo}/{path:path}", methods=["GET", "POST"])
async def git_smart_http(
    owner: str, repo: str, path: str, request: Request, session: Session = Depends(get_session)
) -> Response:
    name = repo.removesuffix(".git")
    service = _service(path, request)
    if service not in (UPLOAD, RECEIVE) or path not in GIT_PATHS:
        return _deny(404, "Not found")
    try:
        principal = authenticate(session, request.headers.get("authorization"))
    except AuthError as exc:
        return _deny(401, str(exc), ask_credentials=True)

    space = spaces.get_space(session, owner, name)
    if service == RECEIVE:
        if principal is None:
            return _deny(401, "Pushing needs a token: use it as the password", ask_credentials=True)
        if space is None:
            if not may_create_in(principal, owner):
                if principal.user.name == owner:
                    return _deny(403, "Your token is read-only: push with a write token")
                # Not a 403: that would tell a missing Space from a private one.
                return _not_found()
            try:
                space = spaces.create_space(session, principal.user, name)
            except spaces.SpaceNameError as exc:
                return _deny(400, str(exc))
        access = space_access(principal, space)
        if access == Access.NONE:
            return _not_found()
        if access != Access.WRITE:
            if principal.user.id == space.owner_id:
                return _deny(403, "Your token is read-only: push with a write token")
            return _deny(403, f"You don't have write access to {space.full_name}")
    else:
        if space is None or space_access(principal, space) == Access.NONE:
            if principal is None:
                # git sends the credentials of a URL only after a challenge, so an anonymous
                # request for a Space it can't see gets one; missing and private Spaces get
                # the same answer, so nothing leaks.
                return _deny(401, "Authentication required", ask_credentials=True)
            return _not_found()

    env = _cgi_environment(request, owner, name, path, principal.user.name if principal else None)
    if space is not None and space.id is not None:
        env["SPACEPORT_PUSH_SPACE_ID"] = str(space.id)
    return await _run_http_backend(request, env)


def _cgi_environment(
    request: Request, owner: str, name: str, path: str, user: str | None
) -> dict[str, str]:
    settings = get_settings()
    env = dict(os.environ)
    env.update(
        {
            "GIT_PROJECT_ROOT": str(settings.repos_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{owner}/{name}.git/{path}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.url.query,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "REMOTE_ADDR": request.client.host if request.client else "",
            # Hooks are Spaceport's, whatever a repo's own config says.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "core.hooksPath",
            "GIT_CONFIG_VALUE_0": str(hooks_dir()),
        }
    )
    if user:
        env["REMOTE_USER"] = user
        env["SPACEPORT_PUSHER"] = user
    if encoding := request.headers.get("content-encoding"):
        env["HTTP_CONTENT_ENCODING"] = encoding
    if protocol := request.headers.get("git-protocol"):
        env["GIT_PROTOCOL"] = protocol
    return env


async def _run_http_backend(request: Request, env: dict[str, str]) -> Response:
    # The body is spooled to a file first: http-backend wants CONTENT_LENGTH, and git sends
    # large packs chunked.
    body = tempfile.TemporaryFile()
    size = 0
    async for chunk in request.stream():
        body.write(chunk)
        size += len(chunk)
    body.seek(0)
    env["CONTENT_LENGTH"] = str(size)
    process = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=body,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    body.close()
    assert process.stdout is not None
    status, headers = await _read_cgi_headers(process.stdout)
    return StreamingResponse(
        _stream_output(process),
        status_code=status,
        headers=headers,
        media_type=headers.pop("content-type", None),
    )


async def _read_cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status = 200
    headers: dict[str, str] = {}
    while True:
        line = (await stdout.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            return status, headers
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "status":
            status = int(value.split()[0])
        else:
            headers[key] = value


async def _stream_output(process: asyncio.subprocess.Process) -> AsyncIterator[bytes]:
    assert process.stdout is not None
    finished = False
    try:
        while chunk := await process.stdout.read(65536):
            yield chunk
        await process.wait()
        finished = True
    finally:
        if not finished:
            # The client went away (Ctrl-C during the build log, say). The refs are
            # already updated and the build is queued; let git finish quietly.
            asyncio.get_running_loop().create_task(_drain(process))


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    with contextlib.suppress(Exception):
        while await process.stdout.read(65536):
            pass
        await process.wait()
