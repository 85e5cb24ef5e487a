"""The security profile of a Space's container, as pure functions of a revision.

Like KubeSpawner's make_pod: no Docker calls here, so every setting is unit-tested, and the
Kubernetes backend can read the same profile when it turns it into a pod.
"""

from __future__ import annotations

import re

from sandbox.backend import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_REVISION,
    LABEL_SHA,
    LABEL_SPACE,
    LABEL_SPACE_ID,
    Revision,
)

SPACE_UID = 1000
PIDS_LIMIT = 1024
# One bridge for every Space, with traffic between containers switched off (enable_icc),
# so a Space reaches neither another Space nor, through the host rules in
# docker_backend.py, the controller's own services.
SPACES_NETWORK = "spaceport-spaces"
SPACES_BRIDGE = "spaceport0"


def container_name(revision: Revision, instance: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", revision.space.lower().replace("/", "--"))
    return f"{instance}-{slug}-{revision.key[:12]}"


def container_spec(revision: Revision, instance: str) -> dict[str, object]:
    """Keyword arguments for docker's `containers.run` (docker SDK) for this revision;
    `instance` names the Spaceport installation that owns it."""
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
    if tier.gpu_count:
        spec["device_requests"] = [
            {"Driver": "nvidia", "Count": tier.gpu_count, "Capabilities": [["gpu"]]}
        ]
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
