"""The Git LFS batch API of every Space, at /spaces/{owner}/{name}.git/info/lfs, for the
real `git-lfs` client and for huggingface_hub's LFS uploads.

Transfers go to signed URLs (`.../info/lfs/objects/{oid}?size=&expires=&sig=`) rather than
to URLs that need the caller's token: huggingface_hub PUTs uploads with no Authorization and
ignores the action's `header`, so the URL itself has to carry the permission. A signature
covers the method, Space, oid, size and expiry, with a key kept in $SPACEPORT_HOME.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from sqlmodel import Session

from orchestrator.api import bodies, wire
from orchestrator.api.deps import origin
from orchestrator.api.errors import ERROR_RESPONSES, HubError, error_headers, error_response
from orchestrator.api.renames import SpaceMoved
from orchestrator.core import url_signing
from orchestrator.core.auth import (
    Access,
    AuthError,
    authenticate,
    only_token_blocks_write,
    space_access,
)
from orchestrator.core.db import get_session
from orchestrator.core.limits import TOO_LARGE, check_space_room
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces

router = APIRouter(responses=ERROR_RESPONSES)

MEDIA_TYPE = "application/vnd.git-lfs+json"
UPLOAD_SECONDS = 24 * 3600  # an upload URL only accepts the exact bytes it names
DOWNLOAD_SECONDS = 3600


def _error(
    status: int, message: str, *, ask_credentials: bool = False, code: str | None = None
) -> JSONResponse:
    # The one error shape, plus `message` for git-lfs, which asks for Basic credentials.
    headers = error_headers(status, message, code)
    if ask_credentials or status == 401:
        challenge = 'Basic realm="Spaceport", charset="UTF-8"'
        headers |= {"WWW-Authenticate": challenge, "LFS-Authenticate": challenge}
    return error_response(status, message, headers=headers, media_type=MEDIA_TYPE, lfs=True)


def _signature(method: str, space: Space, oid: str, size: int, expires: int) -> str:
    return url_signing.signature("lfs-signing.key", method, space.id, oid, size, expires)


def _signed_url(request: Request, method: str, space: Space, oid: str, size: int) -> str:
    expires = int(time.time()) + (UPLOAD_SECONDS if method == "PUT" else DOWNLOAD_SECONDS)
    signature = _signature(method, space, oid, size, expires)
    return (
        f"{origin(request)}/spaces/{space.owner}/{space.name}.git/info/lfs/objects/{oid}"
        f"?size={size}&expires={expires}&sig={signature}"
    )


def _signed_size(request: Request, space: Space, oid: str) -> int | None:
    """The size a signed URL allows for this request, or None when it isn't validly signed."""
    query = request.query_params
    try:
        size, expires = int(query.get("size", "")), int(query.get("expires", ""))
    except ValueError:
        return None
    if expires < time.time():
        return None
    expected = _signature(request.method, space, oid, size, expires)
    return size if url_signing.matches(expected, query.get("sig", "")) else None


def _access(
    session: Session, request: Request, owner: str, repo: str, need: Access
) -> Space | JSONResponse:
    """The Space, or the refusal git's own endpoints would give (git_http.py):
    anonymous callers get a Basic challenge so git-lfs retries with the remote's token."""
    try:
        principal = authenticate(session, request.headers.get("authorization"))
    except AuthError as exc:
        return _error(401, str(exc), ask_credentials=True)
    space = spaces.get_space(session, owner, repo.removesuffix(".git"))
    if space is None and (moved := spaces.moved_space(session, owner, repo.removesuffix(".git"))):
        if space_access(principal, moved) != Access.NONE:  # an old id: to the current one
            raise SpaceMoved(owner, repo.removesuffix(".git"), moved)
    access = space_access(principal, space) if space else Access.NONE
    if space is None or access.value < need.value:
        if principal is None:
            return _error(401, "Authentication required", ask_credentials=True)
        if access == Access.NONE:
            return _error(404, "Repository not found", code="RepoNotFound")
        if only_token_blocks_write(principal, space):
            return _error(403, "Your token is read-only: use a write token")
        return _error(403, f"You don't have write access to {space.full_name}")
    return space


def _object_error(oid: object, size: object, code: int, message: str) -> wire.LfsObject:
    return wire.LfsObject(oid=oid, size=size, error=wire.LfsObjectError(code=code, message=message))


