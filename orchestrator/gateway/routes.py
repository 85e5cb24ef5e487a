"""Which Space a Host header names, and where that Space is served: a table read from the
database at most once a second, so a proxied request costs a dict lookup, not a query.

Hosts are the Spaces' stored labels (orchestrator/core/hostnames.py); a label a Space had before
a rename maps to the same route, whose `host` then says where to redirect. A label the
table does not know (a Space created or moved a moment ago) is looked up at once, by
itself: one indexed query, so the new host answers right away without the whole table
being reread for every unknown name a visitor makes up.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlmodel import Session, select

from orchestrator.core.db import session_scope
from orchestrator.core.hostnames import MAX_LABEL
from orchestrator.core.models import Space, SpaceHostAlias

REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Route:
    space_id: int
    owner_id: int
    full_name: str
    private: bool
    stage: str
    error_message: str | None
    address: str | None
    host: str  # the Space's current label: a request for any other one is redirected
    uid: str = ""  # what Space JWTs are scoped to (orchestrator/spaces/tokens.py)


def space_subdomain(host: str, spaces_domain: str) -> str | None:
    """'alice-hello' for host 'alice-hello.localhost:8000' under domain 'localhost:8000'."""
    host = host.lower()
    suffix = "." + spaces_domain.lower()
    if host.endswith(suffix):
        sub = host[: -len(suffix)]
    elif ":" in spaces_domain and host.endswith("." + spaces_domain.lower().split(":")[0]):
        sub = host[: -len("." + spaces_domain.lower().split(":")[0])]  # default port omitted
    else:
        return None
    return sub if sub and "." not in sub else None


def _route(space: Space) -> Route:
    return Route(
        space_id=space.id or 0,
        owner_id=space.owner_id,
        full_name=space.full_name,
        private=space.private,
        stage=space.stage,
        error_message=space.error_message,
        address=space.serving_address,
        host=space.host,
        uid=space.uid,
    )


class RouteTable:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def lookup(self, subdomain: str) -> Route | None:
        if len(subdomain) > MAX_LABEL:
            return None  # no Space has such a label: not worth a query
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            async with self._lock:
                if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
                    self._routes = await asyncio.to_thread(self._load)
                    self._loaded_at = time.monotonic()
        route = self._routes.get(subdomain)
        if route is None:
            route = await asyncio.to_thread(self._load_one, subdomain)
            if route is not None:
                # Kept until the next full load, which also drops it if it went away.
                self._routes[subdomain] = route
        return route

    @staticmethod
    def _load() -> dict[str, Route]:
        with session_scope() as session:
            routes = {space.host: _route(space) for space in session.exec(select(Space)).all()}
            by_id = {route.space_id: route for route in routes.values()}
            for alias in session.exec(select(SpaceHostAlias)).all():
                if alias.space_id in by_id:
                    routes.setdefault(alias.host, by_id[alias.space_id])
            return routes

    @staticmethod
    def _load_one(label: str) -> Route | None:
        with session_scope() as session:
            return _find(session, label)


def _find(session: Session, label: str) -> Route | None:
    space = session.exec(select(Space).where(Space.host == label)).first()
    if space is None and (alias := session.get(SpaceHostAlias, label)) is not None:
        space = session.get(Space, alias.space_id)
    return _route(space) if space is not None else None
