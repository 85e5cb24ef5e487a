"""The Kubernetes objects of one Space, as pure functions of its Revision.

Nothing here calls the API or reads settings: everything comes in through parameters, so
each object is unit-tested whole without a cluster (tests/unit/test_kube_objects.py) and
validated by a real apiserver's dry run (tests/test_kube_objects_dry_run.py). Every function
returns `kubernetes.client` models; `ApiClient().sanitize_for_serialization(obj)` is the
JSON sent.

* `ObjectSettings`: what is the same for every Space of an installation (namespace,
  installation id, gateway pods, blocked networks, ingress class, pull secret).
* `space_names(uid)` -> `SpaceNames`: the objects' names (`space-<uid>`, the env Secret
  `space-<uid>-env`); `space_host` the Ingress host; `service_url` the gateway's address.
* `space_labels`, `pod_labels`, `space_annotations`; `installation_selector` and
  `space_selector`, the label selectors the backend lists by.
* `make_deployment(revision, settings, replicas=1)`: 1 replica, 0 while sleeping/paused.
* `make_service`, `make_ingress` (None without an ingress class), `make_network_policy`,
  `make_env_secret`: the rest of a Space; `make_files_secret` the signed URLs its `space`
  volumes' init containers fetch another Space's files with.
* `with_owner(obj, deployment_name, deployment_uid)`: a copy owned by the Space's
  Deployment, so deleting the Deployment deletes everything of the Space (the garbage
  collector does it).
* `RegistryCredentials` and `make_pull_secret`: the `kubernetes.io/dockerconfigjson`
  Secret Spaces pull their images with.

Owner's secrets (a Space's environment) are only ever in the env Secret, which the pod reads
with `envFrom`: a Deployment never carries a value literally (`kubectl get deploy -o yaml`
and every Deployment watcher would show it).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from kubernetes import client

from sandbox.backend import LABEL_INSTANCE, Revision, VolumeMount
from sandbox.hardware import GPU_RESOURCE, HardwareTier
from sandbox.security import SPACE_UID

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "spaceport"
LABEL_NAME = "app.kubernetes.io/name"
NAME = "space"
LABEL_INSTALLATION = "spaceport.dev/installation"
LABEL_SPACE_ID = "spaceport.dev/space-id"  # the Space's uid: never reused, unlike its row id
LABEL_REVISION = "spaceport.dev/revision"  # Revision.key: changes whenever a new pod is due
LABEL_HARDWARE = "spaceport.dev/hardware"  # the tier's name
ANNOTATION_SPACE = "spaceport.dev/space"  # owner/name (a "/" is not allowed in label values)
ANNOTATION_SHA = "spaceport.dev/sha"
# The label Kubernetes (1.21+) puts on every namespace: how a NetworkPolicy names one.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

CONTAINER = "app"
PORT_NAME = "http"
SERVICE_PORT = 80  # the Service's port; the app's own port is its target
REVISION_HISTORY = 2  # old ReplicaSets kept: enough to see the last rollout, few to list
# Apps are stopped, not drained: the Docker backend gives them 10 s too.
TERMINATION_GRACE_SECONDS = 10
READINESS_PERIOD_SECONDS = 2

PULL_SECRET_TYPE = "kubernetes.io/dockerconfigjson"
# The cloud metadata service: blocked even if the configured networks forgot it (it hands
# out the node's cloud credentials).
METADATA_CIDR = "169.254.169.254/32"

# DNS-1123 label: what a Service, and so every object of a Space, may be called.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectSettings:
    """What every Space's objects share in one installation (the backend fills it from
    orchestrator settings; nothing here reads them).

    `blocked_cidrs`: networks a Space may never reach (pod and service networks, nodes,
    the control plane, private ranges, the metadata address). IPv4 Spaces may reach the
    internet minus these; IPv6 is allowed (`::/0` minus the IPv6 entries) only when an
    IPv6 entry is given, since an installation that lists none has not said which of its
    IPv6 networks to keep Spaces from.

    `ingress_class`: with it, each Space gets an Ingress for its host, routed to
    `ingress_service` (a Service in `namespace`, the gateway's or an ExternalName to it):
    never to the Space's own Service, since the gateway is what checks a private Space's
    visitors and wakes a sleeping one.
    """

    namespace: str
    installation: str
    gateway_labels: Mapping[str, str]
    blocked_cidrs: tuple[str, ...]
    gateway_namespace: str | None = None  # None: `namespace`
    spaces_domain: str = ""
    ingress_class: str | None = None
    ingress_service: str | None = None
    ingress_service_port: int = 80
    image_pull_secret: str | None = None
    dns_namespace: str = "kube-system"
    dns_labels: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({"k8s-app": "kube-dns"})
    )
    # A `space` volume's files: the init container's image (Spaceport's own; None: such a
    # revision can't run here), the gateway pods' port it fetches them from, and the most
    # files and bytes it unpacks (and at most the tier's disk, which holds them).
    export_image: str | None = None
    export_port: int = 8000
    export_max_bytes: int = 20 << 30
    export_max_files: int = 100_000
    # A bucket's claim asks for this much storage when it is made (SPACEPORT_BUCKET_SIZE_GIB).
    bucket_size_gib: float = 10.0

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if not self.installation or not _LABEL_VALUE.match(self.installation):
            raise ValueError(f"installation id {self.installation!r} is not a label value")
        if not self.gateway_labels:
            # An empty selector is every pod of the namespace: Spaces would reach each other.
            raise ValueError("gateway_labels must name the gateway pods (empty selects all)")
        if self.ingress_class and not self.ingress_service:
            raise ValueError("an ingress class needs ingress_service (the gateway's Service)")
        # Read-only copies: a frozen settings object whose dicts could change under it is not.
        object.__setattr__(
            self, "gateway_labels", types.MappingProxyType(dict(self.gateway_labels))
        )
        object.__setattr__(self, "dns_labels", types.MappingProxyType(dict(self.dns_labels)))
        networks = tuple(str(ipaddress.ip_network(c, strict=False)) for c in self.blocked_cidrs)
        object.__setattr__(self, "blocked_cidrs", networks)

    @property
    def gateway_namespace_name(self) -> str:
        return self.gateway_namespace or self.namespace


@dataclass(frozen=True)
class SpaceNames:
    """The names of one Space's objects (all DNS-1123 labels)."""

    deployment: str
    service: str
    ingress: str
    network_policy: str
    env_secret: str
    files_secret: str  # the signed URLs of its `space` volumes' files (init containers')


def space_names(space_uid: str) -> SpaceNames:
    """Names from the Space's uid (24 hex characters, never reused): a new Space never takes
    a deleted one's objects. Raises ValueError for a uid that cannot name an object."""
    base = f"space-{space_uid}"
    env = f"{base}-env"
    files = f"{base}-files"
    if not _DNS_LABEL.match(space_uid) or len(files) > 63:
        raise ValueError(f"Space uid {space_uid!r} cannot name a Kubernetes object")
    return SpaceNames(
        deployment=base,
        service=base,
        ingress=base,
        network_policy=base,
        env_secret=env,
        files_secret=files,
    )


def space_host(subdomain: str, spaces_domain: str) -> str:
    """The Ingress host of a Space: `<subdomain>.<spaces domain>`, without the domain's port
    (settings.spaces_domain may be "localhost:8000"; an Ingress host has none)."""
    domain = spaces_domain.strip().rstrip(".").lower()
    domain = re.sub(r":[0-9]+$", "", domain)
    host = f"{subdomain.lower()}.{domain}"
    if len(host) > 253 or not _DNS_SUBDOMAIN.match(host):
        raise ValueError(f"{host!r} is not a host name an Ingress accepts")
    return host


def service_url(space_uid: str, settings: ObjectSettings) -> str:
    """Where the gateway reaches the Space: its Service's cluster DNS name."""
    name = space_names(space_uid).service
    return f"http://{name}.{settings.namespace}.svc:{SERVICE_PORT}"


# -- Labels and selectors ------------------------------------------------------------


def space_labels(space_uid: str, settings: ObjectSettings) -> dict[str, str]:
    """On every object of the Space; also the Deployment's (immutable) pod selector and the
    Service's, so they never change once made."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: NAME,
        LABEL_INSTALLATION: settings.installation,
        LABEL_SPACE_ID: space_uid,
    }


def pod_labels(revision: Revision, settings: ObjectSettings) -> dict[str, str]:
    """The pod template's: the Space's labels and what this pod runs."""
    return {
        **space_labels(revision.space_id, settings),
        LABEL_REVISION: revision.key,
        LABEL_HARDWARE: revision.hardware.name,
    }


def space_annotations(revision: Revision) -> dict[str, str]:
    return {ANNOTATION_SPACE: revision.space, ANNOTATION_SHA: revision.sha}


def installation_selector(installation: str) -> str:
    """Every Space object of an installation (not its pull Secret: that is no Space's)."""
    return (
        f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_NAME}={NAME},{LABEL_INSTALLATION}={installation}"
    )


def space_selector(installation: str, space_uid: str) -> str:
    """Every object of one Space."""
    return f"{installation_selector(installation)},{LABEL_SPACE_ID}={space_uid}"


def _metadata(name: str, revision: Revision, settings: ObjectSettings) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(
        name=name,
        namespace=settings.namespace,
        labels=space_labels(revision.space_id, settings),
        annotations=space_annotations(revision),
    )


# -- Resources -------------------------------------------------------------------------


def cpu_quantity(cpus: float) -> str:
    """2 -> "2", 0.5 -> "500m" (Kubernetes' own spelling, so a read-back compares equal)."""
    if float(cpus).is_integer():
        return str(int(cpus))
    return f"{round(cpus * 1000)}m"


def gib_quantity(gib: float) -> str:
    """16 -> "16Gi", 0.5 -> "512Mi", else bytes."""
    if float(gib).is_integer():
        return f"{int(gib)}Gi"
    mib = gib * 1024
    if float(mib).is_integer():
        return f"{int(mib)}Mi"
    return str(round(gib * 2**30))


def tier_resources(tier: HardwareTier) -> client.V1ResourceRequirements:
    """Requests equal to limits: a pod is placed only where all it may use is free, so the
    scheduler's picture is the truth (a node is never overcommitted by Spaces that later use
    their limits, and room per tier counted from requests is what really fits). GPUs cannot
    be overcommitted anyway: Kubernetes requires requests == limits for them."""
    amounts = {
        "cpu": cpu_quantity(tier.cpu),
        "memory": gib_quantity(tier.memory_gib),
        # The tier's disk (Hugging Face's "ephemeral disk"): the kubelet evicts a pod
        # writing more. Requested too, as the apiserver would default it from the limit.
        "ephemeral-storage": gib_quantity(tier.disk_gib),
    }
    if tier.gpu_count:
        amounts[GPU_RESOURCE] = str(tier.gpu_count)
    return client.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


# -- The Space's objects ---------------------------------------------------------------


def make_deployment(
    revision: Revision, settings: ObjectSettings, replicas: int = 1
) -> client.V1Deployment:
    """The Space's Deployment: `replicas` 1 running, 0 while sleeping or paused (the
    Deployment and its Service stay, for the wake)."""
    names = space_names(revision.space_id)
    tier = revision.hardware
    if tier.gpu_count:
        # Recreate: the old pod goes before the new one is made. A rolling update would
        # start the new pod first, and it would wait for a GPU its predecessor holds (on a
        # full pool, forever).
        strategy = client.V1DeploymentStrategy(type="Recreate")
    else:
        # The new pod starts and becomes Ready before the old one goes: no gap in service.
        strategy = client.V1DeploymentStrategy(
            type="RollingUpdate",
            rolling_update=client.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
        )
    container = client.V1Container(
        name=CONTAINER,
        image=revision.image,
        ports=[
            client.V1ContainerPort(name=PORT_NAME, container_port=revision.port, protocol="TCP")
        ],
        # The environment holds the owner's secrets: from the Secret, never literally.
        env_from=[
            client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=names.env_secret))
        ],
        resources=tier_resources(tier),
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            privileged=False,
        ),
        # A TCP connect, not an HTTP GET: an app whose "/" answers 404 (an API-only Space)
        # is up all the same, and the gateway, not the kubelet, judges what it answers.
        readiness_probe=client.V1Probe(
            tcp_socket=client.V1TCPSocketAction(port=PORT_NAME),
            period_seconds=READINESS_PERIOD_SECONDS,
            timeout_seconds=1,
            failure_threshold=3,
        ),
    )
    volumes, mounts = _space_volumes(revision)
    container.volume_mounts = mounts or None
    pod = client.V1PodSpec(
        init_containers=_files_containers(revision, settings) or None,
        containers=[container],
        volumes=volumes or None,
        # Spaces have no business with the Kubernetes API: no token to steal.
        automount_service_account_token=False,
        # No *_SERVICE_HOST variables naming the namespace's other Services.
        enable_service_links=False,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=SPACE_UID,
            run_as_group=SPACE_UID,
            fs_group=SPACE_UID,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        termination_grace_period_seconds=TERMINATION_GRACE_SECONDS,
        node_selector=tier.node_selector_dict or None,
        tolerations=[
            client.V1Toleration(
                key=t.key,
                operator=t.operator,
                value=t.value,
                effect=t.effect,
                toleration_seconds=t.toleration_seconds,
            )
            for t in tier.tolerations
        ]
        or None,
        image_pull_secrets=(
            [client.V1LocalObjectReference(name=settings.image_pull_secret)]
            if settings.image_pull_secret
            else None
        ),
    )
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_metadata(names.deployment, revision, settings),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=space_labels(revision.space_id, settings)),
            strategy=strategy,
            revision_history_limit=REVISION_HISTORY,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(
                    labels=pod_labels(revision, settings),
                    annotations=space_annotations(revision),
                ),
                spec=pod,
            ),
        ),
    )