@router.post(
    "/spaces/{owner}/{repo}/info/lfs/objects/batch",
    responses={200: {"model": wire.LfsBatch, "content": {MEDIA_TYPE: {}}}},
)
def batch(
    owner: str,
    repo: str,
    request: Request,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
) -> JSONResponse:
    try:
        bodies.check(bodies.LfsBatch, body)
    except HubError as exc:
        return _error(422, exc.detail)
    operation = body.get("operation")
    space = _access(
        session, request, owner, repo, Access.WRITE if operation == "upload" else Access.READ
    )
    if isinstance(space, JSONResponse):
        return space
    assert space.id is not None
    if operation == "upload":
        lfs.disable_repo_filters(repos.repo_path(space.owner, space.name))
    objects = body.get("objects")
    if not isinstance(objects, list):
        return _error(422, "objects must be a list")
    wanted = [o for o in objects if isinstance(o, dict) and isinstance(o.get("oid"), str)]
    have = lfs.recorded(session, space.id, [o["oid"] for o in wanted if lfs.valid_oid(o["oid"])])
    if operation == "upload":
        refused = _room_for(session, space, wanted, have)
        if refused is not None:
            return refused
    most = get_settings().max_lfs_object_bytes
    answers = []
    for item in objects:
        oid = item.get("oid") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(oid, str) or not lfs.valid_oid(oid):
            answers.append(_object_error(oid, size, 422, "oid must be a sha256 (64 hex digits)"))
        elif type(size) is not int or size < 0:
            answers.append(_object_error(oid, size, 422, "size must be a non-negative integer"))
        elif operation == "upload" and size > most:
            message = f"{size} bytes is over the limit of {most} (SPACEPORT_MAX_LFS_OBJECT_BYTES)"
            answers.append(_object_error(oid, size, 413, message))
        elif operation == "upload":
            answers.append(_upload_answer(request, space, oid, size, have))
        elif oid in have and lfs.has_object(oid, have[oid]):
            url = _signed_url(request, "GET", space, oid, have[oid])
            answers.append(_answer(oid, have[oid], "download", url, DOWNLOAD_SECONDS))
        else:
            answers.append(_object_error(oid, size, 404, "Object does not exist"))
    answer = wire.LfsBatch(objects=answers)
    return JSONResponse(answer.model_dump(mode="json"), media_type=MEDIA_TYPE)


def _room_for(
    session: Session, space: Space, wanted: list[dict[str, Any]], have: dict[str, int]
) -> JSONResponse | None:
    """The 413 when the objects this Space doesn't hold yet would take it past
    SPACEPORT_MAX_REPO_BYTES; None when they fit."""
    incoming = sum(
        o["size"]
        for o in wanted
        if type(o.get("size")) is int and o["size"] > 0 and o["oid"] not in have
    )
    try:
        check_space_room(session, space, incoming)
    except HubError as exc:
        return _error(413, exc.detail, code=TOO_LARGE)
    return None


def _upload_answer(
    request: Request, space: Space, oid: str, size: int, have: dict[str, int]
) -> wire.LfsObject:
    if have.get(oid) == size and lfs.has_object(oid, size):
        # No actions: the client skips it. Only for objects this Space already has: one
        # stored for another Space must be uploaded again, which proves the caller has it.
        return wire.LfsObject(oid=oid, size=size, authenticated=True)
    url = _signed_url(request, "PUT", space, oid, size)
    return _answer(oid, size, "upload", url, UPLOAD_SECONDS)


def _answer(oid: str, size: int, action: str, href: str, seconds: int) -> wire.LfsObject:
    return wire.LfsObject(
        oid=oid,
        size=size,
        authenticated=True,
        actions={action: wire.LfsAction(href=href, expires_in=seconds)},
    )


@router.put("/spaces/{owner}/{repo}/info/lfs/objects/{oid}")
async def upload_object(
    owner: str, repo: str, oid: str, request: Request, session: Session = Depends(get_session)
) -> Response:
    space = spaces.get_space(session, owner, repo.removesuffix(".git"))
    size = _signed_size(request, space, oid) if space and lfs.valid_oid(oid) else None
    if space is None or space.id is None or size is None:
        return _error(403, "This upload URL is invalid or has expired: ask the batch API again")
    writer = lfs.ObjectWriter(oid, size)
    try:
        async for chunk in request.stream():
            writer.write(chunk)
        writer.commit()
    except lfs.ObjectError as exc:
        writer.abort()
        return _error(400, str(exc))
    except BaseException:
        writer.abort()  # the client went away mid-upload
        raise
    lfs.record(session, space.id, oid, size)
    return Response(status_code=200)


@router.get("/spaces/{owner}/{repo}/info/lfs/objects/{oid}")
def download_object(
    owner: str, repo: str, oid: str, request: Request, session: Session = Depends(get_session)
) -> Response:
    """A signed download URL from the batch API; or, for clients that come straight here,
    the caller's own read access."""
    space = spaces.get_space(session, owner, repo.removesuffix(".git"))
    if space is None or space.id is None or _signed_size(request, space, oid) is None:
        found = _access(session, request, owner, repo, Access.READ)
        if isinstance(found, JSONResponse):
            return found
        space = found
    assert space.id is not None
    have = lfs.recorded(session, space.id, [oid]) if lfs.valid_oid(oid) else {}
    if oid not in have or not lfs.has_object(oid, have[oid]):
        return _error(404, "Object does not exist")
    return FileResponse(lfs.store_path(oid), media_type="application/octet-stream")


# One route per method: each gets its own OpenAPI operation id.
@router.get("/spaces/{owner}/{repo}/info/lfs/locks")
@router.post("/spaces/{owner}/{repo}/info/lfs/locks")
@router.get("/spaces/{owner}/{repo}/info/lfs/locks/{rest:path}")
@router.post("/spaces/{owner}/{repo}/info/lfs/locks/{rest:path}")
def locks(owner: str, repo: str) -> JSONResponse:
    """Spaceport has no file locking. git-lfs takes a 501 as "not implemented" and quietly
    sets `lfs.<url>.locksverify false` for the remote (seen with git-lfs 3.3); an answer
    with empty lock lists would make it suggest enabling verification on every push."""
    return _error(501, "Spaceport does not implement Git LFS file locking")
