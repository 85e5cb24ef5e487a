"""Where Space code runs: the interface every backend (Docker now, Kubernetes later) offers.

The control plane only ever asks a backend five things: start this revision, stop that
instance, what is running (so a restarted controller adopts what it finds, by label),
show its logs, and how much room is left. Everything a backend needs to start a revision
is in `Revision`, so a backend never reads the database.

A backend also tells the controller when something changed, so the controller wakes on
change instead of rescanning: `watch(callback)` calls back with a Space's uid whenever one
of its instances started, exited, vanished or became ready (`Instance.ready`: the backend
probes its own instances, Kubernetes would read a pod's readiness), and with None when
it may have missed something (the controller then looks at everything).
"""

from __future__ import annotations

import abc
import enum
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sandbox.hardware import HardwareTier
from sandbox.log_stream import in_thread

LABEL_PREFIX = "org.spaceport"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
# The installation that owns it (its unique id, orchestrator/core/installation.py): a controller
# only ever lists, stops or reads containers with its own.
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
LABEL_SPACE = f"{LABEL_PREFIX}.space"
# The Space's uid (24 hex characters, never reused), not its row number: a new Space that got
# a deleted one's row number must never adopt, or show the log of, the old one's container.
# (A container labelled by an older Spaceport with a row number matches no uid: the
# controller stops it as an orphan and starts the Space afresh.)
LABEL_SPACE_ID = f"{LABEL_PREFIX}.space-id"
LABEL_REVISION = f"{LABEL_PREFIX}.revision"
LABEL_SHA = f"{LABEL_PREFIX}.sha"
LABEL_HARDWARE = f"{LABEL_PREFIX}.hardware"  # the tier's name, for instance.* events
# The GPUs a Docker container holds (their uuids, comma-separated): the only record of which
# GPU is whose, so a restarted controller, and every installation on the host, count them.
LABEL_GPUS = f"{LABEL_PREFIX}.gpus"
# Called with a Space's uid when its instances changed, or None when anything may have.
WatchCallback = Callable[[str | None], None]


@dataclass(frozen=True)
class SpaceFiles:
    """Which files a read-only export holds: another Space's commit (`space_uid`, `sha`),
    and the folder inside it (`path`, "" for the whole repo). A backend that cannot bind
    `source_dir` (Kubernetes: pods don't see the platform's disk) fetches them by it."""

    space_uid: str
    sha: str
    path: str = ""


@dataclass(frozen=True)
class VolumeMount:
    """A volume a Space's container mounts, as a backend sees it.

    `name` is the volume's stable identity (a bucket's uid, or a Space's export at one
    commit), so the same bucket is the same Docker volume or PersistentVolumeClaim across
    restarts, rebuilds, sleep and moves. `source_dir`, for a read-only export of files
    (another Space's repo at a revision), is the directory on the platform's disk to bind;
    None for a writable bucket, which the backend keeps itself. `files` says what that
    export is (set with `source_dir`; not part of the revision key, which `source_dir`,
    naming the commit and folder, already covers)."""

    name: str
    mount_path: str
    read_only: bool = False
    source_dir: str | None = None
    # A bucket over its size quota when the revision was made (the controller measured it):
    # the backend mounts it read-only. Not part of the revision key, so an instance that
    # runs keeps its writable mount; the Space's next start gets it read-only.
    over_quota: bool = False
    files: SpaceFiles | None = None


@dataclass(frozen=True)
class KeptVolume:
    """A volume the backend keeps for this installation (a bucket's data), as `volumes()`
    finds it: `name` is the VolumeMount.name it was made for (`bucket-{uid}`), `in_use`
    whether an instance of this installation (running or stopped) mounts it, `size_bytes`
    what its files take where the backend measures it (None where it cannot)."""

    name: str
    in_use: bool
    size_bytes: int | None = None


@dataclass(frozen=True)
class Revision:
    """One runnable version of a Space: an image, its environment and its hardware."""

    space_id: str  # the Space's uid
    space: str  # owner/name
    sha: str
    image: str
    port: int
    hardware: HardwareTier
    env: dict[str, str] = field(default_factory=dict)
    generation: int = 0  # bumped by a restart: same everything else, new container
    mounts: tuple[VolumeMount, ...] = ()

    @property
    def key(self) -> str:
        """Changes whenever anything that needs a new container changes."""
        parts: list[object] = [
            self.image,
            self.port,
            self.hardware.name,
            sorted(self.env.items()),
            self.generation,
        ]
        if self.mounts:  # only then, so a Space without volumes keeps its revision key
            parts.append([[m.name, m.mount_path, m.read_only, m.source_dir] for m in self.mounts])
        material = json.dumps(parts)
        return hashlib.sha256(material.encode()).hexdigest()[:16]


class InstanceState(enum.StrEnum):
    STARTING = "starting"  # created, process running, not yet known to answer
    RUNNING = "running"  # process running (whether it answers: Instance.ready)
    EXITED = "exited"  # process ended: crashed, or stopped


