"""Which Space a Host header names, and where that Space is served: a table in memory, so a
proxied request costs a dict lookup, however many Spaces there are.

The table is read whole once, then kept current from the change feed
(orchestrator/core/changes.py): a background task waits for the events channel to ring,
reads which Spaces have events it has not seen (core/event_cursor.py, one indexed query) and
rereads only those rows and their host aliases. Every change that moves a route appends an
event: the controller's status writes (a new serving address, a stage), an owner's pause,
visibility change, rename or delete. A full reread every SPACEPORT_GATEWAY_RESYNC_SECONDS is
the safety net for a ring that was missed. All database work runs in threads.

Hosts are the Spaces' stored labels (orchestrator/core/hostnames.py); a label a Space had before
a rename maps to the same route, whose `host` then says where to redirect. A label the
table does not know (a Space created a moment ago, its event not read yet) is looked up at
once, by itself: one indexed query, so the new host answers right away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from orchestrator.core import changes, events
from orchestrator.core.db import session_scope
from orchestrator.core.event_cursor import EventCursor
from orchestrator.core.hostnames import MAX_LABEL
from orchestrator.core.models import Space, SpaceHostAlias, Stage
from orchestrator.core.settings import get_settings
from sandbox.hardware import HardwareTier, UnknownHardware, get_tier

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0  # after a failed read (the database restarting)
IDS_PER_QUERY = 500  # Space ids in one IN (...) list
# Labels looked up by themselves at once, at most: hosts a visitor makes up cost a query
# each, and must not take every thread the gateway has.
MISS_LOOKUPS = 4
# Longest a request waits for the table to read a change this very process committed
# (read-your-writes: an owner renames through the API, then visits the old host).
OWN_WRITES_WAIT_SECONDS = 2.0


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
    # "light" or "deep" while it sleeps for want of visitors: a visit asks it to wake
    # (orchestrator/gateway/activity.py); None while awake, and for a paused Space.
    sleep: str | None = None
    # The visitor queue's (orchestrator/gateway/visitor_queue.py): visitors let in at once
    # (the owner's, else the tier's), the tier, whether it has GPUs, and the Space's place in
    # the hardware line.
    concurrency: int = 4
    hardware: str = "cpu-basic"
    gpu: bool = False
    hardware_position: int | None = None


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


def route_of(space: Space) -> Route:
    if space.paused:
        # The owner's pause is spec: visitors see the paused page the moment it is asked,
        # not once the controller has stopped the instance.
        stage, error, address = Stage.PAUSED.value, None, None
    else:
        stage, error, address = str(space.stage), space.error_message, space.serving_address
    tier = _tier(space)
    return Route(
        space_id=space.id or 0,
        owner_id=space.owner_id,
        full_name=space.full_name,
        private=space.private,
        stage=stage,
        error_message=error,
        address=address,
        host=space.host,
        uid=space.uid,
        sleep=None if space.paused else space.sleep_depth,
        concurrency=space.visitor_concurrency or (tier.concurrency if tier else 4),
        hardware=space.requested_hardware,
        gpu=bool(tier and tier.gpu_count),
        hardware_position=space.waiting_position,
    )


def _tier(space: Space) -> HardwareTier | None:
    """Read here, in a thread (the catalogue is a file), never on the event loop."""
    try:
        return get_tier(space.requested_hardware)
    except UnknownHardware:  # a tier an operator removed from the catalogue
        return None


# What a read of some Spaces gives: each id with its route and every label that names it
# (its host and its aliases), or None for a Space that is gone.
Found = dict[int, tuple[Route, list[str]] | None]


class RouteTable:
    def __init__(
        self, resync_seconds: float | None = None, feed: changes.Feed | None = None
    ) -> None:
        self._feed = feed  # None: this process's (changes.feed()); tests pass their own
        self._routes: dict[str, Route] = {}
        self._labels: dict[int, set[str]] = {}  # Space id -> its labels in _routes
        self._cursor = EventCursor()
        self._generation = 0  # bumped by every change applied from the feed
        self._resync_seconds = resync_seconds or get_settings().gateway_resync_seconds
        self._follower: asyncio.Task[None] | None = None
        self._follower_loop: asyncio.AbstractEventLoop | None = None
        self._loaded = asyncio.Event()
        self._misses = asyncio.Semaphore(MISS_LOOKUPS)
        # This process's commits (changes.committed_here) the table has read up to, and
        # what waits for the next read to be applied.
        self._read_own = 0
        self._applied = asyncio.Event()
        # Requests held for a waking Space wait on its event, set when its route serves.
        self._servable: dict[int, asyncio.Event] = {}
        # Called with each route the table applies, on the event loop (the visitor queue's
        # long-polls hear that a Space serves now): each call must be O(1).
        self.listeners: list[Callable[[Route], None]] = []

    async def start(self) -> None:
        """Read the table and follow changes from now on (else the first lookup does)."""
        await self._follow_changes()

    async def lookup(self, subdomain: str) -> Route | None:
        if len(subdomain) > MAX_LABEL:
            return None  # no Space has such a label: not worth a query
        await self._follow_changes()
        if changes.committed_here(changes.Channel.EVENTS) > self._read_own:
            await self._read_own_writes()
        route = self._routes.get(subdomain)
        if route is None:
            async with self._misses:
                generation = self._generation
                route = await asyncio.to_thread(_find_label, subdomain)
            # Kept unless a change was applied meanwhile: this read may predate it.
            if route is not None and generation == self._generation:
                self._put(route, [*self._labels.get(route.space_id, ()), subdomain])
        return route

    async def wait_servable(self, space_id: int, timeout: float) -> Route | None:
        """The Space's route once it has an address (it woke, it started), or None after
        `timeout`: an await on an event the table sets when it applies that route, so a
        held request costs no polling and no thread."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            route = self._route_of(space_id)
            if route is not None and route.address is not None:
                return route
            left = deadline - loop.time()
            if left <= 0:
                return None
            ready = self._servable.setdefault(space_id, asyncio.Event())
            try:
                await asyncio.wait_for(ready.wait(), left)
            except TimeoutError:
                return None

    def _route_of(self, space_id: int) -> Route | None:
        for label in self._labels.get(space_id, ()):
            if (route := self._routes.get(label)) is not None and route.space_id == space_id:
                return route
        return None

    def _release_servable(self) -> None:
        for space_id in list(self._servable):
            route = self._route_of(space_id)
            if route is not None and route.address is not None:
                self._servable.pop(space_id).set()

    def __len__(self) -> int:
        return len(self._routes)

    async def close(self) -> None:
        if self._follower is not None:
            # Cancelled until it has ended: in Python 3.11 asyncio.wait_for may swallow a
            # cancellation that lands just as its inner wait completes (a ring at shutdown,
            # such as a wake request's), and the follower would wait on for its resync.
            while not self._follower.done():
                self._follower.cancel()
                await asyncio.wait({self._follower}, timeout=0.1)
            self._follower = None

    async def _read_own_writes(self) -> None:
        """Wait (the feed's latency: milliseconds) until the table has read what this
        process committed before this request came."""
        wanted = changes.committed_here(changes.Channel.EVENTS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OWN_WRITES_WAIT_SECONDS
        while self._read_own < wanted and (left := deadline - loop.time()) > 0:
            applied = self._applied
            try:
                await asyncio.wait_for(applied.wait(), left)
            except TimeoutError:
                return  # serve what the table has; the follower catches up regardless

    async def _follow_changes(self) -> None:
        """Start the follower on this event loop (a test's asyncio.run makes a new one),
        and wait for the first full read."""
        loop = asyncio.get_running_loop()
        if self._follower is None or self._follower.done() or self._follower_loop is not loop:
            self._loaded = asyncio.Event()
            self._misses = asyncio.Semaphore(MISS_LOOKUPS)
            self._applied = asyncio.Event()
            self._follower_loop = loop
            self._follower = loop.create_task(self._follow(), name="gateway-routes")
        if not self._loaded.is_set():
            await self._loaded.wait()

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        feed = self._feed or changes.feed()
        seen = feed.count(changes.Channel.EVENTS)  # before the first read: no ring is lost
        first, next_resync = True, 0.0
        while True:
            try:
                if first or loop.time() >= next_resync:
                    await self._resync(first=first)
                    first, next_resync = False, loop.time() + self._resync_seconds
                    self._loaded.set()
                    continue
                heard = await feed.wait_async(
                    changes.Channel.EVENTS, seen, next_resync - loop.time()
                )
                if heard != seen:
                    await self._catch_up()
                    seen = heard  # only once read: a failed read is tried again
            except Exception:  # noqa: BLE001 - the database going away must not end routing
                log.warning("gateway routes: reading the database failed", exc_info=True)
                self._loaded.set()  # meanwhile lookups query by label
                await asyncio.sleep(RETRY_SECONDS)

    async def _resync(self, first: bool = False) -> None:
        own = changes.committed_here(changes.Channel.EVENTS)  # all read by what follows
        cursor = self._cursor if first else None
        routes, labels = await asyncio.to_thread(_load_all, cursor)
        self._routes, self._labels = routes, labels
        self._generation += 1
        self._release_servable()
        if self.listeners:
            for space_id in labels:
                if (route := self._route_of(space_id)) is not None:
                    self._tell(route)
        self._read_up_to(own)

    async def _catch_up(self) -> None:
        own = changes.committed_here(changes.Channel.EVENTS)
        found = await asyncio.to_thread(_load_touched, self._cursor)
        if found:
            self._apply(found)
        self._read_up_to(own)

    def _read_up_to(self, own: int) -> None:
        self._read_own = max(self._read_own, own)
        applied, self._applied = self._applied, asyncio.Event()
        applied.set()  # wakes the requests waiting for their own process's writes

    def _apply(self, found: Found) -> None:
        """Replace the routes of these Spaces: on the event loop, between two awaits, so no
        request sees half of it."""
        for space_id, entry in found.items():
            for label in self._labels.pop(space_id, ()):
                if (old := self._routes.get(label)) is not None and old.space_id == space_id:
                    del self._routes[label]
            if entry is not None:
                self._put(*entry)
        self._generation += 1

    def _put(self, route: Route, labels: Iterable[str]) -> None:
        names = set(labels)
        for label in names:
            self._routes[label] = route
        self._labels[route.space_id] = names
        if route.address is not None and (ready := self._servable.pop(route.space_id, None)):
            ready.set()  # the requests held while it woke go on
        self._tell(route)

    def _tell(self, route: Route) -> None:
        for listener in self.listeners:
            try:
                listener(route)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop routing
                log.warning("gateway routes: a listener failed", exc_info=True)


def _load_all(cursor: EventCursor | None) -> tuple[dict[str, Route], dict[int, set[str]]]:
    with session_scope() as session:
        if cursor is not None:
            # The log's end first: whatever commits after it is read by the follower.
            cursor.last_id = events.newest_id(session)
        routes: dict[str, Route] = {}
        labels: dict[int, set[str]] = {}
        by_id: dict[int, Route] = {}
        for space in session.exec(select(Space)).all():
            route = route_of(space)
            routes[space.host] = by_id[route.space_id] = route
            labels[route.space_id] = {space.host}
        for alias in session.exec(select(SpaceHostAlias)).all():
            if (route := by_id.get(alias.space_id)) is not None and alias.host not in routes:
                routes[alias.host] = route
                labels[route.space_id].add(alias.host)
        return routes, labels


def _load_touched(cursor: EventCursor) -> Found:
    with session_scope() as session:
        touched = cursor.touched(session)  # before the rows: they are at least this new
        return _load_spaces(session, touched) if touched else {}


def _load_spaces(session: Session, space_ids: set[int]) -> Found:
    found: Found = dict.fromkeys(space_ids)
    ids = sorted(space_ids)
    for start in range(0, len(ids), IDS_PER_QUERY):
        batch = ids[start : start + IDS_PER_QUERY]
        for space in session.exec(select(Space).where(col(Space.id).in_(batch))).all():
            assert space.id is not None
            found[space.id] = (route_of(space), [space.host])
        aliases = select(SpaceHostAlias).where(col(SpaceHostAlias.space_id).in_(batch))
        for alias in session.exec(aliases).all():
            if (entry := found.get(alias.space_id)) is not None:
                entry[1].append(alias.host)
    return found


def _find_label(label: str) -> Route | None:
    with session_scope() as session:
        space = session.exec(select(Space).where(Space.host == label)).first()
        if space is None and (alias := session.get(SpaceHostAlias, label)) is not None:
            space = session.get(Space, alias.space_id)
        return route_of(space) if space is not None else None
