"""The charger: every SPACEPORT_BILLING_PERIOD_SECONDS the controller process reads the
event log since its cursor, meters each Space up to now (metering.meter) and charges the
paid seconds to the Space's owner.

One period is one transaction: the cursor's version is bumped first with a conditional
UPDATE (a second charger, or a standby that took over, finds it bumped and charges
nothing), then the ledger entries, the balances and each Space's meter are written, all or
nothing. A crash mid-way leaves the last period as it was; the next one charges it once.

The cursor reads through `events.settled`, so an event still committing on PostgreSQL is
read in order by a later period; one that commits after its period was charged counts from
the meter's last reading (metering.meter), never twice.

At the first period (a new installation, or an upgrade to billing) the cursor starts at the
newest event and each Space's meter at its row as it is now: what ran before billing
existed is not charged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from orchestrator.billing import accounts, fallback
from orchestrator.billing.metering import Happening, MeterState, meter
from orchestrator.core import events
from orchestrator.core.db import session_scope
from orchestrator.core.models import (
    BillingCursor,
    CreditEntry,
    CreditEntryKind,
    Event,
    Space,
    SpaceMeter,
    User,
    utcnow,
)
from orchestrator.core.settings import get_settings

log = logging.getLogger(__name__)
BATCH = events.PAGE_LIMIT  # events one period reads; more: the next period follows at once


@dataclass
class Period:
    """What one period did: micro-USD charged per owner id, and whether events were left."""

    charged: dict[int, int] = field(default_factory=dict)
    more: bool = False
    skipped: bool = False  # another charger had this period


def charge_period(now: datetime | None = None) -> Period:
    """Charge one period, then move the paid Spaces of owners left without credit to
    cpu-basic (fallback). `now` for tests; the clock otherwise."""
    with session_scope() as session:
        period = _charge(session, now or utcnow())
    if period.charged:
        with session_scope() as session:
            for owner_id in period.charged:
                fallback.fall_back(session, owner_id)
    return period


def _charge(session: Session, now: datetime) -> Period:
    cursor = session.get(BillingCursor, 1)
    if cursor is None:
        _begin(session, now)
        session.commit()
        return Period()
    read_version, after_id = cursor.version, cursor.last_event_id
    taken = session.execute(
        update(BillingCursor)
        .where(col(BillingCursor.id) == 1, col(BillingCursor.version) == read_version)
        .values(version=read_version + 1, charged_at=now)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return Period(skipped=True)
    horizon, _ = events.settled(session, after_id)
    batch = events.after(session, after_id, through=horizon, limit=BATCH)
    more = len(batch) == BATCH
    # A full batch ends the period at its last event, so what follows it is metered in order.
    end = _utc(batch[-1].at) if more else now
    period = Period(more=more)
    _meter_spaces(session, batch, end, period)
    if batch:
        session.execute(
            update(BillingCursor)
            .where(col(BillingCursor.id) == 1)
            .values(last_event_id=batch[-1].id)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return period


def _begin(session: Session, now: datetime) -> None:
    """The first period: the cursor at the newest event, each Space's meter at its row."""
    session.add(BillingCursor(id=1, last_event_id=events.newest_id(session), charged_at=now))
    paid = _paid()
    for space in session.exec(select(Space)):
        state = MeterState(
            stage=str(space.stage),
            tier=space.requested_hardware,
            waiting=space.waiting_hardware is not None,
        )
        session.add(_new_meter(space.uid, space.full_name, space.owner_id, now, state, paid))


def _new_meter(
    uid: str,
    name: str,
    owner_id: int | None,
    since: datetime,
    state: MeterState,
    paid: Callable[[str], bool],
) -> SpaceMeter:
    return SpaceMeter(
        space_uid=uid,
        space_name=name,
        owner_id=owner_id,
        metered_until=since,
        state=json.dumps(state.to_json()),
        billable=state.billable(paid),
    )


def _paid() -> Callable[[str], bool]:
    return lambda tier: accounts.price_per_hour(tier) > 0