def volume_claim_name(volume: str) -> str:
    """A bucket's PersistentVolumeClaim: named by the bucket alone, so every revision of
    every Space that mounts it (after a restart, a rebuild, a move) finds the same data."""
    return f"vol-{volume}"[:63].rstrip("-")


def make_volume_claim(
    volume: str, settings: ObjectSettings, size_gib: float, storage_class: str | None = None
) -> client.V1PersistentVolumeClaim:
    """A bucket's claim: ReadWriteOnce (one Space's pod at a time), not owned by a
    Deployment, so it outlives the Space that made it; the installation's label finds it."""
    return client.V1PersistentVolumeClaim(
        api_version="v1",
        kind="PersistentVolumeClaim",
        metadata=client.V1ObjectMeta(
            name=volume_claim_name(volume),
            namespace=settings.namespace,
            labels={LABEL_INSTANCE: settings.installation},
        ),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            storage_class_name=storage_class,
            resources=client.V1VolumeResourceRequirements(
                requests={"storage": gib_quantity(size_gib)}
            ),
        ),
    )


def space_files_mounts(revision: Revision) -> list[tuple[int, VolumeMount]]:
    """The revision's `space` volumes (another Space's files), with their index among its
    mounts (`volume-<index>` names the pod's volume, and the key of its URL)."""
    return [(i, m) for i, m in enumerate(revision.mounts) if m.files is not None]


