"""Which Space a Host header names, and where that Space is served: a table read from the
database at most once a second, so a proxied request costs a dict lookup, not a query."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlmodel import select

from orchestrator import spaces
from orchestrator.db import session_scope
from orchestrator.models import Space

REFRESH_SECONDS = 1.0
MISS_REFRESH_SECONDS = 0.25


@dataclass(frozen=True)
class Route:
    space_id: int
    owner_id: int
    full_name: str
    private: bool
    stage: str
    error_message: str | None
    address: str | None
    uid: str = ""  # what Space JWTs are scoped to (orchestrator/space_tokens.py)


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


class RouteTable:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def lookup(self, subdomain: str) -> Route | None:
        route = await self._lookup(subdomain, REFRESH_SECONDS)
        if route is None:
            # A Space created or moved a moment ago: look again, at most a few times a second.
            route = await self._lookup(subdomain, MISS_REFRESH_SECONDS)
        return route

    async def _lookup(self, subdomain: str, max_age: float) -> Route | None:
        if time.monotonic() - self._loaded_at > max_age:
            async with self._lock:
                if time.monotonic() - self._loaded_at > max_age:
                    self._routes = await asyncio.to_thread(self._load)
                    self._loaded_at = time.monotonic()
        return self._routes.get(subdomain)

    @staticmethod
    def _load() -> dict[str, Route]:
        with session_scope() as session:
            return {
                spaces.subdomain(space): Route(
                    space_id=space.id or 0,
                    owner_id=space.owner_id,
                    full_name=space.full_name,
                    private=space.private,
                    stage=space.stage,
                    error_message=space.error_message,
                    address=space.serving_address,
                    uid=space.uid,
                )
                for space in session.exec(select(Space)).all()
            }
