"""What the builder is told: the build's config and the installation's options, as plain data.

The builder knows nothing of the control plane (it imports nothing from `orchestrator/`,
tests/unit/test_layering.py checks): `orchestrator/builds/options.py` maps a Space's README
config and Spaceport's settings onto these, so the builder can be run, and tested, with
nothing but an Engine and a tar of the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class BuildSpec:
    """The README keys that decide how the image is made."""

    sdk: str  # gradio, docker, static (streamlit builds like gradio)
    python_version: str = "3.10"
    sdk_version: str | None = None
    app_file: str | None = None
    app_port: int = 7860
    app_build_command: str | None = None  # static Spaces: run in a Node.js build stage

    def key(self) -> dict[str, Any]:
        """The fields that change the built image; hashed into its tag."""
        return {
            "sdk": self.sdk,
            "sdk_version": self.sdk_version,
            "python_version": self.python_version,
            "app_file": self.app_file,
            "app_port": self.app_port,
            **({"app_build_command": self.app_build_command} if self.app_build_command else {}),
        }


@dataclass(frozen=True)
class BuildOptions:
    """The installation's choices for every build (Spaceport's settings of the same names)."""

    home: Path  # locks and scratch space (offline base images, the build network's lock)
    instance: str  # the installation's name, on its build cgroups and its build proxy
    image_prefix: str
    base_image: str  # "{python_version}" in it is replaced
    debian_mirror: str
    default_gradio_version: str
    build_memory_mb: int
    build_cpus: float
    build_pids_limit: int  # 0: no limit
    build_timeout_seconds: int
    build_egress_allow: list[str] = field(default_factory=list)
    build_blocked_networks: list[str] = field(default_factory=list)
    # "manage": the build network's host firewall rules are installed here (root on the
    # Engine's host); "external": the Engine's host keeps them (a Docker-in-Docker sidecar).
    build_host_firewall: Literal["manage", "external"] = "manage"
    buildkit_dir: str = ""  # buildkitd and buildctl; "": scripts/build_buildkit.sh's cache
    registry_mirror: str = ""  # host[:port] serving Docker Hub's images
    # Where built images are pushed (host[:port][/prefix]); "": they stay in the Engine.
    registry: str = ""
    registry_username: str = ""
    registry_password: str = field(default="", repr=False)  # never logged
    npm_registry: str = "https://registry.npmjs.org"
    static_build_image: str = "node:24"  # the build stage of a static app_build_command