def files_url_key(index: int) -> str:
    """The key of mount `index`'s signed URL in the Space's files Secret."""
    return f"volume-{index}"


def _space_volumes(
    revision: Revision,
) -> tuple[list[client.V1Volume], list[client.V1VolumeMount]]:
    """The pod's volumes for the revision's mounts. A bucket: its claim (the pod's fs_group
    makes it writable for uid 1000). Another Space's files (a `space` volume): an emptyDir
    its init container fills (`_files_containers`), mounted read-only, at the volume's
    folder inside it (subPath) when it names one: the export on the control plane's disk
    is out of a pod's reach."""
    volumes: list[client.V1Volume] = []
    mounts: list[client.V1VolumeMount] = []
    for index, mount in enumerate(revision.mounts):
        name = f"volume-{index}"
        if mount.files is not None:
            volumes.append(client.V1Volume(name=name, empty_dir=client.V1EmptyDirVolumeSource()))
            mounts.append(
                client.V1VolumeMount(
                    name=name,
                    mount_path=mount.mount_path,
                    read_only=True,
                    sub_path=mount.files.path or None,
                )
            )
            continue
        volumes.append(
            client.V1Volume(
                name=name,
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=volume_claim_name(mount.name),
                    read_only=mount.read_only or mount.over_quota or None,
                ),
            )
        )
        mounts.append(
            client.V1VolumeMount(
                name=name,
                mount_path=mount.mount_path,
                read_only=mount.read_only or mount.over_quota or None,
            )
        )
    return volumes, mounts


