"""The controller's loop: it wakes on change, and looks only at the Spaces that changed.

What wakes it:
* the change feed (orchestrator/core/changes.py): every spec change, build and status
  write appends an event; the loop reads the Spaces touched since the last event it saw
  (an `EventCursor`, one indexed query, which also catches ids that committed out of
  order on PostgreSQL) and reconciles those;
* the backend's own events (`Backend.watch`): an instance started, exited, vanished or
  became ready;
* its own timers: a Space's startup deadline or drain (the reconciler's heap), the disk
  check of running instances (one backend call), and a slow full resync
  (SPACEPORT_CONTROLLER_RESYNC_SECONDS) that heals anything a missed change left behind.

Beside it, under the same lease, run billing's charger and the volume sweep
(orchestrator/controller/volume_sweep.py), each in its own thread.

So an idle installation costs no query per Space, and a paused or sleeping Space costs
nothing until something happens to it.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlmodel import col, select

from orchestrator.billing import charger
from orchestrator.controller import leader, volume_sweep
from orchestrator.controller.reconciler import Reconciler
from orchestrator.core import events
from orchestrator.core.changes import Channel, feed
from orchestrator.core.db import session_scope
from orchestrator.core.event_cursor import EventCursor  # misses no event committed out of order
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from sandbox.backend import Backend

log = logging.getLogger(__name__)
FEED_WAIT_SECONDS = 30.0  # the feed thread's wait; a missed ring waits for the resync


class Controller:
    def __init__(self, backend: Backend, reconciler: Reconciler | None = None) -> None:
        settings = get_settings()
        self.backend = backend
        self.reconciler = reconciler or Reconciler(backend)
        self.reconciler.on_change = self.poke
        self.resync_seconds = settings.controller_resync_seconds
        self.disk_seconds = settings.spaces_disk_check_seconds
        self._wake = threading.Condition()
        self._dirty: set[int] = set()
        self._dirty_uids: set[str] = set()
        self._events_rang = False
        self._everything = True  # the first pass looks at everything
        self._next_resync = 0.0
        self._next_disk_check = 0.0
        self._stopped = threading.Event()
        with session_scope() as session:
            # Where it starts reading the event log: what is older, the first pass sees.
            self.cursor = EventCursor(last_id=events.newest_id(session))
        backend.watch(self._backend_changed)
        self._feed_thread: threading.Thread | None = None

    # -- what wakes it ------------------------------------------------------------------

    def poke(self, space_id: int) -> None:
        with self._wake:
            self._dirty.add(space_id)
            self._wake.notify()

    def _backend_changed(self, space_uid: str | None) -> None:
        with self._wake:
            if space_uid is None:
                self._everything = True
            else:
                self._dirty_uids.add(space_uid)
            self._wake.notify()

    def _events_changed(self) -> None:
        with self._wake:
            self._events_rang = True
            self._wake.notify()

    def _listen(self) -> None:
        changes = feed()
        seen = changes.count(Channel.EVENTS)
        while not self._stopped.is_set():
            now = changes.wait(Channel.EVENTS, seen, FEED_WAIT_SECONDS)
            if now != seen:
                seen = now
                self._events_changed()

    # -- the loop ---------------------------------------------------------------------

    def run(self, lease: leader.Lease | None = None) -> None:
        """Until `stop()`, or until the lease is lost (the process then exits and its
        supervisor starts it again, as a standby)."""
        self._feed_thread = threading.Thread(
            target=self._listen, name="controller-feed", daemon=True
        )
        self._feed_thread.start()
        while not self._stopped.is_set():
            if lease is not None and not lease.alive():
                return
            try:
                self.step(timeout=leader.CHECK_SECONDS)
            except Exception:  # noqa: BLE001 - e.g. the database restarting: try again
                log.exception("controller step failed")
                self._everything = True
                self._stopped.wait(1.0)

    def stop(self) -> None:
        self._stopped.set()
        with self._wake:
            self._wake.notify()

    def step(self, timeout: float) -> bool:
        """Wait (up to `timeout`) for something to do, and do it. True when it did."""
        give_up = time.monotonic() + timeout
        with self._wake:
            while not self._has_work(time.monotonic()):
                now = time.monotonic()
                left = min(give_up, self._next_timer(now)) - now
                if left <= 0 or self._stopped.is_set():
                    return False
                self._wake.wait(left)
            ids, uids, rang, everything = (
                self._dirty,
                self._dirty_uids,
                self._events_rang,
                self._everything,
            )
            self._dirty, self._dirty_uids = set(), set()
            self._events_rang = self._everything = False
        now = time.monotonic()
        if everything or now >= self._next_resync:
            self._next_resync = now + self.resync_seconds
            self._catch_up_events()  # what the resync sees anyway
            self.reconciler.resync()
        else:
            if rang:
                ids |= self._catch_up_events()
            if uids:
                ids |= self._spaces_of(uids)
                ids |= self.reconciler.waiting_now()  # an instance ended: room may be free
            ids |= self.reconciler.due(now)
            self.reconciler.reconcile(ids)
        if self._disk_check_due(time.monotonic()):
            self._next_disk_check = time.monotonic() + max(self.disk_seconds, 0.2)
            over = self.reconciler.over_quota()
            if over:
                self.reconciler.reconcile(self._spaces_of(over))
        return True

    def settle(self, timeout: float = 30.0) -> None:
        """Tests: handle every change until nothing is left to do (reads the event log
        directly instead of waiting for the feed to ring)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reconciler.settle_actions()
            with self._wake:
                self._events_rang = True
            self.step(timeout=0)
            with self._wake:
                pending = self._dirty or self._dirty_uids or self._everything
            if pending or self.reconciler.busy():
                continue
            with session_scope() as session:
                if events.newest_id(session) == self.cursor.last_id:
                    return
        raise TimeoutError("the controller did not settle")

    # -- helpers ----------------------------------------------------------------------

    def _has_work(self, now: float) -> bool:
        if self._dirty or self._dirty_uids or self._everything or self._events_rang:
            return True
        return self._next_timer(now) <= now

    def _disk_check_due(self, now: float) -> bool:
        running = bool(self.reconciler.instance_owner)
        return running and self.disk_seconds >= 0 and now >= self._next_disk_check

    def _next_timer(self, now: float) -> float:
        timers = [self._next_resync]
        due = self.reconciler.next_deadline()
        if due is not None:
            timers.append(due)
        if self.reconciler.instance_owner and self.disk_seconds >= 0:
            timers.append(self._next_disk_check)
        return min(timers)

    def _catch_up_events(self) -> set[int]:
        with session_scope() as session:
            return self.cursor.touched(session)

    def _spaces_of(self, uids: set[str]) -> set[int]:
        by_uid = {uid: space_id for space_id, uid in self.reconciler.uids.items()}
        ids = {by_uid[uid] for uid in uids if uid in by_uid}
        unknown = [uid for uid in uids if uid not in by_uid]
        if unknown:
            with session_scope() as session:
                rows = session.exec(
                    select(Space.id, Space.uid).where(col(Space.uid).in_(unknown))
                ).all()
            ids |= {space_id for space_id, _ in rows if space_id is not None}
            orphans = set(unknown) - {uid for _, uid in rows}
            if orphans:  # instances of a Space that no longer exists
                self.reconciler.stop_orphans(orphans)
        return ids


def run_forever(backend: Backend) -> None:
    """The controller process: wait to be the one active controller, then run."""
    with leader.leadership() as lease:
        try:
            # The Spaces' network and firewall now, not at the first start: Spaces adopted
            # from before (an upgrade, a flushed firewall) are boxed in at once too.
            backend.prepare()
        except Exception:  # noqa: BLE001 - the first start() tries again
            log.exception("preparing the backend failed")
        log.info("controller started")
        controller = Controller(backend)
        # Billing charges under the same lease: one charger per installation, as one
        # controller (orchestrator/billing/charger.py; its periods are safe to race anyway).
        stop_billing = threading.Event()
        charger.start(stop_billing)  # stopped below when the lease is lost
        # So does the volume sweep: deleted buckets' data, buckets' sizes (volume_sweep.py).
        volume_sweep.start(backend, stop_billing)
        try:
            controller.run(lease)
        finally:
            stop_billing.set()
        log.error("controller lock lost: exiting so that a standby takes over")
        raise SystemExit(1)
