"""The event log: every transition of a Space, appended to one table in the transaction that
makes it, and rung on the change feed (orchestrator/core/changes.py) once committed.

Billing, wait estimates, the activity feed and audits read it, so it has to be complete
(each writer of a transition records it here, in the same transaction: a rolled-back change
leaves no event), cheap (one INSERT) and indexed (by id, by Space and id, by kind, by time).
It never holds a secret's value: secret events carry the name only.

Kinds, with their data:
    space.created        visibility, hardware, duplicated_from?
    space.deleted
    space.moved          from, to
    org.created          org, admin                  (no Space)
    org.member_set       org, user, role, from?      (no Space)
    org.member_removed   org, user, role             (no Space)
    stage.changed        from, to, error?            (the controller)
    status.changed       fields (names of the observed fields that changed, e.g. serving_address)
    spec.changed         fields (a spec change whose writer recorded no event of its own)
    commit.refused       commit, stage (CONFIG_ERROR|NO_APP_FILE), message
    build.queued         build_id, commit, no_cache
    build.started        build_id, worker
    build.ended          build_id, status (succeeded|failed), error?, reused_image
    build.cancelled      build_id, reason
    instance.started     instance, revision, commit, hardware, read_only_over_quota?
                         (the controller)
    instance.stopped     instance, revision, hardware, reason, started_at?
    hardware.requested   from, to
    hardware.queued      hardware, position, reason, detail?, since  (the controller's line)
    hardware.queue_moved hardware, from, to (positions)
    hardware.granted     hardware, waited_seconds, since
    hardware.queue_left  hardware, reason, waited_seconds, since
    visibility.changed   from, to
    sleep_time.changed   from, to
    space.slept          depth (light|deep), idle_seconds, sleep_seconds   (the controller)
    space.wake_requested (a visit to a sleeping Space; actor spaceport:gateway)
    space.woke           from (light|deep), seconds (from the visit to serving again)
    visitor_concurrency.changed  from, to (None: the tier's; gateway/visitor_queue.py)
    volumes.changed      volumes (type, source, mount path of each; [] when removed)
    bucket.created       bucket, uid, private                        (no Space)
    bucket.deleted       bucket, uid                                 (no Space)
    bucket.removed       bucket, uid, volume: its data removed from the backend  (the controller)
    bucket.over_quota    bucket, uid, size_bytes, quota_bytes: one per Space mounting it
                         (the controller)
    bucket.within_quota  bucket, uid, size_bytes, quota_bytes: back under, as over_quota
    paused / restarted   factory_reboot?
    secret.set / secret.deleted      key
    variable.set / variable.deleted  key
    branch.created / tag.created     ref, commit, from?
    branch.deleted / tag.deleted     ref, commit (what it pointed at)
    branch.squashed      ref, from (the old head), commit (the new root commit)
    discussion.opened    num, pull_request
    discussion.commented num, comment (the comment's id)
    discussion.status_changed  num, from, to
    discussion.renamed   num
    pull_request.committed     num, commit, commits (how many the commit or push added)
    pull_request.merged  num, commit (the merge commit on main), fast_forward
    space.liked / space.unliked
    credit.granted       account, amount_micro_usd, note?  (no Space)
    billing.out_of_credit  account, from, to, balance_micro_usd  (billing's fallback)
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.core.changes import Channel, ring
from orchestrator.core.models import Event, Space

# Who did it, when it was not a user.
ACTOR_CONTROLLER = "spaceport:controller"
ACTOR_WORKER = "spaceport:worker"
ACTOR_GATEWAY = "spaceport:gateway"  # a visit asked a sleeping Space to wake
ACTOR_SYSTEM = "spaceport:system"  # housekeeping, `spaceport` commands, first start
ACTOR_BILLING = "spaceport:billing"  # the charger's fallback to cpu-basic at zero credit
PAGE_LIMIT = 500  # most events one page holds
ANNOUNCED = "spaceport_announced_spaces"  # session.info: Spaces with an event this transaction
# Longer than any transaction that appends an event stays open (see `settled`).
GAP_SECONDS = 30.0


class EventKind(enum.StrEnum):
    SPACE_CREATED = "space.created"
    SPACE_DELETED = "space.deleted"
    SPACE_MOVED = "space.moved"
    ORG_CREATED = "org.created"
    ORG_MEMBER_SET = "org.member_set"
    ORG_MEMBER_REMOVED = "org.member_removed"
    STAGE_CHANGED = "stage.changed"
    STATUS_CHANGED = "status.changed"
    SPEC_CHANGED = "spec.changed"
    COMMIT_REFUSED = "commit.refused"
    BUILD_QUEUED = "build.queued"
    BUILD_STARTED = "build.started"
    BUILD_ENDED = "build.ended"
    BUILD_CANCELLED = "build.cancelled"
    INSTANCE_STARTED = "instance.started"
    INSTANCE_STOPPED = "instance.stopped"
    HARDWARE_REQUESTED = "hardware.requested"
    HARDWARE_QUEUED = "hardware.queued"
    HARDWARE_QUEUE_MOVED = "hardware.queue_moved"
    HARDWARE_GRANTED = "hardware.granted"
    HARDWARE_QUEUE_LEFT = "hardware.queue_left"
    VISIBILITY_CHANGED = "visibility.changed"
    SLEEP_TIME_CHANGED = "sleep_time.changed"
    SPACE_SLEPT = "space.slept"
    SPACE_WAKE_REQUESTED = "space.wake_requested"
    SPACE_WOKE = "space.woke"
    VISITOR_CONCURRENCY_CHANGED = "visitor_concurrency.changed"
    VOLUMES_CHANGED = "volumes.changed"
    BUCKET_CREATED = "bucket.created"
    BUCKET_DELETED = "bucket.deleted"
    BUCKET_REMOVED = "bucket.removed"
    BUCKET_OVER_QUOTA = "bucket.over_quota"
    BUCKET_WITHIN_QUOTA = "bucket.within_quota"
    PAUSED = "paused"
    RESTARTED = "restarted"
    SECRET_SET = "secret.set"
    SECRET_DELETED = "secret.deleted"
    VARIABLE_SET = "variable.set"
    VARIABLE_DELETED = "variable.deleted"
    BRANCH_CREATED = "branch.created"
    BRANCH_DELETED = "branch.deleted"
    BRANCH_SQUASHED = "branch.squashed"
    TAG_CREATED = "tag.created"
    TAG_DELETED = "tag.deleted"
    DISCUSSION_OPENED = "discussion.opened"
    DISCUSSION_COMMENTED = "discussion.commented"
    DISCUSSION_STATUS_CHANGED = "discussion.status_changed"
    DISCUSSION_RENAMED = "discussion.renamed"
    PULL_REQUEST_COMMITTED = "pull_request.committed"
    PULL_REQUEST_MERGED = "pull_request.merged"
    SPACE_LIKED = "space.liked"
    SPACE_UNLIKED = "space.unliked"
    CREDIT_GRANTED = "credit.granted"
    BILLING_OUT_OF_CREDIT = "billing.out_of_credit"


def record(
    session: Session,
    kind: EventKind,
    actor: str,
    space: Space | None = None,
    **data: Any,
) -> Event:
    """Append one event to ``session``'s transaction (nothing is committed here)."""
    entry = Event(
        kind=kind.value,
        actor=actor,
        space_id=space.id if space else None,
        space_uid=space.uid if space else None,
        space_name=space.full_name if space else None,
        data=json.dumps({k: v for k, v in data.items() if v is not None}, default=str),
    )
    session.add(entry)
    ring(session, Channel.EVENTS)
    if space is not None and space.id is not None:  # see status._announce_at_commit
        session.info.setdefault(ANNOUNCED, {})[space.id] = session.get_transaction()
    return entry