FILES_DIR = "/files"  # where an init container sees its emptyDir
FILES_URL_ENV = "SPACEPORT_EXPORT_URL"  # sandbox/kubernetes/fetch_export.py reads it


def _files_containers(revision: Revision, settings: ObjectSettings) -> list[client.V1Container]:
    """One init container per `space` volume: Spaceport's own image fetches the signed tar
    of the files (the URL from the files Secret: never in the Deployment, whose watchers
    and `kubectl get -o yaml` would show it) into the volume's emptyDir before the app
    starts. It runs as the app does (uid 1000, no capability, read-only root), with the
    tier's CPU and memory but no GPU, so the pod asks the scheduler for no more than its
    app does."""
    found = space_files_mounts(revision)
    if not found:
        return []
    if not settings.export_image:
        raise ValueError("a 'space' volume needs export_image (SPACEPORT_KUBE_EXPORT_IMAGE)")
    names = space_names(revision.space_id)
    tier = revision.hardware
    amounts = {
        "cpu": cpu_quantity(tier.cpu),
        "memory": gib_quantity(tier.memory_gib),
        "ephemeral-storage": gib_quantity(tier.disk_gib),
    }
    # The files land on the pod's disk: never more than the tier has.
    max_bytes = min(settings.export_max_bytes, int(tier.disk_gib * 2**30))
    containers = []
    for index, _mount in found:
        containers.append(
            client.V1Container(
                name=f"files-{index}",
                image=settings.export_image,
                command=["python", "-m", "sandbox.kubernetes.fetch_export"],
                args=[
                    FILES_DIR,
                    f"--max-bytes={max_bytes}",
                    f"--max-files={settings.export_max_files}",
                ],
                env=[
                    client.V1EnvVar(
                        name=FILES_URL_ENV,
                        value_from=client.V1EnvVarSource(
                            secret_key_ref=client.V1SecretKeySelector(
                                name=names.files_secret, key=files_url_key(index)
                            )
                        ),
                    )
                ],
                resources=client.V1ResourceRequirements(
                    requests=dict(amounts), limits=dict(amounts)
                ),
                security_context=client.V1SecurityContext(
                    allow_privilege_escalation=False,
                    capabilities=client.V1Capabilities(drop=["ALL"]),
                    privileged=False,
                    read_only_root_filesystem=True,
                ),
                volume_mounts=[client.V1VolumeMount(name=f"volume-{index}", mount_path=FILES_DIR)],
            )
        )
    return containers


