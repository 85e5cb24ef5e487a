"""The security profile of a Space's container, as pure functions of a revision.

Like KubeSpawner's make_pod: no Docker calls here, so every setting is unit-tested, and the
Kubernetes backend can read the same profile when it turns it into a pod.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.backend import (
    LABEL_GPUS,
    LABEL_HARDWARE,
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_SHA,
    LABEL_SPACE,
    LABEL_SPACE_ID,
    Revision,
)

SPACE_UID = 1000
# A catalogue `docker.gpu_driver` that sends no device request: GPUs are counted and assigned,
# and the runtime (or a test's fake inventory) provides them.
NO_GPU_DRIVER = "none"
PIDS_LIMIT = 1024
# One bridge for every Space, with traffic between containers switched off (enable_icc),
# so a Space reaches neither another Space nor, through the host rules in
# docker_backend.py, the controller's own services.
SPACES_NETWORK = "spaceport-spaces"
SPACES_BRIDGE = "spaceport0"


def container_name(revision: Revision, instance: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", revision.space.lower().replace("/", "--"))
    return f"{instance}-{slug}-{revision.key[:12]}"


def container_spec(
    revision: Revision,
    instance: str,
    image_volumes: tuple[str, ...] | list[str] = (),
    gpus: Sequence[str] = (),
) -> dict[str, object]:
    """Keyword arguments for docker's `containers.run` (docker SDK) for this revision;
    `instance` names the Spaceport installation that owns it.

    `image_volumes` are the paths the image declares as VOLUME: the Engine would give each
    an anonymous volume on the host's disk, outside the writable layer and so outside the
    disk quota. They get a tmpfs instead, which counts against the tier's memory limit.
    """
    tier = revision.hardware
    spec: dict[str, object] = {
        "image": revision.image,
        "name": container_name(revision, instance),
        "detach": True,
        # The backend reads the app's port back from here when it adopts a container.
        "environment": {**revision.env, "SPACEPORT_APP_PORT": str(revision.port)},
        "labels": {
            LABEL_MANAGED: "true",
            LABEL_INSTANCE: instance,
            LABEL_SPACE: revision.space,
            LABEL_SPACE_ID: str(revision.space_id),
            LABEL_REVISION: revision.key,
            LABEL_SHA: revision.sha,
            LABEL_HARDWARE: tier.name,
        },
        "user": f"{SPACE_UID}:{SPACE_UID}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": PIDS_LIMIT,
        "nano_cpus": int(tier.cpu * 1_000_000_000),
        "mem_limit": f"{int(tier.memory_gib * 1024)}m",
        "network": SPACES_NETWORK,
        "init": True,  # reaps zombies and forwards signals to the app
        "restart_policy": {"Name": "no"},  # the reconciler decides what runs
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
    }
    if image_volumes:
        size_mb = int(min(tier.memory_gib, tier.disk_gib) * 1024)
        spec["tmpfs"] = {path: f"size={size_mb}m,mode=1777" for path in sorted(image_volumes)}
    if tier.gpu_count:
        request: dict[str, object] = {"Driver": tier.gpu_driver, "Capabilities": [["gpu"]]}
        if gpus:
            request["DeviceIDs"] = list(gpus)
            labels = spec["labels"]
            assert isinstance(labels, dict)
            labels[LABEL_GPUS] = ",".join(gpus)
        else:
            request["Count"] = tier.gpu_count
        if tier.gpu_driver != NO_GPU_DRIVER:
            spec["device_requests"] = [request]
    return spec


def network_options() -> dict[str, object]:
    return {
        "name": SPACES_NETWORK,
        "driver": "bridge",
        "options": {
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.name": SPACES_BRIDGE,
        },
        "labels": {LABEL_MANAGED: "true"},
    }


def host_firewall_rules() -> list[list[str]]:
    """iptables rules (INPUT chain, in order) that keep Spaces off the host's own ports:
    replies to connections the host opened (the gateway's) pass, everything else drops."""
    return [
        [
            "-i",
            SPACES_BRIDGE,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
        ["-i", SPACES_BRIDGE, "-j", "DROP"],
    ]


def spaces_door_rule(address: str, port: int, instance: str) -> list[str]:
    """The one way in to the host from Spaces (INPUT, above host_firewall_rules' DROP): the
    sign-in provider's door of one installation, its API port on the Spaces bridge's own
    address, where its server answers nothing but the provider's machine endpoints
    (orchestrator/oauth/spaces_door.py). Tagged with the installation, which removes it."""
    return [
        "-i",
        SPACES_BRIDGE,
        "-d",
        address,
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-m",
        "comment",
        "--comment",
        f"spaceport-door:{instance}"[:250],
        "-j",
        "ACCEPT",
    ]


# -- egress: what a Space may reach beyond the host -----------------------------------------
#
# Replies and the internet pass; metadata services, private networks (the LAN, a cloud VPC,
# other Docker networks, carrier-grade NAT) are refused unless the operator allows a range.
# The rules sit in their own chain, jumped to from DOCKER-USER (which Docker evaluates first
# in FORWARD and never rewrites), for traffic entering from the Spaces bridge only.

EGRESS_CHAIN = "SPACEPORT-EGRESS"
EGRESS_ALLOW_CHAIN = "SPACEPORT-EGRESS-ALLOW"
BLOCKED_V4 = ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
BLOCKED_V6 = ("fc00::/7", "fe80::/10")


@dataclass(frozen=True)
class EgressAllow:
    """One operator allow-list entry: a network, and optionally one port (TCP and UDP)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    def __str__(self) -> str:
        return f"{self.network}:{self.port}" if self.port else str(self.network)


def parse_egress_allow(entry: str) -> EgressAllow:
    """`10.0.5.0/24`, `10.0.5.7` (one address), `10.0.5.0/24:5432`, `fd00::/8:443` or
    `[fd00::7]:443`; raises ValueError saying what a valid entry looks like."""
    text = entry.strip()
    try:
        return EgressAllow(ipaddress.ip_network(text.strip("[]"), strict=False))
    except ValueError:
        pass
    head, _, port = text.rpartition(":")
    try:
        network = ipaddress.ip_network(head.strip("[]"), strict=False)
        number = int(port)
    except ValueError:
        number = 0
        network = None  # type: ignore[assignment]
    if network is None or not 0 < number < 65536:
        raise ValueError(
            f"egress allow entry {entry!r}: write a CIDR with an optional port, "
            "e.g. 10.0.5.0/24, 10.0.5.7:5432 or [fd00::7]:443"
        )
    return EgressAllow(network, number)


def _reject(version: int) -> list[str]:
    kind = "icmp-admin-prohibited" if version == 4 else "icmp6-adm-prohibited"
    return ["-j", "REJECT", "--reject-with", kind]


def egress_jump_rule() -> list[str]:
    """The DOCKER-USER rule that sends every packet from a Space through EGRESS_CHAIN."""
    return ["-i", SPACES_BRIDGE, "-j", EGRESS_CHAIN]


def egress_rules(
    version: int = 4, dns_servers: list[str] | tuple[str, ...] = ()
) -> list[list[str]]:
    """EGRESS_CHAIN's rules, in order, for iptables (4) or ip6tables (6).

    Replies first (conntrack ESTABLISHED: answers to the gateway's connections into the
    Space), then the operator's allow-list (EGRESS_ALLOW_CHAIN), then the resolvers Docker's
    embedded DNS forwards to (from the Space's own network namespace, so they cross this
    chain too; port 53 only), then the refused ranges. Anything else returns to Docker's
    rules, which let Spaces out to the internet.
    """
    blocked = BLOCKED_V4 if version == 4 else BLOCKED_V6
    rules = [
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-j", EGRESS_ALLOW_CHAIN],
    ]
    for server in dns_servers:
        address = ipaddress.ip_address(server)
        if address.version == version and not address.is_loopback:
            for proto in ("udp", "tcp"):
                rules.append(["-d", str(address), "-p", proto, "--dport", "53", "-j", "ACCEPT"])
    rules.extend(["-d", network, *_reject(version)] for network in blocked)
    rules.append(["-j", "RETURN"])
    return rules


def allow_comment(instance: str) -> str:
    return f"spaceport-allow:{instance}"[:250]


def egress_allow_rules(
    allow: list[EgressAllow] | tuple[EgressAllow, ...], instance: str, version: int = 4
) -> list[list[str]]:
    """EGRESS_ALLOW_CHAIN's rules of one installation. Every installation on the host shares
    the Spaces bridge and so this chain; each one's rules carry its name (a comment), so it
    adds and removes only its own."""
    comment = ["-m", "comment", "--comment", allow_comment(instance)]
    rules = []
    for entry in allow:
        if entry.network.version != version:
            continue
        if entry.port is None:
            rules.append(["-d", str(entry.network), *comment, "-j", "ACCEPT"])
            continue
        for proto in ("tcp", "udp"):
            rules.append(
                [
                    "-d",
                    str(entry.network),
                    "-p",
                    proto,
                    "--dport",
                    str(entry.port),
                    *comment,
                    "-j",
                    "ACCEPT",
                ]
            )
    return rules


def nameservers(resolv_conf: str) -> list[str]:
    """The nameserver addresses of a resolv.conf text."""
    servers = []
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(str(ipaddress.ip_address(fields[1].split("%")[0])))
            except ValueError:
                continue
    return servers
