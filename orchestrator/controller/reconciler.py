"""The reconciler: brings one Space at a time to what its spec asks, and is the only writer
of its status.

For each Space it is asked to look at (orchestrator/controller/loop.py decides which), it
gathers the facts: the spec (paused, the head commit and why it can't be built, the built
image), the newest build of the head commit, and the backend's report on the instances of
the Space (found by label, so a restarted controller adopts what runs instead of starting
duplicates). `stages.stage_of` turns the facts into the stage; `status.write_status` writes
it conditionally, in the Space's own transaction, which is rolled back on any error. A
write from a read that is no longer true (the owner paused meanwhile) is dropped and the
Space looked at again, so a pause during APP_STARTING never comes back as RUNNING.

Starts and stops go to a bounded pool of threads after the status is committed, never one
after another in the caller: one Space's slow stop never delays another. Each start and stop
is recorded as an instance.started / instance.stopped event. Readiness is the backend's
(`Instance.ready`); the reconciler keeps only timers (startup timeout, drain) that the loop
wakes it for.

Spaces that cannot start for lack of room wait in a line per tier, first come first served
(orchestrator/controller/waiting_line.py): room is the backend's count for the tier
(`Backend.tier_room`) when it keeps one, else the host's CPU and memory (sandbox/admission.py),
less what starts in flight take. A Space starts only if that room covers the Spaces of its
tier ahead of it too. Its place and position are status (`waiting_*`), shown in the runtime
and recorded as hardware.queued / queue_moved / granted / queue_left events; whoever frees
room (a stop, a Space leaving the line, the backend's watch) makes the loop look at those
waiting.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.controller.environment import revision_of
from orchestrator.controller.sleep import Depth, sleep_stage
from orchestrator.controller.sleeping import EventData, Look, SleepKeeper
from orchestrator.controller.waiting_line import Wait, WaitingLine, claimed, record_line
from orchestrator.core import events, redaction
from orchestrator.core.backends import admission_policy
from orchestrator.core.db import session_scope
from orchestrator.core.models import Build, Event, Space, Stage
from orchestrator.core.settings import get_settings
from orchestrator.core.stages import WAITING_FOR_HARDWARE, Facts, Problem, RunState, stage_of
from orchestrator.core.status import mark_observed, write_status
from orchestrator.volumes.mounts import MountError, quota_notice
from sandbox.admission import available, shortfall
from sandbox.backend import (
    Backend,
    BackendError,
    Capacity,
    Instance,
    InstanceState,
    Revision,
    RoomTaken,
    TierRoom,
)
from sandbox.hardware import HardwareTier, sized_tier

log = logging.getLogger(__name__)
RUNTIME_ERROR_LOG_LINES = 30
# Longer than the gateway's route update (the change feed) plus a slow request's tail.
DRAIN_SECONDS = 5.0
RETRY_SECONDS = 5.0  # a Space whose reconcile failed is looked at again after this

__all__ = ["Reconciler"]
# Run states in which a Space that waited has its hardware: its start is decided or under
# way, or the backend placed its instance.
_GRANTED = (RunState.STARTING, RunState.READY)


@dataclass
class Plan:
    """What one look at a Space decided: its status, and what the backend must do."""

    fields: dict[str, Any]
    stops: list[tuple[Instance, str]] = field(default_factory=list)
    start: Revision | None = None
    deadline: float | None = None  # time.monotonic() at which to look again
    wait: Wait | None = None  # for room on its tier
    left_line: str | None = None  # why it left the line without its hardware
    exited: Instance | None = None  # seen exited just now: its end is an event
    freeze: Instance | None = None  # a light sleep: frozen after the status is committed
    thaw: Instance | None = None  # a light sleeper's wake
    events: list[EventData] = field(default_factory=list)  # with the status (space.slept...)


@dataclass(frozen=True)
class SpaceRef:
    """What an action thread needs of a Space to record its events (no live row)."""

    id: int
    uid: str
    owner: str
    name: str

    def as_space(self) -> Space:
        return Space(id=self.id, uid=self.uid, owner=self.owner, name=self.name, host="-")


class Reconciler:
    def __init__(self, backend: Backend, concurrency: int | None = None) -> None:
        self.backend = backend
        workers = concurrency or get_settings().controller_concurrency
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="controller-action")
        self._lock = threading.Lock()
        self._busy: dict[int, Future[None]] = {}  # Space id -> its start/stop in flight
        self._pending: dict[int, HardwareTier] = {}  # starts in flight hold their room
        self._start_failed: dict[str, str] = {}  # revision key -> why the backend refused
        self._acted_at: dict[int, float] = {}  # Space id -> when its last action ended
        self._listed_at = float("-inf")  # when the instances were last listed
        self._orphan_jobs: set[Future[None]] = set()
        self._adopted: set[str] = set()  # instances whose instance.started is known
        # Instances this controller stopped, as (id, started_at): their exit on the way (a
        # deep sleep's stop seen exited by a look that a visit woke meanwhile) is ours, not a
        # crash, so looks leave them out (_plan) until a listing no longer has them. Not by
        # id alone: a Kubernetes instance keeps its id (Space, revision) across a wake.
        self._stopped_here: set[tuple[str, datetime | None]] = set()
        # When each instance started serving, to drain the ones it replaced; a restarted
        # controller drains again from scratch, which errs on the safe side.
        self.switched_at: dict[str, float] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._next_of: dict[int, float] = {}  # each Space's earliest timer in the heap
        self.waiting: set[int] = set()  # the Spaces in the line (any tier)
        self.line = WaitingLine()
        self._line_loaded = False
        self._tier_rooms_now: dict[str, TierRoom | None] = {}  # this pass's, by tier
        self._unplaced_at: dict[str, datetime] = {}  # instance id -> last seen not placed
        self._forgetting: set[str] = set()  # uids of deleted Spaces being forgotten
        self._forgotten: set[str] = set()
        self.uids: dict[int, str] = {}  # Space id -> uid, of the Spaces seen
        self.instance_owner: dict[str, tuple[str, str]] = {}  # instance id -> (uid, tier)
        self._room_now: Capacity | None = None
        self.disk_usage: dict[str, int] = {}
        # Called with a Space's id when it should be looked at again (the loop wakes).
        self.on_change: Callable[[int], None] = lambda space_id: None
        # Tests drive races through this: called after the facts are read, before the write.
        self.before_write: Callable[[int], None] | None = None
        # Sleep for want of visitors (orchestrator/controller/sleeping.py).
        self.sleep = SleepKeeper(backend, lambda space_id: self.on_change(space_id))

    # -- entry points ---------------------------------------------------------------

    def reconcile(self, space_ids: Iterable[int]) -> None:
        """Look at these Spaces, each in its own transaction, with one list of instances."""
        ids = sorted(set(space_ids))
        if not ids:
            return
        self._load_line()
        by_uid = self._instances_by_uid()
        self._room_now, self._tier_rooms_now = None, {}
        for space_id in ids:
            self._reconcile_one(space_id, by_uid)

    def resync(self) -> None:
        """Every Space, and the instances whose Space no longer exists."""
        with session_scope() as session:
            rows = session.exec(select(Space.id, Space.uid)).all()
        known = {uid for _, uid in rows}
        self.uids = {space_id: uid for space_id, uid in rows if space_id is not None}
        self._load_line()
        by_uid = self._instances_by_uid()
        self._room_now, self._tier_rooms_now = None, {}
        for space_id in sorted(self.uids):
            self._reconcile_one(space_id, by_uid)
        for uid, orphans in by_uid.items():
            if uid not in known:
                self._forget(uid, orphans)

    def reconcile_once(self) -> None:
        """A full pass, with the disk check, that also waits for the starts and stops it
        asked for (tests, benches)."""
        self._instances_by_uid()  # who owns which instance, for the disk check
        self.over_quota()
        self.resync()
        self.settle_actions()

    def settle_actions(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                futures = [*self._busy.values(), *self._orphan_jobs]
            if not futures or time.monotonic() > deadline:
                return
            for future in futures:
                try:
                    future.result(max(0.0, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - logged by the action itself
                    pass

    def waiting_now(self) -> set[int]:
        """The Spaces waiting for room (in the line, whatever their tier)."""
        with self._lock:
            return set(self.waiting)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._busy or self._orphan_jobs)

    def due(self, now: float) -> set[int]:
        """The Spaces whose timer has come (and drops those timers)."""
        ready = set()
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                when, space_id = heapq.heappop(self._deadlines)
                if self._next_of.get(space_id) == when:
                    del self._next_of[space_id]
                ready.add(space_id)
        return ready

    def next_deadline(self) -> float | None:
        with self._lock:
            return self._deadlines[0][0] if self._deadlines else None

    def over_quota(self) -> set[str]:
        """Ask the backend what each instance wrote; the uids of Spaces over their tier's
        disk (one backend call, no query)."""
        self.disk_usage = self.backend.disk_usage()
        overrides = get_settings().hardware_overrides
        over = set()
        for instance_id, written in self.disk_usage.items():
            uid, tier = self.instance_owner.get(instance_id, ("", ""))
            if uid and written > sized_tier(tier or "cpu-basic", overrides).disk_gib * 2**30:
                over.add(uid)
        return over

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one Space --------------------------------------------------------------------

    def _load_line(self) -> None:
        """The line as the database has it, once (a restarted controller keeps its order)."""
        if self._line_loaded:
            return
        with session_scope() as session:
            rows = session.exec(
                select(Space.id, Space.waiting_hardware, Space.waiting_since).where(
                    col(Space.waiting_since).is_not(None)
                )
            ).all()
        self.line.load(
            (space_id, hardware, since)
            for space_id, hardware, since in rows
            if space_id is not None and hardware and since is not None
        )
        with self._lock:
            self.waiting = self.line.ids()
        self._line_loaded = True

    def _instances_by_uid(self) -> dict[str, list[Instance]]:
        self._listed_at = time.monotonic()
        by_uid: dict[str, list[Instance]] = defaultdict(list)
        owners = {}
        listed = self.backend.instances()
        for instance in listed:
            by_uid[instance.space_id].append(instance)
            owners[instance.id] = (instance.space_id, instance.hardware)
        self._stopped_here.intersection_update((i.id, i.started_at) for i in listed)
        self.instance_owner = owners
        return by_uid

    def _reconcile_one(self, space_id: int, by_uid: dict[str, list[Instance]]) -> None:
        with session_scope() as session:
            try:
                space = session.get(Space, space_id)
                if space is None:
                    self._gone(session, space_id, by_uid)
                    return
                self.uids[space_id] = space.uid
                if self._acted_at.get(space_id, float("-inf")) >= self._listed_at:
                    # A start or stop of it ended after the instances were listed: the
                    # list is stale for it (acting on it would start or stop twice).
                    self.on_change(space_id)
                    return
                instances = by_uid.get(space.uid, [])
                plan = self._plan(session, space, instances)
                if self.before_write is not None:
                    self.before_write(space_id)
                was_waiting = (space.waiting_hardware, space.waiting_since, space.waiting_position)
                if not self._write(session, space, plan.fields):
                    session.rollback()
                    log.info("%s changed while it was looked at: again", space.full_name)
                    self.on_change(space_id)
                    return
                ref = SpaceRef(space_id, space.uid, space.owner, space.name)
                if plan.exited is not None:
                    # It stopped by itself: the event goes with the status that says so.
                    events.record(
                        session,
                        events.EventKind.INSTANCE_STOPPED,
                        events.ACTOR_CONTROLLER,
                        space,
                        **self._stopped_data(plan.exited, "the app exited"),
                    )
                record_line(session, space, was_waiting, plan.wait, plan.left_line)
                for kind, data in plan.events:
                    events.record(session, kind, events.ACTOR_CONTROLLER, space, **data)
                if not self._is_busy(space_id):
                    self._adopt(session, space, instances)
                session.commit()
            except Exception:  # noqa: BLE001 - one broken Space must not stop the rest
                session.rollback()
                log.exception("reconciling Space %s failed; rolled back", space_id)
                self._at(time.monotonic() + RETRY_SECONDS, space_id)
                return
        self._carry_out(ref, plan)

    def _adopt(self, session: Session, space: Space, instances: list[Instance]) -> None:
        """Instances this process did not start (a controller killed between a start and
        its event, or one from before the event log) get their instance.started event
        once, so that what reads the log (billing) sees every instance that ran."""
        for instance in instances:
            if instance.id in self._adopted or instance.state == InstanceState.EXITED:
                continue
            self._adopted.add(instance.id)
            recorded = session.exec(
                select(Event.id)
                .where(
                    Event.space_id == space.id,
                    Event.kind == events.EventKind.INSTANCE_STARTED.value,
                    col(Event.data).contains(f'"instance": "{instance.id}"'),
                )
                .limit(1)
            ).first()
            if recorded is None:
                events.record(
                    session,
                    events.EventKind.INSTANCE_STARTED,
                    events.ACTOR_CONTROLLER,
                    space,
                    instance=instance.id,
                    revision=instance.revision,
                    commit=instance.sha,
                    hardware=instance.hardware or None,
                    started_at=instance.started_at,
                    adopted=True,
                )

    def _write(self, session: Session, space: Space, fields: dict[str, Any]) -> bool:
        if any(getattr(space, name) != value for name, value in fields.items()):
            return write_status(session, space, **fields)
        if space.observed_spec_version != space.spec_version:
            return mark_observed(session, space)
        # Nothing to write: still make sure the read is current before acting on it.
        row = session.exec(
            select(Space.spec_version, Space.status_version).where(Space.id == space.id)
        ).first()
        return row is not None and tuple(row) == (space.spec_version, space.status_version)

    def _set_place(self, space_id: int, wait: Wait | None) -> None:
        """Put the Space in the line at `wait`'s place, or take it out (None); when it
        left its old place, those behind it move up and are looked at again."""
        old = self.line.place_of(space_id)
        if wait is not None:
            self.line.put(wait.place)
        else:
            self.line.remove(space_id)
        with self._lock:
            self.waiting = self.line.ids()
        if old is not None and (wait is None or wait.place != old):
            for behind in self.line.behind(old):
                self.on_change(behind)

    def _gone(self, session: Session, space_id: int, by_uid: dict[str, list[Instance]]) -> None:
        """A deleted Space: it leaves the line, and the backend forgets all of it (what runs,
        and what a paused Space keeps: on Kubernetes its Deployment, Service, ...)."""
        self._set_place(space_id, None)
        self.sleep.forget(space_id)
        uid = self.uids.pop(space_id, None)
        if uid is None:  # deleted before this controller saw it: its events know the uid
            uid = session.exec(
                select(Event.space_uid)
                .where(Event.space_id == space_id, col(Event.space_uid).is_not(None))
                .order_by(col(Event.id).desc())
                .limit(1)
            ).first()
        if uid:
            self._forget(uid, by_uid.get(uid, []))

    def _plan(self, session: Session, space: Space, instances: list[Instance]) -> Plan:
        assert space.id is not None
        instances = [i for i in instances if (i.id, i.started_at) not in self._stopped_here]
        now = time.monotonic()
        head_is_built = bool(space.built_sha) and space.head_sha == space.built_sha
        build = None
        if space.head_sha:  # even when built: a rebuild of it shows as BUILDING
            build = session.exec(
                select(Build)
                .where(Build.space_id == space.id, Build.commit_sha == space.head_sha)
                .order_by(col(Build.id).desc())
                .limit(1)
            ).first()
        mount_problem = None
        try:
            desired = None if space.paused else revision_of(session, space)
        except MountError as exc:  # a volume's source is gone: nothing to run until it's back
            desired, mount_problem = None, str(exc)
        plan = Plan(fields={})
        serving: Instance | None = None  # the instance visitors go to after this look
        keep_serving = False  # an older revision keeps serving
        failed_revision = space.failed_revision
        run, message = RunState.ABSENT, None
        sleeping: Stage | None = None  # SLEEPING or STOPPED while asleep
        sleep_fields: dict[str, Any] = {"sleep_depth": None, "sleep_since": None}

        if desired is None:
            reason = "the Space is paused" if space.paused else "nothing is built"
            plan.stops += [(i, mount_problem or reason) for i in instances]
            if mount_problem is not None:
                run, message = RunState.FAILED, mount_problem
        else:
            current = [i for i in instances if i.revision == desired.key]
            older = [i for i in instances if i.revision != desired.key]
            plan.stops += [(i, "a duplicate of the same revision") for i in current[1:]]
            keep_serving = any(
                i.address == space.serving_address
                for i in older
                if i.address and i.state != InstanceState.EXITED
            )
            if failed_revision and failed_revision != desired.key:
                failed_revision = None  # something changed since: try the new revision
            look = self._sleep_look(session, space, desired, current, failed_revision)
            plan.events += look.events
            if look.verdict.due is not None:  # falls asleep, or deeper, then
                self._deadline(plan, now + (look.verdict.due - look.facts.now).total_seconds())
            if look.verdict.depth is not None:  # asleep: nothing runs, or it is frozen
                sleeping = self._asleep(space, look, current, instances, plan)
                keep_serving = False
                sleep_fields = {
                    "sleep_depth": look.verdict.depth,
                    "sleep_since": look.verdict.since,
                }
            elif failed_revision == desired.key:
                # Crashed before: wait for a push, a restart or a settings change (its
                # exited instance stays, so its run log can still be read).
                run, message = RunState.FAILED, space.error_message
                if desired.hardware.gpu_count:
                    # ... except on a GPU: a crashed GPU Space must not hold its GPU from
                    # the line until its owner acts (on Kubernetes its pod keeps being
                    # restarted on it). Its error keeps the app's last log lines.
                    plan.stops += [(i, "it crashed: its GPU goes back") for i in current]
            elif current and current[0].frozen:  # woken from a light sleep: it serves once thawed
                plan.thaw, run = current[0], RunState.STARTING
            elif not current:
                run, message, keep_serving = self._start_or_wait(
                    space, desired, older, plan, keep_serving
                )
                if run == RunState.FAILED:
                    failed_revision = desired.key
            else:
                instance = current[0]
                run, message = self._watch_instance(space, desired, instance, plan, now)
                if run == RunState.FAILED:
                    failed_revision = desired.key
                elif run == RunState.READY:
                    serving = instance
                    plan.events += self.sleep.served(space.id)  # after a wake: space.woke
                    if space.serving_address != instance.address:
                        self.switched_at[instance.id] = now
                    switched = self.switched_at.setdefault(instance.id, now)
                    drained = now - switched >= DRAIN_SECONDS
                    # Old instances keep answering until every gateway has seen the switch
                    # and their requests in flight are done (zero downtime).
                    for old in older:
                        if drained or old.state == InstanceState.EXITED:
                            plan.stops.append((old, f"replaced by revision {desired.key}"))
                        else:
                            self._deadline(plan, switched + DRAIN_SECONDS)

        facts = Facts(
            paused=space.paused,
            head_problem=Problem.load(space.head_problem),
            head_build=build.status if build else None,
            head_build_error=build.error_message if build else None,
            has_image=bool(space.built_image),
            head_is_built=head_is_built,
            old_serving=keep_serving,
            run=run,
            run_message=message,
            sleeping=sleeping,
        )
        stage, shown = stage_of(facts)
        if stage == Stage.APP_STARTING and self.sleep.waking(space.id):
            stage = Stage.SLEEPING  # "is asleep and waking up": gateways hold API clients
        if stage == Stage.RUNTIME_ERROR and space.stage == Stage.RUNTIME_ERROR and not shown:
            shown = space.error_message
        plan.fields = {"stage": stage, "error_message": shown, "failed_revision": failed_revision}
        plan.fields.update(sleep_fields)
        # A bucket over its quota (the volume sweep's measure): read-only from the next start.
        plan.fields["volume_notice"] = quota_notice(session, space) if space.volumes else None
        wait = plan.wait
        plan.fields.update(
            waiting_hardware=wait.place.hardware if wait else None,
            waiting_since=wait.place.since if wait else None,
            waiting_position=wait.position if wait else None,
        )
        if space.waiting_since is not None and wait is None and run not in _GRANTED:
            plan.left_line = "the Space is paused" if space.paused else f"the Space is {stage}"
        if serving is not None:
            plan.fields.update(
                serving_address=serving.address,
                serving_sha=serving.sha,
                serving_image=space.built_image,
                current_hardware=space.requested_hardware,
            )
        elif not keep_serving:
            plan.fields.update(
                serving_address=None, serving_sha=None, serving_image=None, current_hardware=None
            )
        return plan

    def _sleep_look(
        self,
        session: Session,
        space: Space,
        desired: Revision,
        current: list[Instance],
        failed_revision: str | None,
    ) -> Look:
        """Its sleep verdict. It serves when the desired revision's instance answers (not
        frozen, not failed); a light sleeper whose instance is gone sleeps deep."""
        live = [i for i in current if i.state != InstanceState.EXITED]
        instance = live[0] if live else None
        serving = None
        if instance is not None and not instance.frozen and failed_revision != desired.key:
            if instance.ready or (instance.address and instance.address == space.serving_address):
                serving = instance
        spec_changed = space.observed_spec_version < space.spec_version
        return self.sleep.look(session, space, serving, spec_changed, has_instance=bool(live))

    def _asleep(
        self,
        space: Space,
        look: Look,
        current: list[Instance],
        instances: list[Instance],
        plan: Plan,
    ) -> Stage:
        """Carry out a sleep: a light sleeper keeps its instance, frozen; everything else of
        it stops (all of a deep sleeper: on Kubernetes, its Deployment scales to 0)."""
        depth = look.verdict.depth
        assert depth is not None
        keep = None
        if depth == Depth.LIGHT:
            keep = next((i for i in current if i.state != InstanceState.EXITED), None)
        stopping = {i.id for i, _ in plan.stops}
        reason = f"{depth} sleep: no visitor for {look.facts.sleep_seconds} s"
        plan.stops += [(i, reason) for i in instances if i is not keep and i.id not in stopping]
        if keep is not None and not keep.frozen:
            plan.freeze = keep
        return sleep_stage(depth, custom_sleep_time=space.sleep_time_seconds is not None)

    def _start_or_wait(
        self,
        space: Space,
        desired: Revision,
        older: list[Instance],
        plan: Plan,
        keep_serving: bool,
    ) -> tuple[RunState, str | None, bool]:
        """No instance of the desired revision yet: start one if there is room."""
        assert space.id is not None
        failure = self._start_failed.get(desired.key)
        if failure is not None:
            return RunState.FAILED, f"Runtime error: {failure}", keep_serving
        if self._is_busy(space.id):
            return RunState.STARTING, None, keep_serving  # its start is under way
        tier = desired.hardware
        live = [i for i in older if i.state != InstanceState.EXITED]
        place = self.line.place_for(space.id, tier.name, datetime.now(UTC))
        ahead = self.line.ahead(place)
        verdict, reason = self._admit(tier, ahead, live)
        if verdict == "wait":
            assert reason is not None
            if self._tier_room(tier) is None:  # the host's memory: a light sleeper holds some
                self.sleep.press()
            plan.wait = Wait(place, ahead + 1, reason)
            message = self._waiting_message(plan.wait)
            if space.error_message != message:
                log.info("%s is %s", space.full_name, message)
            return RunState.WAITING, message, keep_serving
        if verdict == "replace":
            # It fits only in the room its older revision holds: stop that first.
            plan.stops += [(old, f"making room for revision {desired.key}") for old in older]
            keep_serving = False
        plan.start = desired
        self._take_room(tier)
        return RunState.STARTING, None, keep_serving

    def _admit(
        self, tier: HardwareTier, ahead: int, live: list[Instance]
    ) -> tuple[str, str | None]:
        """'start', 'replace' (start once its older revision is stopped) or 'wait' with why.
        The room must cover the `ahead` Spaces of its tier before it too; only the room its
        own older revision holds is its to reuse whatever the line."""
        counted = self._tier_room(tier)
        if counted is not None:
            if counted.free - ahead >= 1:
                return "start", None
            if any(i.hardware == tier.name for i in live):
                return "replace", None
            if counted.free >= 1:
                return "wait", claimed(tier.name, ahead)
            if counted.reason is None:  # the backend saw room: starts under way took it
                return "wait", f"what is free of {tier.name} is taken by starts under way"
            return "wait", counted.reason
        room = self._room()
        left_over = replace(
            room,
            cpus_free=room.cpus_free - ahead * tier.cpu,
            memory_gib_free=room.memory_gib_free - ahead * tier.memory_gib,
        )
        if shortfall(left_over, tier) is None:
            return "start", None
        if live and shortfall(room, tier, replacing=live) is None:
            own = replace(room, cpus_free=0, memory_gib_free=0)
            if ahead == 0 or shortfall(own, tier, replacing=live) is None:
                return "replace", None
        short = shortfall(room, tier)
        if short is None:
            return "wait", claimed(tier.name, ahead)
        return "wait", short.removeprefix(f"{WAITING_FOR_HARDWARE}: ")

    def _waiting_message(self, wait: Wait) -> str:
        return f"{WAITING_FOR_HARDWARE}: {wait.reason} (position {wait.position} in line)"

    def _take_room(self, tier: HardwareTier) -> None:
        """A start decided in this pass takes its room from what the next Space sees."""
        counted = self._tier_room(tier)
        if counted is not None:
            self._tier_rooms_now[tier.name] = replace(counted, free=counted.free - 1)
            return
        room = self._room()
        self._room_now = replace(
            room,
            cpus_free=room.cpus_free - tier.cpu,
            memory_gib_free=room.memory_gib_free - tier.memory_gib,
        )

    def _tier_room(self, tier: HardwareTier) -> TierRoom | None:
        """The backend's count of room for `tier` (None: the host's CPU and memory decide),
        less the starts of that tier in flight; asked once a pass."""
        if tier.name not in self._tier_rooms_now:
            counted = self.backend.tier_room(tier)
            if counted is not None:
                with self._lock:
                    pending = sum(1 for t in self._pending.values() if t.name == tier.name)
                counted = replace(counted, free=counted.free - pending)
            self._tier_rooms_now[tier.name] = counted
        return self._tier_rooms_now[tier.name]

    def _watch_instance(
        self, space: Space, desired: Revision, instance: Instance, plan: Plan, now: float
    ) -> tuple[RunState, str | None]:
        written = self.disk_usage.get(instance.id, 0)
        if written > desired.hardware.disk_gib * 2**30:
            plan.stops.append((instance, "over its disk quota"))
            return RunState.FAILED, self._failure(
                space,
                instance,
                f"the app wrote {written / 2**30:.2f} GiB to its disk, over the "
                f"{desired.hardware.disk_gib:g} GiB quota of {desired.hardware.name} "
                "(keep large data in a dataset or the Hub cache of a bigger tier)",
            )
        if instance.problem:
            # It cannot run as it is (an image that cannot be pulled): no log to show.
            plan.stops.append((instance, "it cannot run"))
            return RunState.FAILED, f"Runtime error: {instance.problem}"
        if instance.waiting_reason and not instance.ready:
            # The backend has it but cannot place it yet (an unschedulable pod): it waits in
            # line for its tier, and its startup timeout counts from when it is placed.
            self._unplaced_at[instance.id] = datetime.now(UTC)
            place = self.line.place_for(space.id, desired.hardware.name, datetime.now(UTC))
            plan.wait = Wait(
                place, self.line.ahead(place) + 1, instance.waiting_reason, instance.waiting_detail
            )
            return RunState.WAITING, self._waiting_message(plan.wait)
        if instance.state == InstanceState.EXITED:
            plan.exited = instance
            return RunState.FAILED, self._failure(
                space, instance, f"the app exited with code {instance.exit_code}"
            )
        # Serving already: a slow answer means busy, not broken (crashes exit).
        if instance.ready or (instance.address and instance.address == space.serving_address):
            return RunState.READY, None
        started = max(
            instance.started_at or datetime.now(UTC),
            self._unplaced_at.get(instance.id, datetime.min.replace(tzinfo=UTC)),
        )
        elapsed = (datetime.now(UTC) - started).total_seconds()
        if elapsed > space.startup_timeout_seconds:
            plan.stops.append((instance, "it never answered"))
            return RunState.FAILED, self._failure(
                space,
                instance,
                f"the app did not answer on port {space.app_port} within "
                f"{space.startup_timeout_seconds} s (startup_duration_timeout)",
            )
        self._deadline(plan, now + space.startup_timeout_seconds - elapsed + 0.1)
        return RunState.STARTING, None

    def _failure(self, space: Space, instance: Instance, reason: str) -> str:
        # Anyone who can see the Space reads errorMessage: the app's last lines are masked
        # like its run log (its secrets, and any platform token it printed).
        from sqlalchemy.orm import object_session

        session = object_session(space)
        mask = redaction.for_space(session, space.id) if session else redaction.Redactor()
        tail = [mask(line) for line in self.backend.logs(instance.id, tail=RUNTIME_ERROR_LOG_LINES)]
        return f"Runtime error: {reason}.\n\nLast lines of the app's log:\n" + "\n".join(tail)

    def _room(self) -> Capacity:
        """What is free for Spaces now: the host after the platform's reserve, and this
        installation's own budget, less what starts in flight will take."""
        if self._room_now is not None:
            return self._room_now
        policy = admission_policy(get_settings())
        running = [i for i in self.backend.instances() if i.state != InstanceState.EXITED]
        room = available(self.backend.capacity(), running, policy)
        with self._lock:
            pending = list(self._pending.values())
        self._room_now = replace(
            room,
            cpus_free=room.cpus_free - sum(t.cpu for t in pending),
            memory_gib_free=room.memory_gib_free - sum(t.memory_gib for t in pending),
        )
        return self._room_now

    # -- timers and actions -------------------------------------------------------------

    def _deadline(self, plan: Plan, when: float) -> None:
        plan.deadline = when if plan.deadline is None else min(plan.deadline, when)

    def _at(self, when: float, space_id: int) -> None:
        with self._lock:  # action threads set retry timers too
            if self._next_of.get(space_id, float("inf")) <= when:
                return  # an earlier timer looks at it anyway (and sets the next one)
            self._next_of[space_id] = when
            heapq.heappush(self._deadlines, (when, space_id))

    def _is_busy(self, space_id: int) -> bool:
        with self._lock:
            return space_id in self._busy

    def _carry_out(self, ref: SpaceRef, plan: Plan) -> None:
        if plan.deadline is not None:
            self._at(plan.deadline, ref.id)
        self._set_place(ref.id, plan.wait)
        if not plan.stops and plan.start is None and plan.freeze is None and plan.thaw is None:
            return
        with self._lock:
            if ref.id in self._busy:
                return  # the one in flight wakes the Space again when it is done
            if plan.start is not None:
                self._pending[ref.id] = plan.start.hardware
            self._busy[ref.id] = self._pool.submit(
                self._act, ref, plan.stops, plan.start, plan.freeze, plan.thaw
            )

    def _act(
        self,
        ref: SpaceRef,
        stops: list[tuple[Instance, str]],
        start: Revision | None,
        freeze: Instance | None = None,
        thaw: Instance | None = None,
    ) -> None:
        try:
            if thaw is not None:
                log.info("thawing %s (%s): a visit woke it", thaw.id[:12], thaw.space)
                self.backend.thaw(thaw.id)
            if freeze is not None:
                self._freeze(ref, freeze)
            for instance, reason in stops:
                self._stop(ref, instance, reason)
            if start is not None:
                log.info("starting %s revision %s (%s)", start.space, start.key, start.sha[:7])
                try:
                    instance = self.backend.start(start)
                except RoomTaken as exc:  # taken since it was counted: the next look waits
                    log.info("%s waits again: %s", start.space, exc)
                except BackendError as exc:  # e.g. a GPU tier on a machine without GPUs
                    self._start_failed[start.key] = str(exc)
                else:
                    self._adopted.add(instance.id)
                    self._record(
                        ref,
                        events.EventKind.INSTANCE_STARTED,
                        instance=instance.id,
                        revision=start.key,
                        commit=start.sha,
                        hardware=start.hardware.name,
                        started_at=instance.started_at or datetime.now(UTC),
                        # Buckets over their size quota, mounted read-only this time.
                        read_only_over_quota=[m.mount_path for m in start.mounts if m.over_quota]
                        or None,
                    )
        except Exception:  # noqa: BLE001 - the Space is looked at again below
            log.exception("starting or stopping %s/%s failed", ref.owner, ref.name)
            self._at(time.monotonic() + RETRY_SECONDS, ref.id)
        finally:
            with self._lock:
                self._acted_at[ref.id] = time.monotonic()
                self._busy.pop(ref.id, None)
                self._pending.pop(ref.id, None)
                freed = bool(stops) or freeze is not None  # a frozen one's CPU is free
                waiting = list(self.waiting) if freed else []
            self.on_change(ref.id)
            for space_id in waiting:  # room freed: those waiting for it may start now
                self.on_change(space_id)

    def stop_orphans(self, uids: set[str]) -> None:
        """The backend forgets these uids, which name no Space any more."""
        for uid, orphans in self._instances_by_uid().items():
            if uid in uids:
                self._forget(uid, orphans)

    def _forget(self, uid: str, orphans: list[Instance]) -> None:
        """A deleted Space: the backend removes all of it (`Backend.forget`: on Kubernetes
        its Deployment, Service, Ingress and NetworkPolicy too), once; again only if a later
        list still shows an instance of it (a forget that failed)."""
        with self._lock:
            if uid in self._forgetting or (uid in self._forgotten and not orphans):
                return
            self._forgetting.add(uid)

        def forget() -> None:
            try:
                log.info("forgetting deleted Space %s (%d instances)", uid, len(orphans))
                self.backend.forget(uid)
                for instance in orphans:
                    self.switched_at.pop(instance.id, None)
                    self._unplaced_at.pop(instance.id, None)
                    if instance.state != InstanceState.EXITED:
                        data = self._stopped_data(instance, "its Space no longer exists")
                        data["space_name"] = instance.space
                        self._record(None, events.EventKind.INSTANCE_STOPPED, **data)
                with self._lock:
                    self._forgotten.add(uid)
            except Exception:  # noqa: BLE001 - the next resync tries again
                log.exception("forgetting deleted Space %s failed", uid)
            finally:
                with self._lock:
                    self._forgetting.discard(uid)
                    waiting = list(self.waiting) if orphans else []
                for space_id in waiting:  # room freed: those waiting for it may start now
                    self.on_change(space_id)

        job = self._pool.submit(forget)
        with self._lock:
            self._orphan_jobs.add(job)
        job.add_done_callback(self._orphan_job_done)

    def _orphan_job_done(self, job: Future[None]) -> None:
        with self._lock:
            self._orphan_jobs.discard(job)

    def _freeze(self, ref: SpaceRef, instance: Instance) -> None:
        """A light sleep; where the freeze fails it is stopped instead, and the next look
        finds no instance: a deep sleep."""
        log.info("freezing %s (%s): light sleep", instance.id[:12], instance.space)
        try:
            self.backend.freeze(instance.id)
        except BackendError as exc:
            log.warning("could not freeze %s (%s): stopping it", instance.space, exc)
            self._stop(ref, instance, "deep sleep: it could not be frozen")

    def _stop(self, ref: SpaceRef, instance: Instance, reason: str) -> None:
        log.info(
            "stopping %s (%s, revision %s): %s",
            instance.id[:12],
            instance.space,
            instance.revision,
            reason,
        )
        key = (instance.id, instance.started_at)
        if instance.started_at is not None:  # one that never ran has no exit to misread
            self._stopped_here.add(key)
        try:
            self.backend.stop(instance.id)
        except BaseException:
            self._stopped_here.discard(key)  # still there: looks must see it
            raise
        self.switched_at.pop(instance.id, None)
        self._unplaced_at.pop(instance.id, None)
        if instance.state == InstanceState.EXITED:
            return  # its end was recorded when it was seen exited (or it never ran here)
        data = self._stopped_data(instance, reason)
        self._record(ref, events.EventKind.INSTANCE_STOPPED, **data)

    @staticmethod
    def _stopped_data(instance: Instance, reason: str) -> dict[str, Any]:
        return {
            "instance": instance.id,
            "revision": instance.revision,
            "commit": instance.sha,
            "hardware": instance.hardware or None,
            "reason": reason,
            "started_at": instance.started_at,
            "exit_code": instance.exit_code,
        }

    def _record(self, ref: SpaceRef | None, kind: events.EventKind, **data: Any) -> None:
        try:
            with session_scope() as session:
                events.record(
                    session,
                    kind,
                    events.ACTOR_CONTROLLER,
                    ref.as_space() if ref is not None else None,
                    **data,
                )
                session.commit()
        except Exception:  # noqa: BLE001 - the instance changed anyway; the log says so
            log.exception("recording %s failed", kind.value)