def make_files_secret(
    revision: Revision, settings: ObjectSettings, urls: Mapping[int, str]
) -> client.V1Secret:
    """The signed URL of each `space` volume's files (`urls` by mount index), read by its
    init container alone (`secretKeyRef`; the app's `envFrom` reads only the env Secret).
    A URL opens those files only, until its expiry; kept out of the Deployment so a new
    one (each start signs one) never rolls the pods."""
    names = space_names(revision.space_id)
    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=_metadata(names.files_secret, revision, settings),
        data={files_url_key(index): _b64(url) for index, url in sorted(urls.items())},
    )


def make_service(revision: Revision, settings: ObjectSettings) -> client.V1Service:
    """A ClusterIP Service in front of the Space's pod: the gateway's stable address for it
    (`service_url`), whichever pod of a rollout is serving."""
    names = space_names(revision.space_id)
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_metadata(names.service, revision, settings),
        spec=client.V1ServiceSpec(
            type="ClusterIP",
            selector=space_labels(revision.space_id, settings),
            ports=[
                client.V1ServicePort(
                    name=PORT_NAME, port=SERVICE_PORT, target_port=PORT_NAME, protocol="TCP"
                )
            ],
        ),
    )


def make_ingress(
    revision: Revision, settings: ObjectSettings, host: str
) -> client.V1Ingress | None:
    """The Space's own Ingress for `host` (`space_host(subdomain, domain)`), routed to the
    gateway's Service; None when the installation has no ingress class (the gateway's
    wildcard Ingress then serves every Space host)."""
    if not settings.ingress_class or not settings.ingress_service:
        return None
    names = space_names(revision.space_id)
    backend = client.V1IngressBackend(
        service=client.V1IngressServiceBackend(
            name=settings.ingress_service,
            port=client.V1ServiceBackendPort(number=settings.ingress_service_port),
        )
    )
    return client.V1Ingress(
        api_version="networking.k8s.io/v1",
        kind="Ingress",
        metadata=_metadata(names.ingress, revision, settings),
        spec=client.V1IngressSpec(
            ingress_class_name=settings.ingress_class,
            rules=[
                client.V1IngressRule(
                    host=host,
                    http=client.V1HTTPIngressRuleValue(
                        paths=[
                            client.V1HTTPIngressPath(path="/", path_type="Prefix", backend=backend)
                        ]
                    ),
                )
            ],
        ),
    )


