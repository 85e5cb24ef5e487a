"""The visitor queue: per Space, who is let in and who waits, first come, first served.

Per Space two sets of visitor ids (gateway/visitor_cookie.py): the *admitted*, each with the
time of its last request, at most the Space's concurrency; and the *waiting*, in order of
arrival, each with the time it last asked (the waiting page asks every few seconds), at most
SPACEPORT_VISITOR_QUEUE_DEPTH. A visitor idle for SPACEPORT_VISITOR_IDLE_SECONDS loses its
slot or its place. Each visit is one decision (`QueueStore.visit`), made atomically where the
state lives:

- `MemoryQueueStore`: in this process (the embedded default: one gateway, no extra server);
- `RedisQueueStore` (gateway/visitor_queue_redis.py): one Lua script per visit, so gateway
  replicas sharing one Redis share one queue.

Both follow the same rules, written once in words here and tested against both:

1. An admitted visitor seen within the idle time stays admitted (and is seen now).
2. Otherwise idle admitted visitors and idle waiting visitors are dropped.
3. A visitor not waiting yet joins the back of the line, unless the line is at its depth
   (then: full, no place). While the Space is `open` (serving visitors), a visitor whose
   rank in the line is below the number of free slots is admitted: slots go to the line in
   order, and a newcomer passes nobody.

`open` is False while the Space can't serve (building, starting, asleep): then nobody new
is admitted, and whoever was admitted keeps the slot while their page keeps asking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.core.settings import get_settings

SWEEP_MIN_SPACES = 1024  # Spaces with a line before the first sweep of abandoned ones


@dataclass(frozen=True)
class Place:
    """A visitor's place after a visit: admitted, or waiting at `position` (1 = next), or
    turned away because the line is `full`. `waiting` is how many wait in all."""

    admitted: bool
    position: int = 0
    full: bool = False
    waiting: int = 0
    # For a waiting visitor: the earliest moment the line can move by itself (an admitted
    # visitor's or a waiting one's idle time running out), unix seconds; None if nothing
    # in the line will expire. The gateway wakes its long-polls then (visitor_admission).
    frees_at: float | None = None
    # This visit dropped someone (idle) or let someone in from the line: others' places
    # may have moved, and their long-polls are to ask again.
    moved: bool = False


@dataclass(frozen=True)
class Limits:
    concurrency: int  # visitors admitted at once
    depth: int  # visitors waiting at once
    idle_seconds: float

    @property
    def slack(self) -> float:
        """How stale an admitted visitor's last-seen time may be (a tenth of the idle
        time): the gateway skips the store for a request within it of the last visit and
        for the end of a response shorter than it, so a slot may free this much early."""
        return self.idle_seconds / 10


class QueueStore(Protocol):
    async def visit(
        self, space: str, visitor: str, *, now: float, limits: Limits, open: bool
    ) -> Place: ...

    async def seen(self, space: str, visitor: str, *, now: float) -> None:
        """An admitted visitor's request went on or ended: it is active now (nothing else
        changes; a visitor no longer admitted stays out)."""
        ...

    async def aclose(self) -> None: ...


def listen_for_moves(store: QueueStore, on_moved: Callable[[str], None]) -> None:
    """Have `on_moved(space)` called when another gateway's visit moved a Space's line (a
    store shared by several gateways: Redis pub/sub); a store in this process has nothing
    to tell, its moves are this gateway's own."""
    listen = getattr(store, "listen", None)
    if listen is not None:
        listen(on_moved)


@dataclass
class _Line:
    admitted: dict[str, float] = field(default_factory=dict)  # id -> last request
    waiting: dict[str, float] = field(default_factory=dict)  # arrival order; id -> last ask


class MemoryQueueStore:
    """The queue in this process. Each call runs on the event loop without awaiting, so it
    is atomic; its cost is bounded by the Space's concurrency and depth, never by the
    number of Spaces (a Space's state is dropped once nobody is in it)."""

    def __init__(self) -> None:
        self._lines: dict[str, _Line] = {}
        self._sweep_at = SWEEP_MIN_SPACES

    async def visit(
        self, space: str, visitor: str, *, now: float, limits: Limits, open: bool
    ) -> Place:
        line = self._lines.get(space)
        if line is None:
            line = self._lines[space] = _Line()
            self._sweep_if_grown(now, limits.idle_seconds)
        cutoff = now - limits.idle_seconds
        last = line.admitted.get(visitor)
        if last is not None and last >= cutoff:  # rule 1: the common case, O(1)
            line.admitted[visitor] = now
            return Place(admitted=True, waiting=len(line.waiting))
        moved = _drop_idle(line, cutoff)  # rule 2
        free = limits.concurrency - len(line.admitted)
        if visitor in line.waiting:
            line.waiting[visitor] = now
            rank = list(line.waiting).index(visitor)
        else:  # rule 3: the back of the line, if there is room in it
            rank = len(line.waiting)
            if not (open and rank < free) and rank >= limits.depth:
                self._forget_if_empty(space, line)
                return Place(admitted=False, full=True, waiting=rank, moved=moved)
            line.waiting[visitor] = now
        if open and rank < free:
            del line.waiting[visitor]
            line.admitted[visitor] = now
            # Out of the line: those behind move up (a newcomer passes nobody: rank 0 of
            # an empty line moves no one).
            moved = moved or bool(line.waiting)
            return Place(admitted=True, waiting=len(line.waiting), moved=moved)
        oldest = min(
            min(line.admitted.values(), default=now), min(line.waiting.values(), default=now)
        )
        frees_at = oldest + limits.idle_seconds if line.admitted or len(line.waiting) > 1 else None
        return Place(
            admitted=False,
            position=rank + 1,
            waiting=len(line.waiting),
            frees_at=frees_at,
            moved=moved,
        )

    async def seen(self, space: str, visitor: str, *, now: float) -> None:
        line = self._lines.get(space)
        if line is not None and visitor in line.admitted:
            line.admitted[visitor] = now

    async def aclose(self) -> None:
        self._lines.clear()

    def _forget_if_empty(self, space: str, line: _Line) -> None:
        if not line.admitted and not line.waiting:
            self._lines.pop(space, None)

    def _sweep_if_grown(self, now: float, idle_seconds: float) -> None:
        """Forget the Spaces whose visitors all left, once the table has doubled since the
        last sweep: amortised O(1) a visit, and memory bounded by the Spaces in use."""
        if len(self._lines) < self._sweep_at:
            return
        for space, line in list(self._lines.items()):
            _drop_idle(line, now - idle_seconds)
            self._forget_if_empty(space, line)
        self._sweep_at = max(SWEEP_MIN_SPACES, 2 * len(self._lines))


def _drop_idle(line: _Line, cutoff: float) -> bool:
    """Whether anyone was dropped."""
    dropped = False
    for entries in (line.admitted, line.waiting):
        for gone in [v for v, last in entries.items() if last < cutoff]:
            del entries[gone]
            dropped = True
    return dropped


def store_from_settings() -> QueueStore:
    """Redis when the broker is a Redis (what every replica of the Helm chart shares), else
    this process's memory."""
    url = get_settings().broker_url or ""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from orchestrator.gateway.visitor_queue_redis import RedisQueueStore

        return RedisQueueStore(url)
    return MemoryQueueStore()
