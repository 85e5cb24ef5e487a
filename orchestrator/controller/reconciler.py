"""The reconciler: drives every Space toward its desired state, one pass a second.

Desired state, from the database: the Space's built image, with its environment and
hardware, running and answering. Actual state, from the backend: the instances it finds
by label. Nothing else is remembered between passes, so a restarted controller picks up
the containers already running instead of starting duplicates.

Stages it sets (Hugging Face's names):
    APP_STARTING          the built revision's instance is up, not yet answering
    RUNNING_APP_STARTING  the same, while an older revision keeps serving
    RUNNING               the built revision answers; older instances are stopped
    RUNTIME_ERROR         it exited, or did not answer within startup_duration_timeout
Build stages (BUILDING, RUNNING_BUILDING, BUILD_ERROR, ...) belong to the build pipeline;
while the newest commit is not built, the reconciler keeps the built one serving and
leaves the stage alone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime

import httpx
from sqlmodel import Session, select

from orchestrator.core.db import session_scope
from orchestrator.core.models import Secret, Space, Stage, Variable
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces_module
from sandbox.admission import Policy, available, shortfall
from sandbox.backend import Backend, BackendError, Capacity, Instance, InstanceState, Revision
from sandbox.hardware import sized_tier

log = logging.getLogger(__name__)
HALTED_STAGES = (Stage.PAUSED, Stage.SLEEPING, Stage.STOPPED, Stage.DELETING)
RUNTIME_ERROR_LOG_LINES = 30
# Longer than the gateway's route refresh (1 s) plus a slow request's tail.
DRAIN_SECONDS = 5.0
WAITING = "waiting for hardware"  # how admission's message starts (sandbox.admission)


def space_environment(session: Session, space: Space) -> dict[str, str]:
    """The variables a Space's process sees: its own, its secrets, and Spaces' standard ones."""
    settings = get_settings()
    tier = sized_tier(space.requested_hardware, settings.hardware_overrides)
    env = {
        v.key: v.value for v in session.exec(select(Variable).where(Variable.space_id == space.id))
    }
    env.update(
        {s.key: s.value for s in session.exec(select(Secret).where(Secret.space_id == space.id))}
    )
    title = (json.loads(space.card_data).get("title") if space.card_data else None) or space.name
    env.update(
        {
            "SYSTEM": "spaces",
            "SPACE_ID": space.full_name,
            "SPACE_AUTHOR_NAME": space.owner,
            "SPACE_REPO_NAME": space.name,
            "SPACE_TITLE": str(title),
            "SPACE_HOST": f"{spaces_module.subdomain(space)}.{settings.spaces_domain}",
            "SPACE_CREATOR_USER_ID": str(space.owner_id),
            "CPU_CORES": f"{tier.cpu:g}",
            "MEMORY": f"{tier.memory_gib:g}Gi",
            "ACCELERATOR": tier.name if tier.gpu_count else "none",
            "GRADIO_SERVER_NAME": "0.0.0.0",
            "GRADIO_SERVER_PORT": str(space.app_port),
        }
    )
    return env


def desired_revision(session: Session, space: Space) -> Revision | None:
    if not space.built_image or not space.built_sha or space.stage in HALTED_STAGES:
        return None
    return Revision(
        space_id=space.uid,  # never reused, unlike the row number
        space=space.full_name,
        sha=space.built_sha,
        image=space.built_image,
        port=space.app_port,
        hardware=sized_tier(space.requested_hardware, get_settings().hardware_overrides),
        env=space_environment(session, space),
        generation=space.restart_count,
    )


def answers(address: str) -> bool:
    """Healthy means the app answers HTTP at all: a 404 on / still proves it is serving."""
    try:
        return httpx.get(address + "/", timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


class Reconciler:
    def __init__(self, backend: Backend, probe=answers) -> None:  # type: ignore[no-untyped-def]
        self.backend = backend
        self.probe = probe
        # When each instance started serving, to drain the ones it replaced; a restarted
        # controller drains again from scratch, which errs on the safe side.
        self.switched_at: dict[str, float] = {}
        self._disk_checked = float("-inf")
        self._disk_usage: dict[str, int] = {}
        self._room_now: Capacity | None = None  # this pass's, until something starts or stops

    def reconcile_once(self) -> None:
        by_space: dict[str, list[Instance]] = defaultdict(list)
        for instance in self.backend.instances():
            by_space[instance.space_id].append(instance)
        self._disk_usage = {}
        self._room_now = None
        if time.monotonic() - self._disk_checked >= get_settings().spaces_disk_check_seconds:
            self._disk_checked = time.monotonic()
            self._disk_usage = self.backend.disk_usage()
        with session_scope() as session:
            for space in session.exec(select(Space)).all():
                try:
                    self._reconcile_space(session, space, by_space.pop(space.uid, []))
                except Exception:  # noqa: BLE001 - one broken Space must not stop the rest
                    log.exception("reconciling %s failed", space.full_name)
                session.commit()
        for orphans in by_space.values():  # instances of Spaces that no longer exist
            for instance in orphans:
                self._stop(instance, "its Space no longer exists")

    def _reconcile_space(self, session: Session, space: Space, instances: list[Instance]) -> None:
        desired = desired_revision(session, space)
        if desired is None:
            for instance in instances:
                self._stop(instance, f"the Space is {space.stage}")
            if instances or space.serving_address:
                self._set(session, space, serving=None)
            if space.error_message and space.error_message.startswith(WAITING):
                space.error_message = None  # a halted Space waits for nothing
            return
        current = [i for i in instances if i.revision == desired.key]
        older = [i for i in instances if i.revision != desired.key]
        for duplicate in current[1:]:
            self._stop(duplicate, "a duplicate of the same revision")
        if space.failed_revision == desired.key:
            return  # crashed before: wait for a push, a restart or a settings change
        serving_old = any(i.address == space.serving_address for i in older if i.address)
        newest_is_built = space.head_sha == space.built_sha

        if not current:
            waiting = self._admit(desired, older)
            if waiting:
                if space.error_message != waiting:
                    log.info("%s is %s", space.full_name, waiting)
                space.error_message = waiting
                if newest_is_built:
                    space.stage = Stage.RUNNING_APP_STARTING if serving_old else Stage.APP_STARTING
                return
            if shortfall(self._room(), desired.hardware) is not None:
                # It fits only in the room its older revision holds: stop that first.
                for old in older:
                    self._stop(old, f"making room for revision {desired.key}")
                if older:
                    self._set(session, space, serving=None)
                    serving_old = False
            if space.error_message and space.error_message.startswith(WAITING):
                space.error_message = None
            log.info("starting %s revision %s (%s)", space.full_name, desired.key, desired.sha[:7])
            self._room_now = None
            try:
                self.backend.start(desired)
            except BackendError as exc:  # e.g. a GPU tier on a machine without GPUs
                space.failed_revision = desired.key
                space.stage = Stage.RUNTIME_ERROR
                space.error_message = f"Runtime error: {exc}"
                return
            if newest_is_built:
                space.stage = Stage.RUNNING_APP_STARTING if serving_old else Stage.APP_STARTING
            return
        instance = current[0]
        written = self._disk_usage.get(instance.id, 0)
        if written > desired.hardware.disk_gib * 2**30:
            self._fail(
                space,
                desired,
                instance,
                f"the app wrote {written / 2**30:.2f} GiB to its disk, over the "
                f"{desired.hardware.disk_gib:g} GiB quota of {desired.hardware.name} "
                "(keep large data in a dataset or the Hub cache of a bigger tier)",
            )
            self._stop(instance, "over its disk quota")
            return
        if instance.state == InstanceState.EXITED:
            self._fail(space, desired, instance, f"the app exited with code {instance.exit_code}")
            return
        if instance.address and self.probe(instance.address):
            if space.serving_address != instance.address:
                self._set(session, space, serving=instance)
                self.switched_at[instance.id] = time.monotonic()
            if newest_is_built:
                space.stage = Stage.RUNNING
                space.error_message = None
            # Old instances keep answering until every gateway has seen the switch and
            # their requests in flight are done (zero downtime).
            switched = self.switched_at.setdefault(instance.id, time.monotonic())
            if time.monotonic() - switched >= DRAIN_SECONDS:
                for old in older:
                    self._stop(old, f"replaced by revision {desired.key}")
            return
        if instance.address == space.serving_address:
            return  # serving already: a slow answer means busy, not broken (crashes exit)
        started = instance.started_at or datetime.now(UTC)
        if (datetime.now(UTC) - started).total_seconds() > space.startup_timeout_seconds:
            self._fail(
                space,
                desired,
                instance,
                f"the app did not answer on port {space.app_port} within "
                f"{space.startup_timeout_seconds} s (startup_duration_timeout)",
            )
            self._stop(instance, "it never answered")

    def _room(self) -> Capacity:
        """What is free for Spaces now: the host after the platform's reserve, and this
        installation's own budget (asked afresh: an earlier Space of this pass took some)."""
        if self._room_now is not None:
            return self._room_now
        settings = get_settings()
        policy = Policy(
            reserve_cpus=settings.platform_reserve_cpus,
            reserve_memory_gib=settings.platform_reserve_memory_gib,
            cpu_allocation_ratio=settings.cpu_allocation_ratio,
            spaces_cpus=settings.spaces_cpus,
            spaces_memory_gib=settings.spaces_memory_gib,
            count_other_installations=settings.admission_counts_other_installations,
        )
        running = [i for i in self.backend.instances() if i.state != InstanceState.EXITED]
        self._room_now = available(self.backend.capacity(), running, policy)
        return self._room_now

    def _admit(self, desired: Revision, older: list[Instance]) -> str | None:
        """None when the revision may start now (perhaps in its older revision's room);
        otherwise the 'waiting for hardware' line for the Space's page."""
        live = [i for i in older if i.state != InstanceState.EXITED]
        return shortfall(self._room(), desired.hardware, replacing=live)

    def _stop(self, instance: Instance, reason: str) -> None:
        log.info(
            "stopping %s (%s, revision %s): %s",
            instance.id[:12],
            instance.space,
            instance.revision,
            reason,
        )
        self.backend.stop(instance.id)
        self._room_now = None

    def _fail(self, space: Space, desired: Revision, instance: Instance, reason: str) -> None:
        from sqlalchemy.orm import object_session

        from orchestrator.core import redaction

        # Anyone who can see the Space reads errorMessage: the app's last lines are masked
        # like its run log (its secrets, and any platform token it printed).
        session = object_session(space)
        mask = redaction.for_space(session, space.id) if session else redaction.Redactor()
        tail = [mask(line) for line in self.backend.logs(instance.id, tail=RUNTIME_ERROR_LOG_LINES)]
        space.failed_revision = desired.key
        if space.head_sha == space.built_sha:
            space.stage = Stage.RUNTIME_ERROR
        space.error_message = f"Runtime error: {reason}.\n\nLast lines of the app's log:\n" + (
            "\n".join(tail)
        )

    def _set(self, session: Session, space: Space, serving: Instance | None) -> None:
        space.serving_address = serving.address if serving else None
        space.serving_sha = serving.sha if serving else None
        space.serving_image = space.built_image if serving else None
        space.current_hardware = space.requested_hardware if serving else None
        space.updated_at = datetime.now(UTC)
        session.add(space)


def run_forever(backend: Backend, interval: float = 1.0) -> None:
    """The controller's loop. One controller at a time per home (a file lock): two would
    both start the same revision."""
    settings = get_settings()
    lock_path = settings.home / "locks" / "controller.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reconciler = Reconciler(backend)
        try:
            # The Spaces' network and firewall now, not at the first start: Spaces adopted
            # from before (an upgrade, a flushed firewall) are boxed in at once too.
            backend.prepare()
        except Exception:  # noqa: BLE001 - the first start() tries again
            log.exception("preparing the backend failed")
        log.info("controller started")
        while True:
            started = time.monotonic()
            try:
                reconciler.reconcile_once()
            except Exception:  # noqa: BLE001 - e.g. Docker restarting: try again next pass
                log.exception("reconcile pass failed")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