def make_network_policy(revision: Revision, settings: ObjectSettings) -> client.V1NetworkPolicy:
    """Connections in only from the gateway pods, to the app's port; out only to DNS and
    the internet minus `settings.blocked_cidrs` (which hold the cluster's pod and service
    networks): a Space reaches neither the control plane nor another Space. Replies to the
    gateway pass (policies are stateful)."""
    names = space_names(revision.space_id)
    gateway = client.V1NetworkPolicyPeer(
        namespace_selector=client.V1LabelSelector(
            match_labels={NAMESPACE_NAME_LABEL: settings.gateway_namespace_name}
        ),
        pod_selector=client.V1LabelSelector(match_labels=dict(settings.gateway_labels)),
    )
    dns = client.V1NetworkPolicyEgressRule(
        to=[
            client.V1NetworkPolicyPeer(
                namespace_selector=client.V1LabelSelector(
                    match_labels={NAMESPACE_NAME_LABEL: settings.dns_namespace}
                ),
                pod_selector=client.V1LabelSelector(match_labels=dict(settings.dns_labels)),
            )
        ],
        ports=[
            client.V1NetworkPolicyPort(port=53, protocol="UDP"),
            client.V1NetworkPolicyPort(port=53, protocol="TCP"),
        ],
    )
    internet = client.V1NetworkPolicyEgressRule(to=internet_blocks(settings.blocked_cidrs))
    egress = [dns, internet]
    if space_files_mounts(revision):
        # Its init containers fetch the files from the gateway pods: that port of those pods,
        # nothing else of the cluster (only a pod with a `space` volume gets it).
        egress.insert(
            1,
            client.V1NetworkPolicyEgressRule(
                to=[copy.deepcopy(gateway)],
                ports=[client.V1NetworkPolicyPort(port=settings.export_port, protocol="TCP")],
            ),
        )
    return client.V1NetworkPolicy(
        api_version="networking.k8s.io/v1",
        kind="NetworkPolicy",
        metadata=_metadata(names.network_policy, revision, settings),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(
                match_labels=space_labels(revision.space_id, settings)
            ),
            policy_types=["Ingress", "Egress"],
            ingress=[
                client.V1NetworkPolicyIngressRule(
                    _from=[gateway],
                    ports=[client.V1NetworkPolicyPort(port=revision.port, protocol="TCP")],
                )
            ],
            egress=egress,
        ),
    )


