"""Git over smart HTTP at /spaces/{owner}/{name}[.git], served by git's own `git http-backend`.

Spaceport decides who may do what (tokens as HTTP Basic passwords); git does the protocol.
Pushes reach Spaceport through the post-receive hook (orchestrator/push/git_hook.py), whose
output the pusher sees as `remote:` lines while the request is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from orchestrator.api import renames
from orchestrator.api.errors import HubError, header_safe
from orchestrator.community import pull_requests as pr_pushes
from orchestrator.core import organizations as orgs
from orchestrator.core.auth import (
    Access,
    AuthError,
    authenticate,
    may_create_in,
    only_token_blocks_write,
    space_access,
)
from orchestrator.core.db import session_scope
from orchestrator.core.limits import check_build_room, check_space_count, check_space_room
from orchestrator.core.models import Space, User
from orchestrator.core.settings import get_settings
from orchestrator.push import ref_limit
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces

router = APIRouter()

UPLOAD = "git-upload-pack"
RECEIVE = "git-receive-pack"
GIT_PATHS = ("info/refs", UPLOAD, RECEIVE)
HOOK_NAMES = (ref_limit.HOOK_NAME, "post-receive")  # pre-receive: the branch and tag limit
SPOOL_BATCH = 1 << 20  # bytes of a request body held before they are written out


def hooks_dir() -> Path:
    return get_settings().home / "git-hooks"


def install_hooks() -> None:
    """Write the hooks every Space repo uses (through core.hooksPath), pointing at this
    Python, so a hook always runs the same Spaceport as the server."""
    directory = hooks_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        path = directory / name
        hook = "orchestrator.push.git_hook"
        if name == ref_limit.HOOK_NAME:  # shell only: it runs on every push
            path.write_text(ref_limit.script(get_settings().max_refs_per_space))
        else:
            path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {hook} {name}\n')
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


@dataclass(frozen=True)
class Grant:
    """What `_authorize` allows: the Space (None for a clone of nothing, answered by git),
    who asked, and whether this request carries a push's pack."""

    space_id: int | None
    user: str | None
    pushes: bool
    # False for someone who may read the Space but not write it: such a push may only
    # update their own pull requests, refs/pr/N (checked in `admit`, which sees the refs).
    writer: bool = True
    user_id: int | None = None


# Only git's own paths: any other URL under a Space (`/spaces/demo/resolve/...` of an id
# without a namespace) is left to the API's routes and their Hub-shaped answers.
@router.api_route("/spaces/{owner}/{repo}/info/refs", methods=["GET", "POST"])
@router.api_route("/spaces/{owner}/{repo}/" + UPLOAD, methods=["GET", "POST"])
@router.api_route("/spaces/{owner}/{repo}/" + RECEIVE, methods=["GET", "POST"])
async def git_smart_http(owner: str, repo: str, request: Request) -> Response:
    path = next(p for p in GIT_PATHS if request.url.path.endswith("/" + p))
    name = repo.removesuffix(".git")
    service = _service(path, request)
    if service not in (UPLOAD, RECEIVE) or path not in GIT_PATHS:
        return _deny(404, "Not found")
    # git's smart HTTP: refs are read with GET, packs sent with POST. git http-backend
    # would answer the other method with an empty 400, so say it here.
    method = "GET" if path == "info/refs" else "POST"
    if request.method != method:
        return _deny(405, f"{path} takes {method} (git's smart HTTP protocol)")
    # Token lookup, Space lookup and create-on-push (a row and `git init`) are database
    # and disk work: in a thread, never on the event loop that proxies every Space.
    current = await run_in_threadpool(
        _current_name, owner, name, request.headers.get("authorization")
    )
    if isinstance(current, Space):  # an old id after move_repo: git follows the redirect
        return renames.redirect(request, owner, name, current)
    owner, name = current
    decision = await run_in_threadpool(
        _authorize,
        owner,
        name,
        service,
        request.headers.get("authorization"),
        pushes=path == RECEIVE and request.method == "POST",
    )
    if isinstance(decision, Response):
        return decision

    env = _cgi_environment(request, owner, name, path, decision.user)
    if decision.space_id is not None:
        env["SPACEPORT_PUSH_SPACE_ID"] = str(decision.space_id)
    gzipped = bool(request.headers.get("content-encoding"))

    def admit(body: IO[bytes], size: int) -> None:
        """Before git sees a pack: the Space must have room for it, and, when it updates
        main (which builds), its owner room for one more build (the SPACEPORT_MAX_* limits).
        Runs in a thread."""
        if not decision.pushes or decision.space_id is None:
            return
        with session_scope() as session:
            pushed = session.get(Space, decision.space_id)
            if pushed is None:
                raise HubError(404, "The Space was deleted during the push")
            check_space_room(session, pushed, size)
            _check_pull_request_refs(session, pushed, decision, body, gzipped)
            body.seek(0)
            if gzipped or repos.DEPLOY_REF in _updated_refs(body):
                check_build_room(session, pushed)

    try:
        return await _run_http_backend(request, env, admit)
    except HubError as exc:
        return _deny(exc.status_code, exc.detail)


