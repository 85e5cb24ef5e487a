"""The Kubernetes objects of a Space, compared whole (as KubeSpawner tests make_pod): what
is sent to the apiserver is exactly this, so a change to any field shows up here."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from typing import Any

import pytest
from kubernetes.client import ApiClient

from sandbox.backend import Revision, SpaceFiles, VolumeMount
from sandbox.hardware import get_tier, sized_tier
from sandbox.kubernetes.objects import (
    ObjectSettings,
    RegistryCredentials,
    cpu_quantity,
    gib_quantity,
    installation_selector,
    internet_blocks,
    make_deployment,
    make_env_secret,
    make_files_secret,
    make_ingress,
    make_network_policy,
    make_pull_secret,
    make_service,
    service_url,
    space_host,
    space_names,
    space_selector,
    with_owner,
)

UID = "0123456789abcdef01234567"
INSTALLATION = "spaceport-1a2b3c4d5e6f"
IMAGE = "registry.local:5000/0123456789abcdef01234567@sha256:" + "ab" * 32
SHA = "c0ffee" + "0" * 34
SECRET_VALUE = "hf_s3cret-value"

SETTINGS = ObjectSettings(
    namespace="spaces",
    installation=INSTALLATION,
    gateway_labels={"app.kubernetes.io/name": "spaceport", "app.kubernetes.io/component": "api"},
    gateway_namespace="spaceport",
    blocked_cidrs=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"),
    spaces_domain="spaces.example.org",
    ingress_class="nginx",
    ingress_service="spaceport-gateway",
    image_pull_secret="spaceport-pull",
)
PLAIN = ObjectSettings(
    namespace="spaces",
    installation=INSTALLATION,
    gateway_labels={"app": "gw"},
    blocked_cidrs=("10.0.0.0/8",),
)


def revision(hardware: str = "cpu-basic", **changes: Any) -> Revision:
    base = Revision(
        space_id=UID,
        space="alice/demo",
        sha=SHA,
        image=IMAGE,
        port=7860,
        hardware=sized_tier(hardware, {"cpu-basic": {"cpu": 0.5, "memory_gib": 1.5}}),
        env={"SPACE_ID": "alice/demo", "HF_TOKEN": SECRET_VALUE},
    )
    return replace(base, **changes)


def sent(obj: object) -> Any:
    return ApiClient().sanitize_for_serialization(obj)


LABELS = {
    "app.kubernetes.io/managed-by": "spaceport",
    "app.kubernetes.io/name": "space",
    "spaceport.dev/installation": INSTALLATION,
    "spaceport.dev/space-id": UID,
}
ANNOTATIONS = {"spaceport.dev/space": "alice/demo", "spaceport.dev/sha": SHA}


def metadata(name: str = f"space-{UID}") -> dict[str, Any]:
    return {"name": name, "namespace": "spaces", "labels": LABELS, "annotations": ANNOTATIONS}


def pod_spec(container: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 10,
        **extra,
    }


def container(resources: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "app",
        "image": IMAGE,
        "ports": [{"name": "http", "containerPort": 7860, "protocol": "TCP"}],
        "envFrom": [{"secretRef": {"name": f"space-{UID}-env"}}],
        "resources": {"requests": resources, "limits": resources},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
        },
        "readinessProbe": {
            "tcpSocket": {"port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
    }


def test_a_cpu_spaces_deployment_is_exactly_this() -> None:
    rev = revision()
    assert sent(make_deployment(rev, SETTINGS)) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 2,
            "template": {
                "metadata": {
                    "labels": {
                        **LABELS,
                        "spaceport.dev/revision": rev.key,
                        "spaceport.dev/hardware": "cpu-basic",
                    },
                    "annotations": ANNOTATIONS,
                },
                "spec": pod_spec(
                    container({"cpu": "500m", "memory": "1536Mi", "ephemeral-storage": "50Gi"}),
                    imagePullSecrets=[{"name": "spaceport-pull"}],
                ),
            },
        },
    }


def test_a_gpu_spaces_deployment_is_exactly_this() -> None:
    rev = revision("a10g-largex2")
    assert sent(make_deployment(rev, PLAIN)) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 2,
            "template": {
                "metadata": {
                    "labels": {
                        **LABELS,
                        "spaceport.dev/revision": rev.key,
                        "spaceport.dev/hardware": "a10g-largex2",
                    },
                    "annotations": ANNOTATIONS,
                },
                "spec": pod_spec(
                    container(
                        {
                            "cpu": "24",
                            "memory": "92Gi",
                            "ephemeral-storage": "50Gi",
                            "nvidia.com/gpu": "2",
                        }
                    ),
                    nodeSelector={"spaceport.dev/accelerator": "a10g"},
                    tolerations=[
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                ),
            },
        },
    }


def test_a_sleeping_or_paused_space_has_no_replica() -> None:
    assert make_deployment(revision(), SETTINGS, replicas=0).spec.replicas == 0


def test_an_operators_placement_reaches_the_pod() -> None:
    overrides = {
        "t4-small": {
            "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
            "tolerations": [
                {
                    "key": "spot",
                    "operator": "Equal",
                    "value": "yes",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                }
            ],
        }
    }
    rev = replace(revision(), hardware=sized_tier("t4-small", overrides))
    pod = sent(make_deployment(rev, PLAIN))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["tolerations"] == [
        {
            "key": "spot",
            "operator": "Equal",
            "value": "yes",
            "effect": "NoExecute",
            "tolerationSeconds": 60,
        }
    ]


def test_a_cpu_space_selects_no_nodes_and_tolerates_no_taint() -> None:
    pod = sent(make_deployment(revision("cpu-upgrade"), PLAIN))["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    resources = pod["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources["requests"]
    assert "nvidia.com/gpu" not in resources["limits"]


@pytest.mark.parametrize("name", ["zero-a10g", "t4-small", "l4x4", "l40sx8", "a100x8"])
def test_gpu_requests_equal_limits(name: str) -> None:
    resources = sent(make_deployment(revision(name), PLAIN))["spec"]["template"]["spec"][
        "containers"
    ][0]["resources"]
    tier = get_tier(name)
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["nvidia.com/gpu"] == str(tier.gpu_count)


def test_secrets_are_never_literal_in_the_deployment() -> None:
    rev = revision(env={"HF_TOKEN": SECRET_VALUE, "OAUTH_CLIENT_SECRET": "oauth-s3cret"})
    text = json.dumps(sent(make_deployment(rev, SETTINGS)))
    assert SECRET_VALUE not in text and "oauth-s3cret" not in text
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
    assert "HF_TOKEN" not in text  # not even a name: env comes only from the Secret
    spec = sent(make_deployment(rev, SETTINGS))["spec"]["template"]["spec"]
    assert "env" not in spec["containers"][0]


def test_the_env_secret_holds_the_environment() -> None:
    assert sent(make_env_secret(revision(), SETTINGS)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(f"space-{UID}-env"),
        "data": {
            "HF_TOKEN": base64.b64encode(SECRET_VALUE.encode()).decode(),
            "SPACE_ID": base64.b64encode(b"alice/demo").decode(),
        },
    }


def test_a_variable_a_secret_cannot_hold_is_refused_by_name_only() -> None:
    rev = revision(env={"MY VAR": SECRET_VALUE})
    with pytest.raises(ValueError, match="'MY VAR' cannot run on Kubernetes") as caught:
        make_env_secret(rev, SETTINGS)
    assert SECRET_VALUE not in str(caught.value)


def test_the_service_is_exactly_this() -> None:
    assert sent(make_service(revision(), SETTINGS)) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": LABELS,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    assert service_url(UID, SETTINGS) == f"http://space-{UID}.spaces.svc:80"


def test_the_ingress_is_exactly_this_and_goes_to_the_gateway() -> None:
    host = space_host("alice-demo", SETTINGS.spaces_domain)
    assert sent(make_ingress(revision(), SETTINGS, host)) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(),
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "alice-demo.spaces.example.org",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": "spaceport-gateway",
                                        "port": {"number": 80},
                                    }
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


def test_no_ingress_class_no_ingress() -> None:
    assert make_ingress(revision(), PLAIN, "alice-demo.example.org") is None


def test_an_ingress_class_needs_the_gateways_service() -> None:
    with pytest.raises(ValueError, match="ingress_service"):
        ObjectSettings("spaces", INSTALLATION, {"app": "gw"}, (), ingress_class="nginx")


def test_the_ingress_host_has_no_port() -> None:
    assert space_host("alice-demo", "localhost:8000") == "alice-demo.localhost"
    assert space_host("Alice-Demo", "Spaces.Example.org.") == "alice-demo.spaces.example.org"
    with pytest.raises(ValueError, match="not a host name"):
        space_host("alice_demo", "example.org")


def test_the_network_policy_is_exactly_this() -> None:
    assert sent(make_network_policy(revision(), SETTINGS)) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(),
        "spec": {
            "podSelector": {"matchLabels": LABELS},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "spaceport"}
                            },
                            "podSelector": {
                                "matchLabels": {
                                    "app.kubernetes.io/name": "spaceport",
                                    "app.kubernetes.io/component": "api",
                                }
                            },
                        }
                    ],
                    "ports": [{"port": 7860, "protocol": "TCP"}],
                }
            ],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                },
                {
                    "to": [
                        {
                            "ipBlock": {
                                "cidr": "0.0.0.0/0",
                                "except": [
                                    "10.0.0.0/8",
                                    "169.254.0.0/16",
                                    "172.16.0.0/12",
                                    "192.168.0.0/16",
                                ],
                            }
                        }
                    ]
                },
            ],
        },
    }


def test_the_gateway_in_the_spaces_namespace_is_named_by_it() -> None:
    policy = sent(make_network_policy(revision(), PLAIN))
    peer = policy["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "spaces"}}
    assert peer["podSelector"] == {"matchLabels": {"app": "gw"}}


def test_the_metadata_address_is_blocked_whatever_the_settings_say() -> None:
    (peer,) = internet_blocks(("10.0.0.0/8",))
    assert sent(peer) == {
        "ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}
    }


def test_ipv6_goes_out_only_past_the_ipv6_networks_given() -> None:
    peers = sent(internet_blocks(("10.0.0.0/8", "fc00::/7", "fe80::/10", "fd00::/8")))
    assert peers == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}},
        # fd00::/8 lies inside fc00::/7: listed once.
        {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}},
    ]


def test_blocking_everything_leaves_no_internet() -> None:
    assert internet_blocks(("0.0.0.0/0",)) == []


def test_an_empty_gateway_selector_is_refused() -> None:
    # {} selects every pod: each Space could then reach every other.
    with pytest.raises(ValueError, match="gateway_labels"):
        ObjectSettings("spaces", INSTALLATION, {}, ())


def test_owned_objects_point_at_the_deployment_and_the_original_is_untouched() -> None:
    service = make_service(revision(), SETTINGS)
    owned = with_owner(service, f"space-{UID}", "5f1c-uid")
    assert sent(owned)["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"space-{UID}",
            "uid": "5f1c-uid",
            "controller": True,
        }
    ]
    assert service.metadata.owner_references is None
    for obj in (
        make_env_secret(revision(), SETTINGS),
        make_network_policy(revision(), SETTINGS),
        make_ingress(revision(), SETTINGS, "a.example.org"),
    ):
        assert with_owner(obj, "d", "u").metadata.owner_references[0].uid == "u"


def test_names_are_dns_labels_from_the_uid() -> None:
    names = space_names(UID)
    assert names.deployment == names.service == names.ingress == names.network_policy
    assert names.deployment == f"space-{UID}"
    assert names.env_secret == f"space-{UID}-env"
    assert names.files_secret == f"space-{UID}-files"
    label = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035 too, as Services need
    for name in vars(names).values():
        assert label.match(name) and len(name) <= 63


@pytest.mark.parametrize("uid", ["", "ABC", "a/b", "a" * 60, "-abc", "abc-"])
def test_a_uid_that_cannot_name_an_object_is_refused(uid: str) -> None:
    with pytest.raises(ValueError, match="cannot name a Kubernetes object"):
        space_names(uid)


def test_every_object_carries_the_spaces_labels() -> None:
    rev = revision("t4-small")
    objects = [
        make_deployment(rev, SETTINGS),
        make_service(rev, SETTINGS),
        make_ingress(rev, SETTINGS, "a.example.org"),
        make_network_policy(rev, SETTINGS),
        make_env_secret(rev, SETTINGS),
    ]
    for obj in objects:
        assert obj is not None
        assert obj.metadata.labels == LABELS
        assert obj.metadata.annotations == ANNOTATIONS
        assert obj.metadata.namespace == "spaces"
    template = objects[0].spec.template.metadata.labels
    assert template["spaceport.dev/revision"] == rev.key
    assert template["spaceport.dev/hardware"] == "t4-small"


def test_selectors_find_an_installations_spaces_and_one_space() -> None:
    assert installation_selector(INSTALLATION) == (
        "app.kubernetes.io/managed-by=spaceport,app.kubernetes.io/name=space,"
        f"spaceport.dev/installation={INSTALLATION}"
    )
    assert space_selector(INSTALLATION, UID) == (
        f"{installation_selector(INSTALLATION)},spaceport.dev/space-id={UID}"
    )
    # The selectors match the labels the objects carry.
    for term in space_selector(INSTALLATION, UID).split(","):
        key, value = term.split("=")
        assert LABELS[key] == value


def test_the_deployments_pod_selector_does_not_change_with_the_revision() -> None:
    # spec.selector is immutable: a new image, tier or environment must keep it.
    one = make_deployment(revision(), SETTINGS).spec.selector
    other = make_deployment(revision("t4-small", image="x@sha256:" + "0" * 64), SETTINGS)
    assert one == other.spec.selector


def test_the_pull_secret_is_a_docker_config() -> None:
    credentials = RegistryCredentials("registry.local:5000", "spaceport", "pa55word")
    assert "pa55word" not in repr(credentials)
    secret = sent(make_pull_secret("spaceport-pull", credentials, SETTINGS))
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config == {
        "auths": {
            "registry.local:5000": {
                "username": "spaceport",
                "password": "pa55word",
                "auth": base64.b64encode(b"spaceport:pa55word").decode(),
            }
        }
    }
    del secret["data"]
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": "spaceport-pull",
            "namespace": "spaces",
            "labels": {
                "app.kubernetes.io/managed-by": "spaceport",
                "spaceport.dev/installation": INSTALLATION,
            },
        },
    }


@pytest.mark.parametrize(
    ("cpus", "expected"), [(2, "2"), (0.5, "500m"), (1.25, "1250m"), (192, "192")]
)
def test_cpu_quantities(cpus: float, expected: str) -> None:
    assert cpu_quantity(cpus) == expected


@pytest.mark.parametrize(
    ("gib", "expected"), [(16, "16Gi"), (0.5, "512Mi"), (1.5, "1536Mi"), (0.3, "322122547")]
)
def test_memory_quantities(gib: float, expected: str) -> None:
    assert gib_quantity(gib) == expected


def test_settings_are_frozen_copies() -> None:
    labels = {"app": "gw"}
    settings = ObjectSettings("spaces", INSTALLATION, labels, ["10.1.2.3/8"])  # type: ignore[arg-type]
    labels["app"] = "other"
    assert dict(settings.gateway_labels) == {"app": "gw"}
    assert settings.blocked_cidrs == ("10.0.0.0/8",)
    with pytest.raises(TypeError):
        settings.gateway_labels["x"] = "y"  # type: ignore[index]


# -- `space` volumes: another Space's files, fetched by an init container ------------------

OTHER_UID = "fedcba9876543210fedcba98"
OTHER_SHA = "beef" + "1" * 36
EXPORT_IMAGE = "spaceport/spaceport:0.1.0"
WITH_FILES = replace(SETTINGS, export_image=EXPORT_IMAGE, export_port=8000)
FILES_MOUNTS = (
    VolumeMount("bucket-00aa11bb22cc33dd44ee55ff", "/data"),
    VolumeMount(
        f"space-{OTHER_UID}-{OTHER_SHA[:12]}",
        "/weights",
        read_only=True,
        source_dir="/home/volumes/spaces/x/w",
        files=SpaceFiles(OTHER_UID, OTHER_SHA, "w"),
    ),
    VolumeMount(
        f"space-{OTHER_UID}-{OTHER_SHA[:12]}",
        "/all",
        read_only=True,
        source_dir="/home/volumes/spaces/x",
        files=SpaceFiles(OTHER_UID, OTHER_SHA, ""),
    ),
)


def files_init_container(index: int) -> dict[str, Any]:
    amounts = {"cpu": "500m", "memory": "1536Mi", "ephemeral-storage": "50Gi"}
    return {
        "name": f"files-{index}",
        "image": EXPORT_IMAGE,
        "command": ["python", "-m", "sandbox.kubernetes.fetch_export"],
        # At most the tier's 50 GiB disk, and the installation's limits.
        "args": ["/files", f"--max-bytes={20 << 30}", "--max-files=100000"],
        "env": [
            {
                "name": "SPACEPORT_EXPORT_URL",
                "valueFrom": {
                    "secretKeyRef": {"name": f"space-{UID}-files", "key": f"volume-{index}"}
                },
            }
        ],
        "resources": {"requests": amounts, "limits": amounts},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [{"name": f"volume-{index}", "mountPath": "/files"}],
    }


def test_a_space_volumes_pod_is_exactly_this() -> None:
    """Each `space` volume: an emptyDir its own init container fills from the signed URL in
    the files Secret, mounted read-only into the app, at its folder (subPath) if it names
    one; a bucket beside it is still its claim."""
    rev = revision(mounts=FILES_MOUNTS)
    app = container({"cpu": "500m", "memory": "1536Mi", "ephemeral-storage": "50Gi"})
    app["volumeMounts"] = [
        {"name": "volume-0", "mountPath": "/data"},
        {"name": "volume-1", "mountPath": "/weights", "readOnly": True, "subPath": "w"},
        {"name": "volume-2", "mountPath": "/all", "readOnly": True},
    ]
    template = sent(make_deployment(rev, WITH_FILES))["spec"]["template"]
    assert template["spec"] == pod_spec(
        app,
        initContainers=[files_init_container(1), files_init_container(2)],
        volumes=[
            {
                "name": "volume-0",
                "persistentVolumeClaim": {"claimName": "vol-bucket-00aa11bb22cc33dd44ee55ff"},
            },
            {"name": "volume-1", "emptyDir": {}},
            {"name": "volume-2", "emptyDir": {}},
        ],
        imagePullSecrets=[{"name": "spaceport-pull"}],
    )
    # No URL, nor anything signed, in the Deployment: only the Secret's name and key.
    assert "sig=" not in json.dumps(sent(make_deployment(rev, WITH_FILES)))


def test_a_small_tiers_files_are_bounded_by_its_disk() -> None:
    rev = replace(
        revision(mounts=FILES_MOUNTS[1:2]),
        hardware=sized_tier("cpu-basic", {"cpu-basic": {"disk_gib": 2}}),
    )
    (init,) = sent(make_deployment(rev, replace(WITH_FILES, export_max_files=7)))["spec"][
        "template"
    ]["spec"]["initContainers"]
    assert init["args"] == ["/files", f"--max-bytes={2 << 30}", "--max-files=7"]


def test_a_space_volume_without_the_export_image_is_refused() -> None:
    with pytest.raises(ValueError, match="SPACEPORT_KUBE_EXPORT_IMAGE"):
        make_deployment(revision(mounts=FILES_MOUNTS), SETTINGS)
    # Buckets alone need no image.
    assert make_deployment(revision(mounts=FILES_MOUNTS[:1]), SETTINGS).spec.template.spec


def test_the_files_secret_holds_each_volumes_url() -> None:
    rev = revision(mounts=FILES_MOUNTS)
    urls = {1: "http://api/x?sig=1", 2: "http://api/y?sig=2"}
    secret = sent(make_files_secret(rev, WITH_FILES, urls))
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(f"space-{UID}-files"),
        "data": {
            "volume-1": base64.b64encode(b"http://api/x?sig=1").decode(),
            "volume-2": base64.b64encode(b"http://api/y?sig=2").decode(),
        },
    }
    assert space_names(UID).files_secret == f"space-{UID}-files"


def test_a_space_volumes_pod_may_reach_the_gateways_port_and_no_more() -> None:
    """One more egress rule than any Space's: the gateway pods (which serve the files'
    URL), on their port only."""
    plain = sent(make_network_policy(revision(), WITH_FILES))["spec"]["egress"]
    policy = sent(make_network_policy(revision(mounts=FILES_MOUNTS), WITH_FILES))
    assert policy["spec"]["egress"] == [
        plain[0],
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "spaceport"}
                    },
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "spaceport",
                            "app.kubernetes.io/component": "api",
                        }
                    },
                }
            ],
            "ports": [{"port": 8000, "protocol": "TCP"}],
        },
        plain[1],
    ]
    # Buckets alone: the same policy as a Space without volumes.
    buckets_only = sent(make_network_policy(revision(mounts=FILES_MOUNTS[:1]), WITH_FILES))
    assert buckets_only["spec"]["egress"] == plain
