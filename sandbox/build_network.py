"""The network builds run on: internal, with one way out through Spaceport's egress proxy.

Every RUN step of a build runs on `spaceport-builds`, an internal Docker network: no route
out, and (host firewall rule) no packet to the host itself. The worker installs those rules
itself when it is root on the Engine's host (`build_host_firewall="manage"`, one machine);
with "external" the Engine's host keeps them (the Helm chart's Docker-in-Docker sidecar
installs `host_firewall_rules()` before dockerd starts) and the worker touches no firewall.
Like the Spaces network it is one network per Engine, shared by the installations on it (a
network per installation would use up Docker's address pools); each installation has its own
proxy on it. Its other members are the build proxies (`sandbox/build_proxy_server.py`), each
a small container of Spaceport's own, also on Docker's default bridge, that lets through
only http(s) to the allowed package hosts, never to a local address. Builds find theirs
through the predefined proxy build args (HTTP_PROXY, HTTPS_PROXY and their lower-case
forms), which pip and apt honour and which the Engine keeps out of the image's history and
its layer cache keys.

The proxy image is built from Spaceport's Python base image (no package to install: the proxy
is standard library only), tagged by a digest of its code, so a changed proxy is rebuilt and
its container replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import docker
import docker.errors
from docker.models.containers import Container

from sandbox.backend import LABEL_INSTANCE
from sandbox.build_proxy_server import Policy, policy_from_env

PROXY_SOURCE = Path(__file__).with_name("build_proxy_server.py")
PROXY_PORT = 3128
BUILD_NETWORK = "spaceport-builds"
BUILD_BRIDGE = "spaceportb0"
LABEL_ROLE = "org.spaceport.build-role"
LABEL_CONFIG = "org.spaceport.build-config"
PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY_ARGS = ("NO_PROXY", "no_proxy", "FTP_PROXY", "ftp_proxy", "ALL_PROXY", "all_proxy")

logger = logging.getLogger(__name__)
_external_firewall_noted = False  # said once per process, not before every build


class BuildNetworkError(Exception):
    """The build network or its proxy could not be set up; the message says why."""


@dataclass(frozen=True)
class BuildNetwork:
    name: str  # the Engine's `networkmode` for the build
    proxy_url: str

    def build_args(self) -> dict[str, str]:
        return dict.fromkeys(PROXY_ARGS, self.proxy_url)


class _Settings:
    """What this module reads of its options (builder.spec.BuildOptions; documentation only).
    `instance` is the installation's name, given by the caller: sandbox/ knows nothing of
    where it is kept."""

    instance: str | None
    image_prefix: str
    home: Path
    debian_mirror: str
    build_egress_allow: list[str]
    build_blocked_networks: list[str]
    build_host_firewall: Literal["manage", "external"]


def instance_of(settings: _Settings) -> str:
    """The installation's name, which the caller must give."""
    if not settings.instance:
        raise BuildNetworkError("no installation name given for the build network's proxy")
    return settings.instance


def allowed_hosts(settings: _Settings) -> list[str]:
    hosts = list(settings.build_egress_allow)
    mirror = urlsplit(settings.debian_mirror).hostname
    if mirror and mirror not in hosts:
        hosts.append(mirror)
    return hosts


def proxy_env(settings: _Settings) -> dict[str, str]:
    return {
        "SPACEPORT_PROXY_ALLOW": ",".join(allowed_hosts(settings)),
        "SPACEPORT_PROXY_BLOCK": ",".join(settings.build_blocked_networks),
        "SPACEPORT_PROXY_PORTS": "80,443",
        "SPACEPORT_PROXY_LISTEN": f"0.0.0.0:{PROXY_PORT}",
    }


def egress_policy(settings: _Settings) -> Policy:
    try:
        return policy_from_env(proxy_env(settings))
    except ValueError as exc:  # an operator's typo, said in the build's error message
        raise BuildNetworkError(
            f"SPACEPORT_BUILD_BLOCKED_NETWORKS holds something that is not a network: {exc}"
        ) from exc


def host_firewall_rules() -> list[list[str]]:
    """INPUT rules, in order: a build reaches no port of the host (an internal Docker network
    still reaches the host through its bridge address); replies to the host pass."""
    bridge = BUILD_BRIDGE
    return [
        ["-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", bridge, "-j", "DROP"],
    ]


