"""The Docker backend: one container per running revision, on the isolated Spaces network.

It tells the controller what changes (`watch`): the Engine's event stream, filtered by this
installation's label (start, die, destroy, oom), and the readiness prober
(sandbox/readiness.py), which probes each new instance until it answers.

GPU tiers get specific GPUs of the host (sandbox/gpus.py's inventory): `tier_room` counts
the GPUs of the tier's model that no Space container of any installation holds (each names
its GPUs in LABEL_GPUS, so Docker is the only record), bounded by the host's CPU and memory
as admission counts them; `start` picks free ones under a lock, so two starts of this
process never get the same GPU, and starts the container only if no container made before
it holds one of them, so two installations on one Engine never do either
(`_claim_gpus`). CPU tiers are left to the controller's admission (`tier_room` is None).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.utils import parse_repository_tag

from sandbox import security
from sandbox.admission import Policy, available, combined, gpu_room, host_room
from sandbox.backend import (
    LABEL_GPUS,
    LABEL_HARDWARE,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_SHA,
    LABEL_SPACE,
    LABEL_SPACE_ID,
    Backend,
    BackendError,
    Capacity,
    Instance,
    InstanceState,
    KeptVolume,
    Revision,
    RoomTaken,
    TierRoom,
    WatchCallback,
)
from sandbox.gpus import Gpu, Inventory
from sandbox.hardware import HardwareTier
from sandbox.log_stream import ClosableLines
from sandbox.readiness import Prober

log = logging.getLogger(__name__)
RESOLV_CONFS = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")
# The Engine's container events that change what the controller sees.
WATCHED_EVENTS = ("start", "die", "destroy", "oom", "pause", "unpause")
# Container states in which a container no longer holds its GPUs.
GPU_RELEASED_STATES = ("exited", "dead")
# Held while GPUs are picked and the container that holds them is created, so two starts in
# this process never pick the same GPU (every backend object of the process shares it).
_GPU_LOCK = threading.Lock()
# How long a volume measure waits for another disk usage count on the Engine to end (the
# sweep that measures runs in its own thread, so the wait holds nothing else up).
DISK_USAGE_PATIENCE_SECONDS = 30.0


class DockerBackend(Backend):
    def __init__(
        self,
        instance: str,
        client: docker.DockerClient | None = None,
        egress_allow: Sequence[str] = (),
        probe_concurrency: int = 16,
        registry: str = "",
        registry_username: str = "",
        registry_password: str = "",
        gpu_inventory: Inventory | None = None,
        admission: Policy | None = None,
    ) -> None:
        self.instance = instance
        # The host's GPUs (read at prepare, refreshed in the background), and the operator's
        # admission settings, which bound a GPU tier's room by CPU and memory too.
        self.gpu_inventory = gpu_inventory or Inventory()
        self.admission = admission or Policy()
        # Where built images live (SPACEPORT_REGISTRY), and the login an image of it is
        # pulled with when this Engine lacks it; other images are pulled without one.
        self.registry_host = registry.split("/", 1)[0]
        self._registry_auth = (
            {"username": registry_username, "password": registry_password}
            if registry_username or registry_password
            else None
        )
        self.client = client or docker.from_env(timeout=120)
        # Networks a Space may reach despite the private-range block (operator's allow-list).
        self.egress_allow = [security.parse_egress_allow(entry) for entry in egress_allow]
        self._network_ready = False
        self._network_lock = threading.Lock()
        self._watchers: list[WatchCallback] = []
        self._events_thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._prober = Prober(self._notify, concurrency=probe_concurrency)

    # -- the network ---------------------------------------------------------------

    def prepare(self) -> None:
        self.ensure_network()
        self.gpu_inventory.read()

    def ensure_network(self) -> None:
        if self._network_ready:
            return
        with self._network_lock:  # the controller starts several Spaces at once
            if not self._network_ready:
                self._prepare_network()

    def _prepare_network(self) -> None:
        options = security.network_options()
        try:
            network = self.client.networks.get(str(options["name"]))
        except NotFound:
            try:
                network = self.client.networks.create(**options)  # type: ignore[arg-type]
            except APIError as exc:
                if "already exists" not in str(exc):
                    raise
                network = self.client.networks.get(str(options["name"]))
        self._install_host_firewall()
        self._install_egress_firewall(ipv6=bool(network.attrs.get("EnableIPv6")))
        self._network_ready = True

    def _install_host_firewall(self) -> None:
        iptables = shutil.which("iptables")
        if iptables is None:
            log.warning("iptables not found: Spaces may reach services bound on the host")
            return
        # Inserted in reverse so they end up first in INPUT, in the order given.
        for rule in reversed(security.host_firewall_rules()):
            present = subprocess.run([iptables, "-C", "INPUT", *rule], capture_output=True)
            if present.returncode != 0:
                subprocess.run(
                    [iptables, "-I", "INPUT", "1", *rule], check=True, capture_output=True
                )

    def _install_egress_firewall(self, ipv6: bool) -> None:
        """Spaces' way out (FORWARD, through DOCKER-USER): replies and the internet pass,
        metadata and private ranges are refused except the allow-list. Idempotent: the shared
        chain is rewritten in one iptables-restore transaction (no moment without it), and
        this installation's allow entries are added or removed one by one."""
        dns = host_nameservers()
        for binary, version in (("iptables", 4), ("ip6tables", 6)):
            if version == 6 and not ipv6:
                continue  # the Spaces network has no IPv6 address to leave from
            tool = shutil.which(binary)
            restore = shutil.which(f"{binary}-restore")
            if tool is None or restore is None:
                log.warning("%s not found: Spaces may reach private networks", binary)
                continue
            _install_egress_chains(tool, restore, version, dns)
            _sync_allow_rules(
                tool,
                security.egress_allow_rules(self.egress_allow, self.instance, version),
                security.allow_comment(self.instance),
            )

    def open_spaces_door(self, port: int) -> str | None:
        self.ensure_network()
        network = self.client.networks.get(security.SPACES_NETWORK)
        configs = network.attrs.get("IPAM", {}).get("Config") or []
        gateway = next((c.get("Gateway") for c in configs if c.get("Gateway")), None)
        iptables = shutil.which("iptables")
        if gateway is None or iptables is None:
            log.warning("no gateway address or iptables: Spaces can't reach the sign-in door")
            return None
        rule = security.spaces_door_rule(gateway, port, self.instance)
        present = subprocess.run([iptables, "-w", "-C", "INPUT", *rule], capture_output=True)
        if present.returncode != 0:  # first in INPUT: above the DROP of Spaces' traffic
            subprocess.run([iptables, "-w", "-I", "INPUT", "1", *rule], check=True)
        return str(gateway)

    def close_spaces_door(self, port: int) -> None:
        iptables = shutil.which("iptables")
        if iptables is None:
            return
        try:
            network = self.client.networks.get(security.SPACES_NETWORK)
        except NotFound:
            return
        for config in network.attrs.get("IPAM", {}).get("Config") or []:
            if gateway := config.get("Gateway"):
                rule = security.spaces_door_rule(gateway, port, self.instance)
                subprocess.run([iptables, "-w", "-D", "INPUT", *rule], capture_output=True)

    # -- Backend ------------------------------------------------------------------

    def start(self, revision: Revision) -> Instance:
        self.ensure_network()
        self._ensure_image(revision)
        image_volumes = self._image_volumes(revision)
        if not revision.hardware.gpu_count:
            return self._run(revision, image_volumes)
        with _GPU_LOCK:  # until the container exists, its GPUs are free to anyone else
            return self._run(revision, image_volumes, self._pick_gpus(revision.hardware))

    def _run(
        self, revision: Revision, image_volumes: list[str], gpus: Sequence[Gpu] = ()
    ) -> Instance:
        spec = security.container_spec(
            revision, self.instance, image_volumes, gpus=[gpu.uuid for gpu in gpus]
        )
        if revision.mounts:
            self._mount_volumes(revision, spec)
        try:
            old = self.client.containers.get(str(spec["name"]))
            old.remove(force=True)  # a leftover of the same revision that never became ready
        except NotFound:
            pass
        try:
            if gpus:
                container = self._claim_gpus(revision, spec, {gpu.uuid for gpu in gpus})
            else:
                container = self.client.containers.run(**spec)  # type: ignore[arg-type]
        except APIError as exc:
            raise BackendError(f"could not start {revision.space}: {exc.explanation}") from exc
        container.reload()
        return self._instance(container)

    def _claim_gpus(
        self, revision: Revision, spec: dict[str, object], picked: set[str]
    ) -> Container:
        """Create the container that names `picked` GPUs in its label, then start it only if
        no other container holding one of them was created before it. _GPU_LOCK orders the
        starts of this process; this orders those of every installation on the Engine (each
        checks the same way, so of two that picked one GPU at the same instant exactly the
        first created starts, and the other is removed before it ran: RoomTaken)."""
        create = {k: v for k, v in spec.items() if k != "detach"}
        container = self.client.containers.create(**create)  # type: ignore[arg-type]
        container.reload()
        mine = _creation(str(container.attrs.get("Created", "")), container.id or "")
        for rival in self._gpu_holders(picked):
            if rival != mine and rival < mine:
                container.remove(force=True)
                raise RoomTaken(
                    f"{revision.hardware.name}: a GPU it was given was taken at the same moment "
                    "by another installation on this Docker Engine"
                )
        container.start()
        return container

    def _gpu_holders(self, uuids: set[str]) -> list[tuple[datetime, str]]:
        """(created, id) of each container not yet released that holds one of `uuids`."""
        rows = self.client.api.containers(
            all=True, filters={"label": [f"{LABEL_MANAGED}=true", LABEL_GPUS]}
        )
        holders = []
        for row in rows:
            if str(row.get("State", "")).lower() in GPU_RELEASED_STATES:
                continue
            labels = row.get("Labels") or {}
            if uuids & set(str(labels.get(LABEL_GPUS, "")).split(",")):
                try:
                    created = self.client.api.inspect_container(row["Id"])["Created"]
                except NotFound:
                    continue  # removed since it was listed: it holds nothing
                holders.append(_creation(str(created), str(row["Id"])))
        return holders

    def stop(self, instance_id: str) -> None:
        try:
            container = self.client.containers.get(instance_id)
            if _paused(container):  # a light sleeper: its processes must run to their end
                container.unpause()
            container.stop(timeout=10)
            container.remove(force=True)
        except NotFound:
            pass

    @property
    def can_freeze(self) -> bool:
        return True

    def freeze(self, instance_id: str) -> None:
        """`docker pause`: the cgroup freezer stops its processes where they are (its CPU is
        free at once, its memory stays), so `thaw` resumes it in milliseconds."""
        try:
            self.client.containers.get(instance_id).pause()
        except (NotFound, APIError) as exc:
            raise BackendError(f"could not freeze {instance_id[:12]}: {exc}") from exc

    def thaw(self, instance_id: str) -> None:
        try:
            container = self.client.containers.get(instance_id)
            if _paused(container):
                container.unpause()
        except NotFound:
            pass
        except APIError as exc:
            raise BackendError(f"could not thaw {instance_id[:12]}: {exc}") from exc

    def instances(self) -> list[Instance]:
        found = [self._instance(c) for c in self._containers({"label": self._mine}, all=True)]
        found = [i for i in found if i.revision]
        self._prober.keep_only({i.id for i in found})
        return found

    def _containers(self, filters: dict[str, object], all: bool = False) -> list[Container]:
        """Listed, then inspected one by one: a container removed in between (a stop, a
        crash cleaned up) is left out instead of failing the whole list."""
        rows = self.client.api.containers(all=all, filters=filters)
        containers = []
        for row in rows:
            try:
                containers.append(self.client.containers.get(row["Id"]))
            except NotFound:
                continue
        return containers

    # -- change notifications ----------------------------------------------------

    def watch(self, callback: WatchCallback) -> None:
        self._watchers.append(callback)
        if self._events_thread is None:
            self._events_thread = threading.Thread(
                target=self._follow_events, name="docker-events", daemon=True
            )
            self._events_thread.start()

    def close(self) -> None:
        self._closed.set()
        self._prober.close()

    def _notify(self, space_uid: str | None) -> None:
        for callback in list(self._watchers):
            try:
                callback(space_uid)
            except Exception:  # noqa: BLE001 - one watcher's bug must not stop the stream
                log.exception("a backend watcher failed")

    def _follow_events(self) -> None:
        """The Engine's event stream, resumed from the last event seen after a timeout or a
        lost connection (the Engine replays from `since`); after an error the controller is
        told to look at everything, in case the gap lost something."""
        since: float | None = None
        filters = {"type": "container", "label": [self._mine], "event": list(WATCHED_EVENTS)}
        while not self._closed.is_set():
            try:
                stream = self.client.api.events(decode=True, filters=filters, since=since)
                for event in stream:
                    since = float(event.get("timeNano", 0)) / 1e9 or time.time()
                    actor = event.get("Actor") or {}
                    if event.get("status") in ("die", "destroy"):
                        self._prober.forget(str(actor.get("ID", "")))
                    uid = (actor.get("Attributes") or {}).get(LABEL_SPACE_ID)
                    self._notify(uid or None)
            except Exception as exc:  # noqa: BLE001 - the Engine restarting, a read timeout
                if self._closed.is_set():
                    return
                timed_out = "timed out" in str(exc).lower()
                if not timed_out:
                    log.warning("docker event stream lost (%s); following it again", exc)
                    self._notify(None)
                    self._closed.wait(1.0)
                since = since or time.time()

    def logs(
        self,
        instance_id: str,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        lines = tail if tail is not None else "all"
        try:
            container = self.client.containers.get(instance_id)
            if not follow:
                data = container.logs(tail=lines, timestamps=timestamps)
                return iter(data.decode(errors="replace").splitlines())
            stream = container.logs(stream=True, follow=True, tail=lines, timestamps=timestamps)
        except (NotFound, APIError):  # gone, or being removed: no log left to read
            return iter(())
        return ClosableLines(_lines(stream), stream.close)

    def capacity(self) -> Capacity:
        """The machine, less the limits of every running Space of every installation (they
        share it). Free may go below 0 where limits already overcommit the host."""
        info = self.client.info()
        cpus = float(info.get("NCPU", 0))
        memory = info.get("MemTotal", 0) / 2**30
        used_cpus = used_memory = 0.0
        for container in self._containers({"label": f"{LABEL_MANAGED}=true"}):
            host = container.attrs.get("HostConfig", {})
            if not _paused(container):  # a frozen Space's CPU is free, its memory not
                used_cpus += host.get("NanoCpus", 0) / 1e9
            used_memory += host.get("Memory", 0) / 2**30
        gpus = self.gpu_inventory.gpus()
        held = self._held_gpus()
        return Capacity(
            cpus=cpus,
            memory_gib=memory,
            cpus_free=cpus - used_cpus,
            memory_gib_free=memory - used_memory,
            gpus=len(gpus),
            gpus_free=sum(1 for gpu in gpus if gpu.uuid not in held),
        )

    def tier_room(self, tier: HardwareTier) -> TierRoom | None:
        """A GPU tier's room: free GPUs of its model (in `gpu_count`s), and no more than the
        host's CPU and memory hold after the operator's reserve (sandbox/admission.py)."""
        if not tier.gpu_count:
            return None  # the controller's admission counts CPU and memory itself
        ours = self._gpus_of(tier)
        if not ours:
            return TierRoom(
                free=0, total=0, reason=f"this host has no {tier.gpu} GPU: choose another tier"
            )
        held = self._held_gpus()
        gpus = gpu_room(tier, len(ours), sum(1 for gpu in ours if gpu.uuid in held))
        running = [i for i in self.instances() if i.state != InstanceState.EXITED]
        host = host_room(available(self.capacity(), running, self.admission), tier)
        return combined(gpus, host)

    def _gpus_of(self, tier: HardwareTier) -> list[Gpu]:
        model = (tier.gpu or "").upper()
        return [gpu for gpu in self.gpu_inventory.gpus() if gpu.model == model]

    def _held_gpus(self) -> set[str]:
        """The uuids of GPUs that a Space container of any installation on this Engine holds
        (created or running): read from the list's labels, no inspect per container."""
        rows = self.client.api.containers(
            all=True, filters={"label": [f"{LABEL_MANAGED}=true", LABEL_GPUS]}
        )
        held: set[str] = set()
        for row in rows:
            if str(row.get("State", "")).lower() in GPU_RELEASED_STATES:
                continue
            labels = row.get("Labels") or {}
            held.update(uuid for uuid in str(labels.get(LABEL_GPUS, "")).split(",") if uuid)
        return held

    def _pick_gpus(self, tier: HardwareTier) -> list[Gpu]:
        """Free GPUs of the tier's model for a new container, lowest index first; the caller
        holds _GPU_LOCK until that container exists."""
        held = self._held_gpus()
        free = sorted(
            (gpu for gpu in self._gpus_of(tier) if gpu.uuid not in held), key=lambda g: g.index
        )
        if len(free) < tier.gpu_count:
            raise RoomTaken(
                f"{tier.name} needs {tier.gpu_count} {tier.gpu} GPU(s) and {len(free)} are free"
            )
        return free[: tier.gpu_count]

    def disk_usage(self) -> dict[str, int]:
        """SizeRw of each running container of this installation: what it wrote to its
        writable layer (the Engine walks the layer's files, hence not every pass)."""
        rows = self.client.api.containers(
            filters={"label": self._mine, "status": "running"}, size=True
        )
        return {row["Id"]: int(row.get("SizeRw") or 0) for row in rows}

    # -- helpers ------------------------------------------------------------------

    def _ensure_image(self, revision: Revision) -> None:
        """Pull the revision's image when this Engine lacks it: a digest reference
        (<registry>/<uid>@sha256:...) built by a worker on another host, or removed here
        since. The pull names the digest, so it gets exactly the content that was built."""
        image = revision.image
        try:
            self.client.images.get(image)
            return
        except NotFound:
            pass
        except APIError as exc:
            raise BackendError(f"could not look up {image}: {exc.explanation}") from exc
        repository, tag = parse_repository_tag(image)
        first = repository.split("/", 1)[0]
        auth = self._registry_auth if first == self.registry_host else None
        problem: str | None = None
        try:
            for chunk in self.client.api.pull(
                repository, tag=tag or "latest", stream=True, decode=True, auth_config=auth
            ):
                if "error" in chunk or "errorDetail" in chunk:
                    problem = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
        except (DockerException, requests.exceptions.RequestException) as exc:
            problem = str(getattr(exc, "explanation", None) or exc)
        if problem is not None:
            if self._registry_auth and self._registry_auth["password"]:
                problem = problem.replace(self._registry_auth["password"], "***")
            refused = any(word in problem.lower() for word in ("unauthorized", "denied"))
            hint = (
                " (check SPACEPORT_REGISTRY_USERNAME and SPACEPORT_REGISTRY_PASSWORD)"
                if refused
                else " (check SPACEPORT_REGISTRY and that the registry is running)"
                if first == self.registry_host
                else ""
            )
            raise BackendError(f"could not pull {image} for {revision.space}: {problem}{hint}")

    def volume_name(self, name: str) -> str:
        """The Docker volume of a Space volume: per installation, so two on one Engine never
        share a bucket."""
        return f"spaceport-{self.instance}-{name}"

    def _mount_volumes(self, revision: Revision, spec: dict[str, object]) -> None:
        """The revision's volumes in the container spec: a bucket is a named volume (made on
        first use, kept across containers), a Space's files a read-only bind of their export.
        A mount over a path the image declares as VOLUME replaces that path's tmpfs."""
        binds: dict[str, dict[str, str]] = {}
        for mount in revision.mounts:
            mode = "ro" if mount.read_only or mount.over_quota else "rw"
            if mount.source_dir is not None:
                binds[mount.source_dir] = {"bind": mount.mount_path, "mode": mode}
            else:
                binds[self._ensure_volume(revision, mount.name)] = {
                    "bind": mount.mount_path,
                    "mode": mode,
                }
        spec["volumes"] = binds
        tmpfs = spec.get("tmpfs")
        if isinstance(tmpfs, dict):
            for mount in revision.mounts:
                tmpfs.pop(mount.mount_path, None)
            if not tmpfs:
                del spec["tmpfs"]

    def _ensure_volume(self, revision: Revision, name: str) -> str:
        """The bucket's named volume, made writable for the Space's user (uid 1000) when it is
        new: the Engine makes a volume's root owned by root, and Spaces never run as root."""
        volume = self.volume_name(name)
        try:
            self.client.volumes.get(volume)
            return volume
        except NotFound:
            pass
        try:
            self.client.volumes.create(name=volume, labels={LABEL_INSTANCE: self.instance})
            # A one-off root process in the Space's own image (already here), without network
            # and with only CAP_CHOWN/FOWNER: it changes the empty volume's owner and exits.
            self.client.containers.run(
                revision.image,
                ["chown", f"{security.SPACE_UID}:{security.SPACE_UID}", "/volume"],
                entrypoint=[],
                user="0:0",
                network_mode="none",
                cap_drop=["ALL"],
                cap_add=["CHOWN", "FOWNER"],
                security_opt=["no-new-privileges"],
                volumes={volume: {"bind": "/volume", "mode": "rw"}},
                labels={LABEL_INSTANCE: self.instance},
                remove=True,
            )
        except (APIError, DockerException) as exc:
            try:
                self.client.volumes.get(volume).remove(force=True)
            except (NotFound, APIError):
                pass
            raise BackendError(f"could not prepare a volume for {revision.space}: {exc}") from exc
        return volume

    def remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(self.volume_name(name)).remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise BackendError(f"could not remove volume {name}: {exc.explanation}") from exc

    def volumes(self) -> list[KeptVolume]:
        """This installation's named volumes (by label and name), each in use if a container
        of it, in any state, mounts it (the Engine refuses to remove those), with its size
        from the Engine's disk usage (None when that could not be read)."""
        prefix = self.volume_name("")
        try:
            listed = self.client.api.volumes(filters={"label": self._mine}).get("Volumes") or []
            containers = self.client.api.containers(all=True, filters={"label": self._mine})
        except (DockerException, requests.exceptions.RequestException) as exc:
            raise BackendError(f"could not list this installation's volumes: {exc}") from exc
        used = {
            mount.get("Name")
            for container in containers
            for mount in container.get("Mounts") or []
            if mount.get("Type") == "volume"
        }
        sizes = self._volume_sizes()
        return [
            KeptVolume(
                volume["Name"][len(prefix) :],
                in_use=volume["Name"] in used,
                size_bytes=sizes.get(volume["Name"]),
            )
            for volume in listed
            if str(volume.get("Name", "")).startswith(prefix)
        ]

    def _volume_sizes(self) -> dict[str, int]:
        """Bytes each volume's files take, as `docker system df -v` counts them (the local
        driver walks the volume's folder: it measures, it does not limit). Only volumes are
        asked for; an Engine older than API 1.42 ignores that and counts everything."""
        api = self.client.api
        give_up_at = time.monotonic() + DISK_USAGE_PATIENCE_SECONDS
        while True:
            try:
                usage = api._result(
                    api._get(api._url("/system/df"), params={"type": "volume"}), True
                )
                break
            except (DockerException, requests.exceptions.RequestException) as exc:
                # The Engine runs one disk usage count at a time and refuses a second one
                # ("a disk usage operation is already running") rather than joining it:
                # another installation's sweep, or `docker system df`, is counting. Theirs
                # ends soon, so wait for it a while before leaving this sweep unmeasured.
                busy = isinstance(exc, APIError) and "already running" in str(exc.explanation)
                if busy and time.monotonic() < give_up_at:
                    time.sleep(0.5)
                    continue
                log.warning("could not measure the volumes (the next sweep tries again): %s", exc)
                return {}
        sizes = {}
        for volume in usage.get("Volumes") or []:
            size = (volume.get("UsageData") or {}).get("Size", -1)
            if isinstance(size, int) and size >= 0:
                sizes[str(volume.get("Name"))] = size
        return sizes

    def _image_volumes(self, revision: Revision) -> list[str]:
        try:
            config = self.client.images.get(revision.image).attrs.get("Config") or {}
        except (NotFound, APIError):
            return []  # `run` reports a missing image itself
        return list(config.get("Volumes") or {})

    @property
    def _mine(self) -> str:
        return f"{LABEL_INSTANCE}={self.instance}"

    def _instance(self, container: Container) -> Instance:
        labels = container.labels
        state = container.attrs.get("State", {})
        status = state.get("Status", "")
        if status in ("created", "restarting"):
            instance_state = InstanceState.STARTING
        elif status in ("running", "paused"):  # paused: frozen, a light sleep
            instance_state = InstanceState.RUNNING
        else:
            instance_state = InstanceState.EXITED
        networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
        ip = (networks.get(security.SPACES_NETWORK) or {}).get("IPAddress")
        port = _exposed_port(container)
        address = f"http://{ip}:{port}" if ip and instance_state != InstanceState.EXITED else None
        instance_id = container.id or ""
        if address and instance_state == InstanceState.RUNNING:
            # Only a controller probes (not an API reading a log); a frozen one would not
            # answer, and keeps the readiness it had, so its thaw serves at once.
            if self._watchers and status != "paused":
                self._prober.watch(instance_id, address, labels.get(LABEL_SPACE_ID, ""))
        else:
            self._prober.forget(instance_id)
        return Instance(
            id=instance_id,
            space_id=labels.get(LABEL_SPACE_ID, ""),
            space=labels.get(LABEL_SPACE, ""),
            revision=labels.get(LABEL_REVISION, ""),
            sha=labels.get(LABEL_SHA, ""),
            state=instance_state,
            address=address,
            started_at=_parse_time(state.get("StartedAt")),
            exit_code=state.get("ExitCode") if instance_state == InstanceState.EXITED else None,
            cpus=container.attrs.get("HostConfig", {}).get("NanoCpus", 0) / 1e9,
            memory_gib=container.attrs.get("HostConfig", {}).get("Memory", 0) / 2**30,
            ready=self._prober.is_ready(instance_id),
            hardware=labels.get(LABEL_HARDWARE, ""),
            frozen=status == "paused",
        )


def _install_egress_chains(tool: str, restore: str, version: int, dns: list[str]) -> None:
    rules = security.egress_rules(version, dns)
    lines = ["*filter"]
    lines.append(f":{security.EGRESS_CHAIN} - [0:0]")  # declared: flushed, then refilled
    lines += [f"-A {security.EGRESS_CHAIN} " + shlex.join(rule) for rule in rules]
    lines.append("COMMIT")
    subprocess.run([tool, "-w", "-N", security.EGRESS_ALLOW_CHAIN], capture_output=True)
    subprocess.run(
        [restore, "-w", "--noflush"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    # Docker's DOCKER-USER comes first in FORWARD; without it (iptables off in the Engine),
    # FORWARD itself.
    chain = "DOCKER-USER"
    if subprocess.run([tool, "-w", "-S", chain], capture_output=True).returncode != 0:
        chain = "FORWARD"
    jump = security.egress_jump_rule()
    if subprocess.run([tool, "-w", "-C", chain, *jump], capture_output=True).returncode != 0:
        subprocess.run([tool, "-w", "-I", chain, "1", *jump], check=True, capture_output=True)


def _sync_allow_rules(tool: str, wanted: list[list[str]], comment: str) -> None:
    """Make this installation's rules in the allow chain exactly `wanted`, leaving other
    installations' rules alone."""
    chain = security.EGRESS_ALLOW_CHAIN
    listed = subprocess.run([tool, "-w", "-S", chain], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        words = shlex.split(line)
        if words[:2] == ["-A", chain] and comment in words:
            rule = words[2:]
            if not any(_same_rule(rule, w) for w in wanted):
                subprocess.run([tool, "-w", "-D", chain, *rule], capture_output=True)
    for rule in wanted:
        if subprocess.run([tool, "-w", "-C", chain, *rule], capture_output=True).returncode:
            subprocess.run([tool, "-w", "-A", chain, *rule], check=True, capture_output=True)


def _same_rule(listed: list[str], wanted: list[str]) -> bool:
    # iptables lists a rule with its own option order and adds the implied `-m tcp`.
    words = " ".join(listed).replace("-m tcp ", "").replace("-m udp ", "").split()
    return sorted(words) == sorted(wanted)


def _paused(container: Container) -> bool:
    """Frozen by `freeze` (docker pause): a light sleeper."""
    return bool(container.attrs.get("State", {}).get("Status") == "paused")


def _exposed_port(container: Container) -> int:
    env = dict(
        item.split("=", 1)
        for item in container.attrs.get("Config", {}).get("Env", [])
        if "=" in item
    )
    return int(env.get("SPACEPORT_APP_PORT", "7860"))


def _creation(created: str, container_id: str) -> tuple[datetime, str]:
    """A container's place in the order of creation: its time (the Engine's RFC 3339 text
    drops trailing zeros, so it is compared parsed, never as text), then its id."""
    return (_parse_time(created) or datetime.min.replace(tzinfo=UTC), container_id)


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001"):
        return None
    try:
        return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None


def _lines(stream: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def host_nameservers() -> list[str]:
    """The resolvers Docker's embedded DNS forwards to: the host's, or systemd-resolved's
    upstream ones where the host's is a loopback stub (127.0.0.53)."""
    servers: list[str] = []
    for resolv_conf in RESOLV_CONFS:
        try:
            servers += security.nameservers(Path(resolv_conf).read_text())
        except OSError:
            continue
    return list(dict.fromkeys(servers))


def forget_egress_allow(instance: str) -> None:
    """Remove an installation's allow-list rules (when it is uninstalled, or a test ends)."""
    for binary in ("iptables", "ip6tables"):
        if tool := shutil.which(binary):
            if (
                subprocess.run(
                    [tool, "-w", "-S", security.EGRESS_ALLOW_CHAIN], capture_output=True
                ).returncode
                == 0
            ):
                _sync_allow_rules(tool, [], security.allow_comment(instance))