def _current_name(owner: str, name: str, authorization: str | None) -> tuple[str, str] | Space:
    """The Space's id as stored (ids are compared regardless of case), the Space that had
    this id before a move when the caller may see it (its URLs redirect), else the id as
    asked (a first push creates it). Blocking (database)."""
    with session_scope() as session:
        if (space := spaces.get_space(session, owner, name)) is not None:
            return space.owner, space.name
        if (moved := spaces.moved_space(session, owner, name)) is not None:
            try:
                principal = authenticate(session, authorization)
            except AuthError:
                principal = None  # _authorize answers the bad credentials
            if space_access(principal, moved) != Access.NONE:
                return moved
        return owner, name


def _authorize(
    owner: str, name: str, service: str, authorization: str | None, *, pushes: bool
) -> Grant | Response:
    """Who may do what to owner/name, creating the Space on a first push to one's own
    namespace: a Grant, or the refusal to send. Blocking (database, `git init`)."""
    with session_scope() as session:
        try:
            principal = authenticate(session, authorization)
        except AuthError as exc:
            return _deny(401, str(exc), ask_credentials=True)

        space = spaces.get_space(session, owner, name)
        if service == RECEIVE:
            if principal is None:
                return _deny(
                    401, "Pushing needs a token: use it as the password", ask_credentials=True
                )
            if space is None:
                if not may_create_in(principal, owner):
                    member = principal.role_in_named(owner) is not None
                    if (principal.is_named(owner) or member) and not principal.can_write:
                        return _deny(403, "Your token is read-only: push with a write token")
                    if member:  # sees the whole org: a 403 tells nothing new
                        return _deny(403, f"Your role in {owner} can't create Spaces")
                    # Not a 403: that would tell a missing Space from a private one.
                    return _not_found()
                if pushes:
                    # git always reads the refs first, which creates the Space; a pack sent
                    # to a missing one is nobody's push (it would create one from garbage).
                    return _not_found()
                # One's own namespace, or an organisation where one may create Spaces.
                namespace = (
                    principal.user if principal.is_named(owner) else orgs.get_org(session, owner)
                )
                if namespace is None:
                    return _not_found()
                try:
                    check_space_count(session, namespace, admin=principal.is_admin)
                    space = spaces.create_space(session, namespace, name, actor=principal.user.name)
                    space.creator_id = principal.user.id  # a contributor writes to it
                    session.add(space)
                    session.commit()
                except spaces.SpaceNameError as exc:
                    return _deny(400, str(exc))
                except HubError as exc:
                    return _deny(exc.status_code, exc.detail)
            access = space_access(principal, space)
            if access == Access.NONE:
                return _not_found()
            if access != Access.WRITE:
                if only_token_blocks_write(principal, space):
                    return _deny(403, "Your token is read-only: push with a write token")
                if not principal.can_write:
                    return _deny(403, f"You don't have write access to {space.full_name}")
                # A reader with a write token: their own pull requests only, as on the Hub.
                return Grant(space.id, principal.user.name, pushes, False, principal.user.id)
        elif space is None or space_access(principal, space) == Access.NONE:
            if principal is None:
                # git sends the credentials of a URL only after a challenge, so an anonymous
                # request for a Space it can't see gets one; missing and private Spaces get
                # the same answer, so nothing leaks.
                return _deny(401, "Authentication required", ask_credentials=True)
            return _not_found()
        return Grant(
            space_id=space.id if space is not None else None,
            user=principal.user.name if principal else None,
            pushes=pushes and space is not None,
            user_id=principal.user.id if principal else None,
        )


def _check_pull_request_refs(
    session: Session, space: Space, grant: Grant, body: IO[bytes], gzipped: bool
) -> None:
    """refs/pr/N takes updates of open pull requests only; a reader's push nothing else,
    and only of their own (community.pull_requests.check_push). HubError says why."""
    body.seek(0)
    updates = _ref_updates(body)
    if not grant.writer and gzipped:
        raise HubError(403, f"You don't have write access to {space.full_name}")
    if grant.writer and not any(ref.startswith("refs/pr/") for _old, _new, ref in updates):
        return
    user = session.get(User, grant.user_id) if grant.user_id is not None else None
    if user is None:
        raise HubError(403, f"You don't have write access to {space.full_name}")
    pr_pushes.check_push(session, space, user, grant.writer, updates)


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


