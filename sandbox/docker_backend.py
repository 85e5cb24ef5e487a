"""The Docker backend: one container per running revision, on the isolated Spaces network."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from sandbox import security
from sandbox.backend import (
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
    Revision,
)

log = logging.getLogger(__name__)


class DockerBackend(Backend):
    def __init__(self, instance: str, client: docker.DockerClient | None = None) -> None:
        self.instance = instance
        self.client = client or docker.from_env(timeout=120)
        self._network_ready = False

    # -- the network ---------------------------------------------------------------

    def ensure_network(self) -> None:
        if self._network_ready:
            return
        options = security.network_options()
        try:
            self.client.networks.get(str(options["name"]))
        except NotFound:
            try:
                self.client.networks.create(**options)  # type: ignore[arg-type]
            except APIError as exc:
                if "already exists" not in str(exc):
                    raise
        self._install_host_firewall()
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

    # -- Backend ------------------------------------------------------------------

    def start(self, revision: Revision) -> Instance:
        self.ensure_network()
        spec = security.container_spec(revision, self.instance)
        try:
            old = self.client.containers.get(str(spec["name"]))
            old.remove(force=True)  # a leftover of the same revision that never became ready
        except NotFound:
            pass
        try:
            container = self.client.containers.run(**spec)  # type: ignore[arg-type]
        except APIError as exc:
            raise BackendError(f"could not start {revision.space}: {exc.explanation}") from exc
        container.reload()
        return self._instance(container)

    def stop(self, instance_id: str) -> None:
        try:
            container = self.client.containers.get(instance_id)
            container.stop(timeout=10)
            container.remove(force=True)
        except NotFound:
            pass

    def instances(self) -> list[Instance]:
        containers = self.client.containers.list(all=True, filters={"label": self._mine})
        return [self._instance(c) for c in containers if LABEL_REVISION in c.labels]

    def logs(
        self, instance_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        try:
            container = self.client.containers.get(instance_id)
            if not follow:
                data = container.logs(tail=tail if tail is not None else "all")
                return iter(data.decode(errors="replace").splitlines())
            stream = container.logs(
                stream=True, follow=True, tail=tail if tail is not None else "all"
            )
        except (NotFound, APIError):  # gone, or being removed: no log left to read
            return iter(())
        return _LogLines(stream)

    def capacity(self) -> Capacity:
        info = self.client.info()
        cpus = float(info.get("NCPU", 0))
        memory = info.get("MemTotal", 0) / 2**30
        used_cpus = used_memory = 0.0
        # Every installation's containers count: they share the machine.
        for container in self.client.containers.list(filters={"label": f"{LABEL_MANAGED}=true"}):
            host = container.attrs.get("HostConfig", {})
            used_cpus += host.get("NanoCpus", 0) / 1e9
            used_memory += host.get("Memory", 0) / 2**30
        return Capacity(
            cpus=cpus,
            memory_gib=memory,
            cpus_free=max(cpus - used_cpus, 0),
            memory_gib_free=max(memory - used_memory, 0),
        )

    # -- helpers ------------------------------------------------------------------

    @property
    def _mine(self) -> str:
        return f"{LABEL_INSTANCE}={self.instance}"

    def _instance(self, container: Container) -> Instance:
        labels = container.labels
        state = container.attrs.get("State", {})
        status = state.get("Status", "")
        if status in ("created", "restarting"):
            instance_state = InstanceState.STARTING
        elif status == "running":
            instance_state = InstanceState.RUNNING
        else:
            instance_state = InstanceState.EXITED
        networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
        ip = (networks.get(security.SPACES_NETWORK) or {}).get("IPAddress")
        port = _exposed_port(container)
        return Instance(
            id=container.id or "",
            space_id=int(labels.get(LABEL_SPACE_ID, "0")),
            space=labels.get(LABEL_SPACE, ""),
            revision=labels.get(LABEL_REVISION, ""),
            sha=labels.get(LABEL_SHA, ""),
            state=instance_state,
            address=f"http://{ip}:{port}"
            if ip and instance_state != InstanceState.EXITED
            else None,
            started_at=_parse_time(state.get("StartedAt")),
            exit_code=state.get("ExitCode") if instance_state == InstanceState.EXITED else None,
        )


def _exposed_port(container: Container) -> int:
    env = dict(
        item.split("=", 1)
        for item in container.attrs.get("Config", {}).get("Env", [])
        if "=" in item
    )
    return int(env.get("SPACEPORT_APP_PORT", "7860"))


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001"):
        return None
    try:
        return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None


class _LogLines:
    """A followed log's lines; close(), from any thread, ends a read that is waiting for
    the next line (docker's CancellableStream shuts its socket down), so a follower whose
    client left does not hold its thread until the app prints again."""

    def __init__(self, stream: Iterator[bytes]) -> None:
        self._stream = stream
        self._lines = _lines(stream)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        try:
            self._stream.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - already closed, or the socket is gone
            pass


def _lines(stream: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
