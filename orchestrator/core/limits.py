"""Bounds on what one client can make the control plane hold: concurrent streams per key
(a small counter per key, like Knative's queue breaker) and request body sizes.

Every refusal is a HubError, so the client sees a 4xx that names the limit and the setting
that raises it: 413 for sizes, 429 for too many at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func
from sqlmodel import Session, col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.errors import HubError
from orchestrator.core.models import Build, LfsObject, Space, User
from orchestrator.core.settings import Settings, get_settings
from orchestrator.repos import store as repos

TOO_MANY = "TooManyRequests"
TOO_LARGE = "PayloadTooLarge"


def too_large(what: str, limit: int, setting: str) -> HubError:
    return HubError(
        413, f"{what} is over the limit of {limit} bytes (SPACEPORT_{setting.upper()})", TOO_LARGE
    )


class TooMany(Exception):
    def __init__(self, key: str, limit: int) -> None:
        super().__init__(key)
        self.key = key
        self.limit = limit


class KeyedLimiter:
    """At most a given number of holders per key at once; thread-safe, nothing queued (a
    caller over a limit is refused at once rather than kept waiting)."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def held(self, key: str) -> int:
        with self._lock:
            return self._held[key]

    def acquire(self, limits: dict[str, int]) -> Callable[[], None]:
        """Take one slot under each key (key -> its limit), all or none, or raise TooMany
        naming the first key that is full. Returns the release (safe to call twice)."""
        with self._lock:
            for key, limit in limits.items():
                if self._held[key] >= limit:
                    raise TooMany(key, limit)
            self._held.update(limits.keys())
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._held.subtract(limits.keys())
                for key in limits:
                    if self._held[key] <= 0:
                        del self._held[key]

        return release


# -- request bodies -------------------------------------------------------------------

# (method, path pattern, setting): routes that take more than max_request_bytes.
_LARGE_BODIES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api/spaces/[^/]+/[^/]+/commit/"), "max_commit_bytes"),
    (
        "PUT",
        re.compile(r"^/spaces/[^/]+/[^/]+/info/lfs/objects/[0-9a-f]{64}$"),
        "max_lfs_object_bytes",
    ),
    ("POST", re.compile(r"^/spaces/[^/]+/[^/]+/git-receive-pack$"), "max_push_bytes"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "max_validate_yaml_bytes"),
]


def body_limit(method: str, path: str, settings: Settings) -> tuple[int, str]:
    """(bytes, setting name) allowed for a request body on this route."""
    for route_method, pattern, setting in _LARGE_BODIES:
        if method == route_method and pattern.match(path):
            return int(getattr(settings, setting)), setting
    return settings.max_request_bytes, "max_request_bytes"


class BodySizeLimit:
    """ASGI middleware: refuse a body over its route's limit before the app reads it
    (Content-Length), and stop reading one that grows past it (chunked bodies), so no
    handler ever holds or spools more than the limit. Routes that stream their body
    (commit, LFS, git) see the error from `receive` before they write anything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = body_limit(scope["method"], scope["path"], get_settings())
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, too_large("The request body", limit, setting))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large("The request body", limit, setting)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, error: HubError) -> None:
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    body = json.dumps({"error": error.detail, "message": error.detail}).encode()
    await send({"type": "http.response.body", "body": body})


# -- Space sizes ----------------------------------------------------------------------


def space_bytes(session: Session, space: Space) -> int:
    """What a Space takes: its git repo on disk plus the LFS objects it holds."""
    repo = repos.repo_path(space.owner, space.name)
    on_disk = 0
    for folder, _, names in os.walk(repo):
        for name in names:
            with contextlib.suppress(OSError):
                on_disk += os.lstat(os.path.join(folder, name)).st_size
    stored = session.exec(
        select(func.coalesce(func.sum(LfsObject.size), 0)).where(LfsObject.space_id == space.id)
    ).one()
    return on_disk + int(stored)


def check_space_room(session: Session, space: Space, incoming: int) -> None:
    """413 unless `incoming` more bytes keep the Space within max_repo_bytes."""
    most = get_settings().max_repo_bytes
    used = space_bytes(session, space)
    if used + incoming > most:
        raise HubError(
            413,
            f"{space.full_name} would take {used + incoming} bytes, over the limit of {most} "
            f"(SPACEPORT_MAX_REPO_BYTES; it takes {used} now): remove files or history first",
            TOO_LARGE,
        )


# -- counts per user ------------------------------------------------------------------


def check_build_room(session: Session, space: Space) -> None:
    """429 when the owner's Spaces already have max_builds_per_user builds unfinished. A
    new commit replaces its own Space's unfinished build, so that one doesn't count."""
    from orchestrator.builds.runner import ACTIVE

    most = get_settings().max_builds_per_user
    active = session.exec(
        select(func.count())
        .select_from(Build)
        .join(Space, col(Space.id) == col(Build.space_id))
        .where(
            Space.owner_id == space.owner_id,
            Space.id != space.id,
            col(Build.status).in_(ACTIVE),
        )
    ).one()
    if active >= most:
        raise HubError(
            429,
            f"{space.owner} already has {active} builds queued or running, the most at once "
            f"(SPACEPORT_MAX_BUILDS_PER_USER): wait for one to finish, then push again",
            TOO_MANY,
        )


def check_space_count(session: Session, user: User, *, admin: bool = False) -> None:
    """429 when `user` already owns max_spaces_per_user Spaces (admin tokens may pass it)."""
    most = get_settings().max_spaces_per_user
    if admin:
        return
    owned = session.exec(
        select(func.count()).select_from(Space).where(Space.owner_id == user.id)
    ).one()
    if owned >= most:
        raise HubError(
            429,
            f"{user.name} already owns {owned} Spaces, the most allowed "
            f"(SPACEPORT_MAX_SPACES_PER_USER): delete one first",
            TOO_MANY,
        )
