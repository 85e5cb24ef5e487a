"""A reader's place in the event log, which misses no event even when ids commit out of order.

PostgreSQL hands out event ids when rows are inserted, not when they commit: a transaction
holding id 10 may commit after the one holding id 11. A reader that only asks for ids above
the last one it saw would skip 10 for good. So the cursor remembers each id it jumped over
(a gap) for GAP_SECONDS and asks for those again with the next read: a gap is either a
transaction still open (it shows up, and rings the feed, when it commits) or a rolled-back
one (it never does, and is forgotten). On SQLite writers commit one at a time, in id order,
and there are no gaps to remember.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import or_
from sqlmodel import Session, col, select

from orchestrator.core.models import Event

GAP_SECONDS = 30.0  # longer than any transaction that appends an event stays open
MAX_GAPS = 10_000  # past this many, the slow full resync is the safety net
READ_LIMIT = 10_000  # rows per query; `touched` reads on until a read comes back short


@dataclass
class EventCursor:
    last_id: int = 0
    gaps: dict[int, float] = field(default_factory=dict)  # missing id -> when it was seen missing

    def touched(self, session: Session) -> set[int]:
        """The Spaces with an event this cursor has not read yet; moves past them."""
        spaces: set[int] = set()
        while True:
            read, full = self._read(session)
            spaces |= read
            if not full:
                return spaces

    def _read(self, session: Session) -> tuple[set[int], bool]:
        now = time.monotonic()
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_SECONDS}
        newer = col(Event.id) > self.last_id
        where = or_(newer, col(Event.id).in_(list(self.gaps))) if self.gaps else newer
        rows = session.exec(
            select(Event.id, Event.space_id).where(where).order_by(col(Event.id)).limit(READ_LIMIT)
        ).all()
        spaces = {space_id for _, space_id in rows if space_id is not None}
        for event_id, _ in rows:
            assert event_id is not None
            if event_id in self.gaps:
                del self.gaps[event_id]  # a late commit, now read
                continue
            for missing in range(self.last_id + 1, event_id):
                if len(self.gaps) >= MAX_GAPS:
                    break
                self.gaps[missing] = now
            self.last_id = max(self.last_id, event_id)
        return spaces, len(rows) == READ_LIMIT
