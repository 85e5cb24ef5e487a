"""Spaceport's settings and a Space's README config, mapped onto what the builder takes
(builder/spec.py): the builder imports nothing from the control plane."""

from __future__ import annotations

from builder.spec import BuildOptions, BuildSpec
from orchestrator.core.installation import installation_id
from orchestrator.core.settings import Settings, get_settings
from orchestrator.spaces.config import SpaceConfig


def build_spec(config: SpaceConfig) -> BuildSpec:
    return BuildSpec(
        sdk=config.sdk,
        python_version=config.python_version,
        sdk_version=config.sdk_version,
        app_file=config.app_file,
        app_port=config.app_port,
        app_build_command=config.app_build_command if config.sdk == "static" else None,
    )


def build_options(settings: Settings | None = None, instance: str | None = None) -> BuildOptions:
    settings = settings or get_settings()
    return BuildOptions(
        home=settings.home,
        instance=instance or settings.instance or installation_id(settings.home),
        image_prefix=settings.image_prefix,
        base_image=settings.base_image,
        debian_mirror=settings.debian_mirror,
        default_gradio_version=settings.default_gradio_version,
        build_memory_mb=settings.build_memory_mb,
        build_cpus=settings.build_cpus,
        build_pids_limit=settings.build_pids_limit,
        build_timeout_seconds=settings.build_timeout_seconds,
        buildkit_dir=settings.buildkit_dir,
        registry_mirror=settings.registry_mirror,
        registry=settings.registry,
        registry_username=settings.registry_username,
        registry_password=settings.registry_password.get_secret_value(),
        build_egress_allow=list(settings.build_egress_allow),
        build_blocked_networks=list(settings.build_blocked_networks),
        build_host_firewall=settings.build_host_firewall,
        npm_registry=settings.npm_registry,
        static_build_image=settings.static_build_image,
    )