def newest_id(session: Session) -> int:
    last = session.exec(select(Event.id).order_by(col(Event.id).desc()).limit(1)).first()
    return last or 0


def after(
    session: Session,
    after_id: int,
    *,
    space_id: int | None = None,
    space_uid: str | None = None,
    kinds: Sequence[str] = (),
    since: datetime | None = None,
    through: int | None = None,
    limit: int = PAGE_LIMIT,
) -> list[Event]:
    """Events with an id above ``after_id`` (and at most ``through``: `settled`), oldest
    first (one indexed range scan)."""
    query = select(Event).where(col(Event.id) > after_id)
    if through is not None:
        query = query.where(col(Event.id) <= through)
    if space_id is not None:
        query = query.where(Event.space_id == space_id)
    if space_uid is not None:  # with space_id: a reused row number's older events are not its
        query = query.where(Event.space_uid == space_uid)
    if kinds:
        query = query.where(col(Event.kind).in_(list(kinds)))
    if since is not None:
        query = query.where(col(Event.at) >= since)
    return list(session.exec(query.order_by(col(Event.id)).limit(min(limit, PAGE_LIMIT))))


# Two readers of the log, for two needs. Those that only need to know which Spaces to look
# at again (the controller, the gateway's routes) use event_cursor.EventCursor, which moves
# on at once and asks again for ids it jumped over. Those that hand each event on once and
# in order (the API's pages and streams, and later billing) use `settled`, which stops
# before a missing id.


def settled(session: Session, after_id: int, *, scan: int = 10_000) -> tuple[int, float | None]:
    """How far past ``after_id`` a reader may move its cursor without skipping an event for
    good, and in how many seconds that may grow without a ring (None: no gap holds it back).

    PostgreSQL hands out ids at INSERT, not at commit: while the transaction holding id 10
    is open, id 11 may already be committed, and a reader that moved past 11 would never see
    10. So the cursor stops before the first missing id, unless the event after it was
    written more than GAP_SECONDS ago: a transaction open that long has rolled back (events
    are appended in short transactions). On SQLite writers commit one at a time, in id
    order: there is never a gap, and this is the newest id. Reads only ids (the primary key).
    """
    rows = session.exec(
        select(Event.id, Event.at)
        .where(col(Event.id) > after_id)
        .order_by(col(Event.id))
        .limit(scan)
    ).all()
    now = datetime.now(UTC)
    expected = after_id + 1
    horizon = after_id
    for event_id, at in rows:
        assert event_id is not None
        if event_id > expected:
            age = (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()
            if age < GAP_SECONDS:
                return horizon, GAP_SECONDS - age
        horizon, expected = event_id, event_id + 1
    return horizon, None


def as_dict(entry: Event) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "kind": entry.kind,
        "actor": entry.actor,
        "space": entry.space_name,
        "spaceId": entry.space_uid,
        "data": json.loads(entry.data),
    }