def internet_blocks(blocked_cidrs: tuple[str, ...]) -> list[client.V1NetworkPolicyPeer]:
    """`0.0.0.0/0` less the blocked IPv4 networks (and the metadata address, always), and
    `::/0` less the blocked IPv6 ones when any is given (ObjectSettings says why). A blocked
    `0.0.0.0/0` or `::/0` leaves that family out: no internet at all."""
    networks = [ipaddress.ip_network(c, strict=False) for c in blocked_cidrs]
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    metadata = ipaddress.IPv4Network(METADATA_CIDR)
    if not any(metadata.subnet_of(n) for n in v4):
        v4.append(metadata)
    peers = []
    for everything, blocked in (("0.0.0.0/0", v4), ("::/0", v6)):
        if not blocked or any(n.prefixlen == 0 for n in blocked):
            continue
        # Collapsed, so a network inside another is not listed twice; sorted, so the object
        # is the same whatever order the settings give.
        excepted = [str(n) for n in ipaddress.collapse_addresses(blocked)]  # type: ignore[type-var]
        peers.append(
            client.V1NetworkPolicyPeer(ip_block=client.V1IPBlock(cidr=everything, _except=excepted))
        )
    return peers


def make_env_secret(revision: Revision, settings: ObjectSettings) -> client.V1Secret:
    """The Space's environment (variables and the owner's secrets), read by its pod with
    `envFrom`. `data` (base64), not `stringData`, so what is read back compares equal.
    Raises ValueError naming (only) a variable whose name a Secret cannot hold."""
    names = space_names(revision.space_id)
    for key in revision.env:
        if not _SECRET_KEY.match(key) or len(key) > 253:
            raise ValueError(
                f"variable {key!r} cannot run on Kubernetes: names may hold only letters, "
                "digits, '-', '_' and '.'"
            )
    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=_metadata(names.env_secret, revision, settings),
        data={key: _b64(value) for key, value in sorted(revision.env.items())},
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


# -- Ownership -------------------------------------------------------------------------


def owner_reference(deployment_name: str, deployment_uid: str) -> client.V1OwnerReference:
    """A reference to the Space's Deployment (its uid is the server's, known once it
    exists). Not `blockOwnerDeletion`: that needs rights on the Deployment's finalizers,
    and nothing waits on the dependents' deletion."""
    return client.V1OwnerReference(
        api_version="apps/v1",
        kind="Deployment",
        name=deployment_name,
        uid=deployment_uid,
        controller=True,
    )


def with_owner(obj: T, deployment_name: str, deployment_uid: str) -> T:
    """A copy of `obj` (a Service, Ingress, NetworkPolicy or Secret of the Space) owned by
    its Deployment: deleting the Deployment deletes it too."""
    owned = copy.deepcopy(obj)
    metadata = owned.metadata  # type: ignore[attr-defined]
    metadata.owner_references = [owner_reference(deployment_name, deployment_uid)]
    return owned


# -- Pulling images ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login; the password is never in its repr (logs, tracebacks)."""

    registry: str  # host[:port], as in an image reference
    username: str
    password: str = field(repr=False)

    def docker_config_json(self) -> str:
        """A ~/.docker/config.json holding this login, as the kubelet reads it."""
        token = _b64(f"{self.username}:{self.password}")
        auth = {"username": self.username, "password": self.password, "auth": token}
        return json.dumps({"auths": {self.registry: auth}}, sort_keys=True)


def make_pull_secret(
    name: str, credentials: RegistryCredentials, settings: ObjectSettings
) -> client.V1Secret:
    """The installation's image pull Secret (`settings.image_pull_secret` names it in every
    pod). Labelled as the installation's but no Space's: `installation_selector` does not
    list it, so no Space's cleanup takes it."""
    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        type=PULL_SECRET_TYPE,
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=settings.namespace,
            labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTALLATION: settings.installation},
        ),
        data={".dockerconfigjson": _b64(credentials.docker_config_json())},
    )
