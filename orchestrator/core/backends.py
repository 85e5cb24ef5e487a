"""The one place that picks where Spaces run: SPACEPORT_BACKEND, docker or kubernetes.

The controller, the API and the gateway speak only the `sandbox.backend.Backend` interface;
this module is the only one outside `sandbox/` that names a backend (and its libraries).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.core.installation import instance_name
from orchestrator.core.settings import Settings, get_settings
from sandbox.admission import Policy
from sandbox.backend import Backend, SpaceFiles

_shared: Backend | None = None
_shared_lock = threading.Lock()


def make_backend(settings: Settings | None = None) -> Backend:
    """A new backend of the configured kind (the controller's: it calls `prepare`, `watch`
    and `close` itself)."""
    settings = settings or get_settings()
    if settings.backend == "kubernetes":
        return _kubernetes(settings)
    from sandbox.docker_backend import DockerBackend
    from sandbox.gpus import Inventory

    return DockerBackend(
        instance_name(),
        egress_allow=settings.spaces_egress_allow,
        probe_concurrency=settings.readiness_probe_concurrency,
        registry=settings.registry,
        registry_username=settings.registry_username,
        registry_password=settings.registry_password.get_secret_value(),
        gpu_inventory=Inventory(settings.gpu_inventory_command),
        admission=admission_policy(settings),
    )


def admission_policy(settings: Settings) -> Policy:
    """The operator's admission settings: the controller's for CPU tiers, and the Docker
    backend's bound on a GPU tier's room by CPU and memory."""
    return Policy(
        reserve_cpus=settings.platform_reserve_cpus,
        reserve_memory_gib=settings.platform_reserve_memory_gib,
        cpu_allocation_ratio=settings.cpu_allocation_ratio,
        spaces_cpus=settings.spaces_cpus,
        spaces_memory_gib=settings.spaces_memory_gib,
        count_other_installations=settings.admission_counts_other_installations,
    )


def reading_backend() -> Backend:
    """A backend to read instances and logs with (the API's log streams). Docker: a new
    client per call, as cheap as it always was. Kubernetes: one per process, whose
    informers' caches answer every request after the first (no list per request)."""
    settings = get_settings()
    if settings.backend != "kubernetes":
        from sandbox.docker_backend import DockerBackend

        return DockerBackend(instance_name())
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _kubernetes(settings, reader=True)
        return _shared


def _kubernetes(settings: Settings, reader: bool = False) -> Backend:
    from sandbox.kubernetes.backend import KubernetesBackend, api_client_from
    from sandbox.kubernetes.objects import ObjectSettings, RegistryCredentials

    password = settings.registry_password.get_secret_value()
    credentials = None
    if settings.registry and (settings.registry_username or password):
        credentials = RegistryCredentials(
            registry=settings.registry.split("/", 1)[0],
            username=settings.registry_username,
            password=password,
        )
    objects = ObjectSettings(
        namespace=settings.kube_namespace,
        installation=instance_name(),
        gateway_labels=settings.kube_gateway_labels,
        blocked_cidrs=tuple(settings.kube_blocked_cidrs),
        gateway_namespace=settings.kube_gateway_namespace or None,
        spaces_domain=settings.spaces_domain,
        ingress_class=settings.kube_ingress_class or None,
        ingress_service=settings.kube_ingress_service or None,
        ingress_service_port=settings.kube_ingress_service_port,
        image_pull_secret=settings.kube_image_pull_secret if credentials else None,
        bucket_size_gib=settings.bucket_size_gib,
        export_image=settings.kube_export_image or None,
        export_port=settings.kube_export_port,
        export_max_bytes=settings.max_repo_bytes,
        export_max_files=settings.max_tree_entries,
    )
    return KubernetesBackend(
        api_client_from(settings.kubeconfig),
        objects,
        pull_credentials=credentials,
        reader=reader,
        files_url=files_url_signer(settings),
    )


def files_url_signer(settings: Settings) -> Callable[[SpaceFiles, str], str] | None:
    """How the Kubernetes backend signs a `space` volume's URL (None without
    SPACEPORT_KUBE_EXPORT_URL): the platform's base URL as pods reach it."""
    from orchestrator.volumes import exports

    base, seconds = settings.kube_export_url, settings.kube_export_url_seconds
    if not base:
        return None
    return lambda files, mounted_by: exports.signed_url(base, files, mounted_by, seconds)