async def _run_http_backend(
    request: Request, env: dict[str, str], admit: Callable[[IO[bytes], int], None]
) -> Response:
    # The body is spooled to a file first: http-backend wants CONTENT_LENGTH, and git sends
    # large packs chunked. The body-size middleware stops one over SPACEPORT_MAX_PUSH_BYTES
    # mid-way (a HubError from the stream), before git has seen any of it.
    # Disk writes go to a thread, a batch at a time: a pack arrives in small chunks and the
    # event loop must not wait on the disk for any of them.
    body = await run_in_threadpool(tempfile.TemporaryFile)
    try:
        size = await _spool(request.stream(), body)
        try:
            await run_in_threadpool(admit, body, size)
        except HubError as exc:
            # The whole request was read: answer in git's protocol, so that git prints why
            # (an HTTP error status would show only its number).
            return await run_in_threadpool(_push_refused, body, exc.detail)
        await run_in_threadpool(body.seek, 0)
        env["CONTENT_LENGTH"] = str(size)
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=body,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
    finally:
        # git has its own descriptor of the file by now (or never will).
        await run_in_threadpool(body.close)
    assert process.stdout is not None
    status, headers = await _read_cgi_headers(process.stdout)
    return StreamingResponse(
        _stream_output(process),
        status_code=status,
        headers=headers,
        media_type=headers.pop("content-type", None),
    )


async def _spool(chunks: AsyncIterator[bytes], body: IO[bytes]) -> int:
    """Write a request body to ``body`` off the event loop, in batches of SPOOL_BATCH
    bytes; the size written, with ``body`` at its start."""
    size = 0
    batch: list[bytes] = []
    batched = 0
    async for chunk in chunks:
        batch.append(chunk)
        batched += len(chunk)
        size += len(chunk)
        if batched >= SPOOL_BATCH:
            await run_in_threadpool(body.writelines, batch)
            batch, batched = [], 0
    if batch:
        await run_in_threadpool(body.writelines, batch)
    await run_in_threadpool(body.seek, 0)
    return size


def _commands(body: IO[bytes]) -> tuple[list[str], set[str]]:
    """The refs a receive-pack request updates and the capabilities it asks: its first
    pkt-lines, `old new ref[\0caps]`, up to the flush packet (the pack follows)."""
    refs: list[str] = []
    caps: set[str] = set()
    while len(header := body.read(4)) == 4 and header != b"0000":
        try:
            length = int(header, 16)
        except ValueError:
            break
        command, _, asked = body.read(max(length - 4, 0)).partition(b"\0")
        caps |= set(asked.decode(errors="replace").split())
        if len(words := command.split()) == 3:
            refs.append(words[2].decode(errors="replace"))
    return refs, caps


def _updated_refs(body: IO[bytes]) -> set[str]:
    return set(_commands(body)[0])


def _ref_updates(body: IO[bytes]) -> list[tuple[str, str, str]]:
    """(old, new, ref) of each command of a receive-pack request, read from its start."""
    updates: list[tuple[str, str, str]] = []
    while len(header := body.read(4)) == 4 and header != b"0000":
        try:
            length = int(header, 16)
        except ValueError:
            break
        command = body.read(max(length - 4, 0)).partition(b"\0")[0]
        if len(words := command.decode(errors="replace").split()) == 3:
            updates.append((words[0], words[1], words[2]))
    return updates


def _pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def _push_refused(body: IO[bytes], message: str) -> Response:
    """receive-pack's own answer refusing every ref of the push: git prints `message` as a
    `remote:` line and each ref as `[remote rejected]`, and exits non-zero. Blocking: it
    reads ``body`` from its start."""
    body.seek(0)
    refs, caps = _commands(body)
    reason = message.replace("\n", " ")[:200]
    report = _pkt(b"unpack ok\n") + b"".join(_pkt(f"ng {r} {reason}\n".encode()) for r in refs)
    report += b"0000"
    if "side-band-64k" in caps or "side-band" in caps:
        step = 900 if "side-band" in caps and "side-band-64k" not in caps else 65000
        out = _pkt(b"\x02" + message.encode() + b"\n")
        out += b"".join(_pkt(b"\x01" + report[i : i + step]) for i in range(0, len(report), step))
        report = out + b"0000"
    return Response(report, media_type="application/x-git-receive-pack-result")


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