def _meter_spaces(session: Session, batch: list[Event], end: datetime, period: Period) -> None:
    """Meter every Space with new events or still billable, up to `end`, and charge."""
    by_uid: dict[str, list[Event]] = defaultdict(list)
    for entry in batch:
        if entry.space_uid:
            by_uid[entry.space_uid].append(entry)
    meters = {
        row.space_uid: row
        for row in session.exec(
            select(SpaceMeter).where(
                or_(col(SpaceMeter.billable), col(SpaceMeter.space_uid).in_(list(by_uid)))
            )
        )
    }
    uids = set(meters) | set(by_uid)
    spaces = {s.uid: s for s in session.exec(select(Space).where(col(Space.uid).in_(list(uids))))}
    paid = _paid()
    for uid in sorted(uids):
        happened = by_uid.get(uid, [])
        row = meters.get(uid) or _new_meter(
            uid,
            happened[0].space_name or "",
            None,
            _utc(happened[0].at),
            MeterState(),
            paid,
        )
        space = spaces.get(uid)
        if space is not None:
            row.owner_id, row.space_name = space.owner_id, space.full_name
        start = _utc(row.metered_until)
        reading = meter(
            MeterState.from_json(json.loads(row.state)),
            [Happening(_utc(e.at), e.kind, json.loads(e.data)) for e in happened],
            start,
            max(end, start),
            paid,
        )
        for tier, seconds in reading.seconds.items():
            run = (reading.began[tier], reading.until[tier])
            _charge_space(session, row, tier, run, seconds, period)
        if reading.state.gone:  # charged to the end: nothing of it is metered again
            if uid in meters:
                session.delete(row)
            continue
        row.metered_until = max(end, start)
        row.state = json.dumps(reading.state.to_json())
        row.billable = reading.state.billable(paid)
        session.add(row)


def _charge_space(
    session: Session,
    row: SpaceMeter,
    tier: str,
    run: tuple[datetime, datetime],
    seconds: float,
    period: Period,
) -> None:
    """Charge `seconds` on `tier` billed from run[0] to run[1] within this period."""
    start, end = run
    owner_id = row.owner_id or _owner_by_name(session, row.space_name)
    if owner_id is None:
        log.warning("no owner to charge %s's %.0f s on %s", row.space_name, seconds, tier)
        return
    price = accounts.price_per_hour(tier)
    amount = int(
        (Decimal(price) * Decimal(repr(seconds)) / 3600).quantize(Decimal(1), ROUND_HALF_EVEN)
    )
    account = accounts.open_account(session, owner_id)
    entry = _run_to_extend(session, account.id or 0, row.space_uid, tier, start)
    if entry is None:
        entry = CreditEntry(
            account_id=account.id or 0,
            kind=CreditEntryKind.CHARGE,
            space_uid=row.space_uid,
            space_name=row.space_name,
            hardware=tier,
            started_at=start,
            actor=events.ACTOR_BILLING,
        )
    entry.ended_at, entry.seconds = end, entry.seconds + seconds
    accounts.charge(session, account, entry, amount)
    period.charged[owner_id] = period.charged.get(owner_id, 0) + amount


def _run_to_extend(
    session: Session, account_id: int, space_uid: str, tier: str, start: datetime
) -> CreditEntry | None:
    """The Space's charge on this tier that ran to where this period starts: one entry per
    uninterrupted run, not one per minute (a run that stopped before the period ended
    ended earlier, so the next run is an entry of its own)."""
    last = session.exec(
        select(CreditEntry)
        .where(
            CreditEntry.account_id == account_id,
            CreditEntry.space_uid == space_uid,
            CreditEntry.kind == CreditEntryKind.CHARGE,
        )
        .order_by(col(CreditEntry.id).desc())
        .limit(1)
    ).first()
    if last is None or last.hardware != tier or last.ended_at is None:
        return None
    return last if _utc(last.ended_at) == start else None


def _owner_by_name(session: Session, space_name: str) -> int | None:
    """The owner of a Space deleted before the meter saw its row: by its namespace."""
    owner = session.exec(select(User.id).where(User.name == space_name.partition("/")[0])).first()
    return owner


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(stop: threading.Event, alive: Callable[[], bool] = lambda: True) -> None:
    """Charge every period until `stop` is set or `alive()` (the controller's lease) says
    no; a failed period (the database restarting) is tried again at the next."""
    while not stop.is_set() and alive():
        try:
            period = charge_period()
        except Exception:  # noqa: BLE001 - a lost connection, a race at the first period
            log.exception("billing period failed; trying again at the next")
            period = Period()
        if not period.more:
            stop.wait(get_settings().billing_period_seconds)


def start(stop: threading.Event, alive: Callable[[], bool] = lambda: True) -> threading.Thread:
    thread = threading.Thread(target=run, args=(stop, alive), name="billing", daemon=True)
    thread.start()
    return thread
