"""The volume sweep: every SPACEPORT_BUCKET_SWEEP_SECONDS the controller process asks the
backend for the bucket volumes it keeps for this installation (`Backend.volumes`), removes
the data of deleted buckets, and records each bucket's measured size against its quota.

The API only deletes a bucket's row (with `bucket.deleted`); the data is the backend's, so
only the controller touches it, here. A volume is removed when all of these hold:

* its bucket's row is gone, read after the backend listed the volume (so a bucket made
  meanwhile is seen; a bucket's uid is random and never reused, so a new bucket of the same
  name is another volume and never gets, or loses, the old one's files);
* the event log records that bucket's deletion (`bucket.deleted` with its uid): a volume
  without a row and without that record (a database restored from before the bucket was
  made, a bucket deleted before this sweep existed) is kept and logged, never guessed away;
* no instance of this installation mounts it, running or stopped (`KeptVolume.in_use`; the
  Docker Engine refuses too, and a refusal is tried again at the next sweep).

Each removal is a `bucket.removed` event. Where the backend measures sizes (Docker: the
Engine's disk usage), each bucket's `size_bytes` and `size_measured_at` are written, and a
bucket crossing its quota (SPACEPORT_BUCKET_SIZE_GIB) either way is a `bucket.over_quota` or
`bucket.within_quota` event for each Space mounting it: the event wakes the controller for
those Spaces, whose status then carries the notice (orchestrator/volumes/mounts.py
`quota_notice`) and whose next start mounts the bucket read-only.

It runs in its own thread under the controller's lease, as billing's charger does
(orchestrator/billing/charger.py), so a slow measure never delays a Space's start.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import Session, col, select

from orchestrator.core import events
from orchestrator.core.db import session_scope
from orchestrator.core.models import Bucket, Event, User, utcnow
from orchestrator.core.settings import get_settings
from orchestrator.volumes import buckets
from orchestrator.volumes.mounts import bucket_volume_name
from sandbox.backend import Backend, BackendError, KeptVolume

log = logging.getLogger(__name__)
PREFIX = bucket_volume_name("")  # "bucket-": the volumes of buckets, named by uid


@dataclass
class Sweep:
    """What one sweep did, by volume name (tests and logs)."""

    removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)  # deleted, still mounted: kept for now
    unrecorded: list[str] = field(default_factory=list)  # no row, no deletion recorded: kept
    failed: list[str] = field(default_factory=list)  # the backend refused the removal
    measured: dict[str, int] = field(default_factory=dict)  # uid -> bytes


def sweep(backend: Backend) -> Sweep:
    """One sweep (see the module's docstring)."""
    result = Sweep()
    kept = [v for v in backend.volumes() if v.name.startswith(PREFIX)]  # before the rows
    if not kept:
        return result
    by_uid = {v.name.removeprefix(PREFIX): v for v in kept}
    with session_scope() as session:
        rows = session.exec(select(Bucket).where(col(Bucket.uid).in_(list(by_uid)))).all()
        existing = {row.uid: row for row in rows}
        gone = {uid: _deletion(session, uid) for uid in by_uid if uid not in existing}
    for uid, deleted in sorted(gone.items()):
        _remove(backend, by_uid[uid], uid, deleted, result)
    measured: dict[str, int] = {}
    for uid in existing:
        size = by_uid[uid].size_bytes
        if size is not None:
            measured[uid] = size
    if measured:
        _record_sizes(measured, result)
    return result


def _deletion(session: Session, uid: str) -> str | None:
    """The bucket's name as its `bucket.deleted` event recorded it; None without one."""
    data = session.exec(
        select(Event.data)
        .where(
            Event.kind == events.EventKind.BUCKET_DELETED.value,
            col(Event.data).contains(f'"uid": "{uid}"'),
        )
        .limit(1)
    ).first()
    if data is None:
        return None
    return str(json.loads(data).get("bucket") or uid)


def _remove(
    backend: Backend, volume: KeptVolume, uid: str, deleted: str | None, result: Sweep
) -> None:
    if deleted is None:
        log.warning(
            "keeping volume %s: no bucket has uid %s, but no deletion of it is recorded "
            "(a database restored from before it was made?); remove it by hand if it is not "
            "needed",
            volume.name,
            uid,
        )
        result.unrecorded.append(volume.name)
        return
    if volume.in_use:
        log.info(
            "keeping volume %s of deleted bucket %s: an instance mounts it", volume.name, deleted
        )
        result.in_use.append(volume.name)
        return
    try:
        backend.remove_volume(volume.name)
    except BackendError as exc:
        log.warning(
            "could not remove volume %s of deleted bucket %s: %s", volume.name, deleted, exc
        )
        result.failed.append(volume.name)
        return
    log.info("removed volume %s of deleted bucket %s", volume.name, deleted)
    result.removed.append(volume.name)
    with session_scope() as session:
        events.record(
            session,
            events.EventKind.BUCKET_REMOVED,
            events.ACTOR_CONTROLLER,
            bucket=deleted,
            uid=uid,
            volume=volume.name,
        )
        session.commit()


def _record_sizes(measured: dict[str, int], result: Sweep) -> None:
    """Write each bucket's size, and an event for each one that crossed its quota; one
    transaction. A plain UPDATE: a bucket deleted meanwhile is no row to write, not an error."""
    quota = buckets.quota_bytes()
    now = utcnow()
    with session_scope() as session:
        rows = session.exec(
            select(Bucket, User)
            .join(User, col(User.id) == col(Bucket.owner_id))
            .where(col(Bucket.uid).in_(list(measured)))
        ).all()
        for bucket, owner in rows:
            size = measured[bucket.uid]
            was_over = bucket.size_bytes is not None and bucket.size_bytes > quota
            now_over = size > quota
            session.exec(  # type: ignore[call-overload]
                update(Bucket)
                .where(col(Bucket.id) == bucket.id)
                .values(size_bytes=size, size_measured_at=now)
            )
            result.measured[bucket.uid] = size
            if was_over != now_over:
                kind = (
                    events.EventKind.BUCKET_OVER_QUOTA
                    if now_over
                    else events.EventKind.BUCKET_WITHIN_QUOTA
                )
                full = buckets.bucket_id(owner, bucket)
                log.info("bucket %s: %s (%d of %d bytes)", full, kind.value, size, quota)
                data = {"bucket": full, "uid": bucket.uid, "size_bytes": size, "quota_bytes": quota}
                mounting = buckets.spaces_mounting(session, bucket.uid)
                for space in mounting or [None]:
                    events.record(session, kind, events.ACTOR_CONTROLLER, space, **data)
        session.commit()


def run(
    backend: Backend,
    stop: threading.Event,
    alive: Callable[[], bool] = lambda: True,
    seconds: float | None = None,
) -> None:
    """Sweep every period until `stop` is set or `alive()` (the controller's lease) says
    no; a failed sweep (the backend or the database away) is tried again at the next."""
    while not stop.is_set() and alive():
        try:
            sweep(backend)
        except Exception:  # noqa: BLE001 - the next period tries again
            log.exception("volume sweep failed; trying again at the next")
        stop.wait(seconds if seconds is not None else get_settings().bucket_sweep_seconds)


def start(backend: Backend, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run, args=(backend, stop), name="volume-sweep", daemon=True)
    thread.start()
    return thread