@dataclass(frozen=True)
class Instance:
    """A revision as a backend runs it (a container, a pod)."""

    id: str
    space_id: str  # the Space's uid, from LABEL_SPACE_ID
    space: str
    revision: str
    sha: str
    state: InstanceState
    address: str | None  # base URL the gateway proxies to, when reachable
    started_at: datetime | None = None
    exit_code: int | None = None
    # What it holds of the host while it runs (its limits), for admission.
    cpus: float = 0
    memory_gib: float = 0
    # The backend's readiness: it answered (HTTP < 500 on /). Stays True once seen, so a
    # busy Space that answers slowly is not taken for a broken one (crashes exit).
    ready: bool = False
    hardware: str = ""  # its tier's name, from LABEL_HARDWARE
    # Not placed yet: why, in plain words ("all 4 A10G GPUs are in use"), for the Space's
    # page; the raw scheduler event behind it in `waiting_detail`. The controller shows it
    # as waiting for hardware, not as a start that failed (Kubernetes: an unschedulable pod).
    waiting_reason: str | None = None
    waiting_detail: str | None = None
    # Cannot run as it is, whatever the controller waits for: why, in plain words (an image
    # that cannot be pulled). The controller shows it as a runtime error.
    problem: str | None = None
    # Frozen (`Backend.freeze`): its processes hold their memory but get no CPU, and answer
    # nothing until thawed. A light sleep (orchestrator/controller/sleep.py).
    frozen: bool = False


@dataclass(frozen=True)
class Capacity:
    """What Spaces may use (after the platform's reserve) and what of it is not yet taken."""

    cpus: float
    memory_gib: float
    cpus_free: float
    memory_gib_free: float
    gpus: int = 0
    gpus_free: int = 0


@dataclass(frozen=True)
class TierRoom:
    """How many more instances of one tier fit now, where the backend places them itself
    (Kubernetes: nodes' allocatable less what is requested on them, by the tier's selector
    and tolerations). `reason` says in plain words why none fit when `free` is 0 ("all 4
    A10G GPUs are in use"); `total` is how many would fit on an empty cluster."""

    free: int
    total: int
    reason: str | None = None


class BackendError(Exception):
    pass


class RoomTaken(BackendError):
    """The room the controller counted is gone by the time of the start (another
    installation on the host took the last GPU): the Space waits in line again, it has not
    failed."""


class Backend(abc.ABC):
    @abc.abstractmethod
    def start(self, revision: Revision) -> Instance: ...

    def remove_volume(self, name: str) -> None:  # noqa: B027 - optional, not abstract
        """Delete a bucket's data (its VolumeMount.name); a no-op where none is kept.
        Raises BackendError for one an instance still mounts."""

    def volumes(self) -> list[KeptVolume]:
        """The volumes this backend keeps for this installation, by label (the controller's
        sweep removes those of deleted buckets and records the sizes); none by default."""
        return []

    @abc.abstractmethod
    def stop(self, instance_id: str) -> None:
        """Stop and remove; a no-op for an instance that is already gone."""

    @abc.abstractmethod
    def instances(self) -> list[Instance]:
        """Every instance this platform manages, found by label, whoever started it."""

    @abc.abstractmethod
    def logs(
        self,
        instance_id: str,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        """The instance's stdout and stderr, a line at a time. With `timestamps`, each line
        starts with the RFC 3339 time it was written and a space, as `docker logs
        --timestamps` and `kubectl logs --timestamps` print it (log_stream.split_timestamp
        takes it apart)."""

    async def follow_logs(
        self, instance_id: str, tail: int | None = None, timestamps: bool = False
    ) -> AsyncIterator[str]:
        """`logs(follow=True)` for asyncio code (the API's log streams): the blocking read,
        Docker's call included, runs in a thread of its own; closing this ends it."""
        opened = in_thread(
            lambda: self.logs(instance_id, tail=tail, follow=True, timestamps=timestamps)
        )
        try:
            async for line in opened:
                yield line
        finally:
            await opened.aclose()

    @abc.abstractmethod
    def capacity(self) -> Capacity: ...

    def watch(self, callback: WatchCallback) -> None:
        """Call `callback` (from any thread) whenever an instance changes: see the module's
        docstring. A backend that cannot tell leaves the controller to its resync."""
        return None

    def close(self) -> None:
        """Stop the threads `watch` and readiness probing started."""
        return None

    def prepare(self) -> None:
        """Set up what every instance relies on (networks, firewall rules), idempotently;
        the controller calls it when it starts. Nothing, unless a backend needs it."""
        return None

    def open_spaces_door(self, port: int) -> str | None:
        """Let Spaces open connections to `port` on an address of this host that only they
        reach, and return that address; None where Spaces reach the platform some other way
        (Kubernetes: a Service). For the sign-in provider's door (orchestrator/oauth/)."""
        return None

    def close_spaces_door(self, port: int) -> None:
        """Undo open_spaces_door."""
        return None

    def tier_room(self, tier: HardwareTier) -> TierRoom | None:
        """Room for `tier` counted by the backend itself, or None when the controller's own
        admission (sandbox/admission.py, from `capacity()`) decides (Docker: one host)."""
        return None

    def forget(self, space_uid: str) -> None:
        """The Space is gone for good: remove everything of it (stopped instances, and on
        Kubernetes its Deployment, Service, Ingress and NetworkPolicy). `stop` alone keeps
        what a paused or sleeping Space comes back to."""
        for instance in self.instances():
            if instance.space_id == space_uid:
                self.stop(instance.id)

    @property
    def can_freeze(self) -> bool:
        """Whether `freeze` works here; where not, a sleeping Space is stopped at once."""
        return False

    def freeze(self, instance_id: str) -> None:
        """Freeze the instance's processes (CPU given back at once, memory kept): a light
        sleep. Raises BackendError where it can't (see `can_freeze`)."""
        raise BackendError("this backend cannot freeze an instance")

    def thaw(self, instance_id: str) -> None:
        """Let a frozen instance run again, as it was (milliseconds); a no-op otherwise."""
        return None

    def disk_usage(self) -> dict[str, int]:
        """Bytes each running instance has written to its own disk, by instance id; a
        backend that enforces its quota itself (or cannot measure) returns {}."""
        return {}