def ensure_build_network(
    client: docker.DockerClient,
    settings: _Settings,
    base_image: str,
    log: Callable[[str], None],
) -> BuildNetwork:
    """Make sure the network, the host rules and the proxy are in place; `base_image` is the
    local Python image the proxy's image is built on."""
    locks = Path(settings.home) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    instance = instance_of(settings)
    egress_policy(settings)  # refuse a bad setting here rather than in a crashing proxy
    with _locked(locks / "build-network.lock"):
        network = _ensure_network(client)
        _keep_host_firewall(settings.build_host_firewall)
        image = _ensure_proxy_image(client, settings.image_prefix, base_image)
        container = _ensure_proxy(client, settings, instance, image, network, log)
        address = _address_on(container, network.name)
        return BuildNetwork(network.name, f"http://{address}:{PROXY_PORT}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_network(client: docker.DockerClient):  # type: ignore[no-untyped-def]
    name = BUILD_NETWORK
    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        try:
            network = client.networks.create(
                name,
                driver="bridge",
                internal=True,
                options={"com.docker.network.bridge.name": BUILD_BRIDGE},
                labels={LABEL_ROLE: "network"},
            )
        except docker.errors.APIError as exc:
            if "already exists" in str(exc):  # another installation made it just now
                return _ensure_network(client)
            raise BuildNetworkError(f"cannot create the build network {name}: {exc}") from exc
    if not network.attrs.get("Internal"):
        raise BuildNetworkError(
            f"the Docker network {name} exists but is not internal: remove it "
            f"(docker network rm {name}) and Spaceport makes it again"
        )
    return network


def _keep_host_firewall(mode: str) -> None:
    """Install the host rules, or ("external") leave them to whoever runs the Engine."""
    global _external_firewall_noted
    if mode == "manage":
        _install_host_firewall()
    elif mode == "external":
        if not _external_firewall_noted:
            _external_firewall_noted = True
            logger.info(
                "build_host_firewall=external: the Engine's host must keep builds off its "
                "own ports (INPUT rules for %s); this worker installs no rule",
                BUILD_BRIDGE,
            )
    else:
        raise BuildNetworkError(
            f"build_host_firewall is {mode!r}: it must be 'manage' or 'external'"
        )


def _install_host_firewall() -> None:
    iptables = shutil.which("iptables")
    if iptables is None:
        raise BuildNetworkError(
            "iptables not found: without it builds could reach services on the host"
        )
    for rule in reversed(host_firewall_rules()):
        present = subprocess.run([iptables, "-C", "INPUT", *rule], capture_output=True)
        if present.returncode != 0:
            subprocess.run([iptables, "-I", "INPUT", "1", *rule], check=True, capture_output=True)


def proxy_image_tag(image_prefix: str, base_image: str) -> str:
    digest = hashlib.sha256(PROXY_SOURCE.read_bytes() + base_image.encode()).hexdigest()
    return f"{image_prefix}/build-proxy:{digest[:16]}"


def _ensure_proxy_image(client: docker.DockerClient, image_prefix: str, base_image: str) -> str:
    tag = proxy_image_tag(image_prefix, base_image)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    dockerfile = (
        f"FROM {base_image}\n"
        "COPY build_proxy_server.py /opt/spaceport/build_proxy_server.py\n"
        "USER 65534:65534\n"
        'CMD ["python3", "/opt/spaceport/build_proxy_server.py"]\n'
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (
            ("Dockerfile", dockerfile.encode()),
            ("build_proxy_server.py", PROXY_SOURCE.read_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    # No RUN step: building this image needs no network.
    for chunk in client.api.build(
        fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True
    ):
        if "error" in chunk:
            raise BuildNetworkError(f"cannot build the build proxy's image: {chunk['error']}")
    return tag


def _config_digest(image: str, env: dict[str, str]) -> str:
    material = image + "\0" + "\0".join(f"{k}={v}" for k, v in sorted(env.items()))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def proxy_container_name(instance: str) -> str:
    return f"{instance}-build-proxy"


def _ensure_proxy(  # type: ignore[no-untyped-def]
    client: docker.DockerClient, settings: _Settings, instance: str, image: str, network, log
) -> Container:
    env = proxy_env(settings)
    digest = _config_digest(image, env)
    name = proxy_container_name(instance)
    try:
        container = client.containers.get(name)
        attached = network.name in container.attrs["NetworkSettings"]["Networks"]
        if (
            container.labels.get(LABEL_CONFIG) == digest
            and container.status == "running"
            and attached
        ):
            return container
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    log(f"starting the build proxy {name} (allowed hosts: {env['SPACEPORT_PROXY_ALLOW']})")
    try:
        container = client.containers.run(
            image,
            name=name,
            detach=True,
            environment=env,
            network="bridge",  # its way out; the build network is attached below
            user="65534:65534",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            mem_limit="256m",
            pids_limit=256,
            restart_policy={"Name": "unless-stopped"},
            # LABEL_INSTANCE: removed with the installation's other containers; it has no
            # revision label, so the controller never takes it for a Space.
            labels={LABEL_ROLE: "proxy", LABEL_INSTANCE: instance, LABEL_CONFIG: digest},
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
        )
        network.connect(container)
    except docker.errors.APIError as exc:
        raise BuildNetworkError(f"cannot start the build proxy: {exc}") from exc
    _wait_listening(container)
    container.reload()
    return container


def _wait_listening(container: Container, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if b"listening on" in container.logs():
            return
        container.reload()
        if container.status not in ("created", "running"):
            break
        time.sleep(0.2)
    tail = container.logs(tail=5).decode(errors="replace").strip()
    raise BuildNetworkError(f"the build proxy did not start: {tail or container.status}")


def _address_on(container: Container, network: str) -> str:
    address = container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
    if not address:
        raise BuildNetworkError(f"the build proxy has no address on {network}")
    return str(address)
