"""A Space's Kubernetes objects against a real apiserver (tests/kube): each one validates
(server-side dry run), comes back as it was sent (so a read-back compares equal), and
deleting the Deployment deletes everything it owns (the real garbage collector)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sandbox.backend import Revision
from sandbox.hardware import sized_tier
from sandbox.kubernetes.objects import (
    ObjectSettings,
    RegistryCredentials,
    make_deployment,
    make_env_secret,
    make_ingress,
    make_network_policy,
    make_pull_secret,
    make_service,
    space_host,
    space_names,
    with_owner,
)
from tests.kube.control_plane import ControlPlane

pytestmark = pytest.mark.kube

UID = "0123456789abcdef01234567"
SMALL = {"cpu-basic": {"cpu": 0.5, "memory_gib": 0.5, "disk_gib": 1}}


def settings(namespace: str) -> ObjectSettings:
    return ObjectSettings(
        namespace=namespace,
        installation="spaceport-test0dryrun",
        gateway_labels={
            "app.kubernetes.io/name": "spaceport",
            "app.kubernetes.io/component": "api",
        },
        gateway_namespace="spaceport",
        blocked_cidrs=(
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "fc00::/7",
        ),
        spaces_domain="spaces.example.org:8443",
        ingress_class="nginx",
        ingress_service="spaceport-gateway",
        image_pull_secret="spaceport-pull",
    )


def revision(tier: str) -> Revision:
    return Revision(
        space_id=UID,
        space="alice/demo",
        sha="c0ffee" + "0" * 34,
        image="127.0.0.1:5000/" + UID + "@sha256:" + "ab" * 32,
        port=7860,
        hardware=sized_tier(tier, SMALL),
        env={"SPACE_ID": "alice/demo", "HF_TOKEN": "hf_secret", "a.b-c_D": "x"},
    )


def sent(obj: object) -> Any:
    return client.ApiClient().sanitize_for_serialization(obj)


@pytest.mark.parametrize("tier", ["cpu-basic", "a10g-largex2", "t4-small"])
def test_every_object_of_a_space_validates(
    kube_cluster: ControlPlane, kube_namespace: str, tier: str
) -> None:
    api = kube_cluster.api_client()
    apps, core, net = client.AppsV1Api(api), client.CoreV1Api(api), client.NetworkingV1Api(api)
    config = settings(kube_namespace)
    rev = revision(tier)
    names = space_names(UID)
    owner = ("space-" + UID, "6d1f0c2e-0000-4000-8000-000000000001")
    ingress = make_ingress(rev, config, space_host("alice-demo", config.spaces_domain))
    assert ingress is not None

    deployment = make_deployment(rev, config)
    answer = apps.create_namespaced_deployment(kube_namespace, deployment, dry_run="All")
    # The server keeps what was sent as it was sent: quantities in their canonical form,
    # the security context, placement. A backend comparing a read-back sees no drift.
    ours, theirs = sent(deployment)["spec"], sent(answer)["spec"]
    ours_pod, theirs_pod = ours["template"]["spec"], theirs["template"]["spec"]
    for key in ("securityContext", "nodeSelector", "tolerations", "imagePullSecrets"):
        assert theirs_pod.get(key) == ours_pod.get(key), key
    for key in ("resources", "securityContext", "envFrom", "ports", "image"):
        assert theirs_pod["containers"][0][key] == ours_pod["containers"][0][key], key
    assert theirs["strategy"] == ours["strategy"]
    assert theirs["template"]["metadata"]["labels"] == ours["template"]["metadata"]["labels"]

    replies = [
        core.create_namespaced_service(
            kube_namespace, with_owner(make_service(rev, config), *owner), dry_run="All"
        ),
        net.create_namespaced_ingress(kube_namespace, with_owner(ingress, *owner), dry_run="All"),
        net.create_namespaced_network_policy(
            kube_namespace, with_owner(make_network_policy(rev, config), *owner), dry_run="All"
        ),
        core.create_namespaced_secret(
            kube_namespace, with_owner(make_env_secret(rev, config), *owner), dry_run="All"
        ),
        core.create_namespaced_secret(
            kube_namespace,
            make_pull_secret(
                "spaceport-pull", RegistryCredentials("127.0.0.1:5000", "u", "p"), config
            ),
            dry_run="All",
        ),
    ]
    assert [r.metadata.name for r in replies] == [
        names.service,
        names.ingress,
        names.network_policy,
        names.env_secret,
        "spaceport-pull",
    ]
    policy = sent(replies[2])["spec"]
    assert policy == sent(make_network_policy(rev, config))["spec"]
    assert sent(replies[3])["data"] == sent(make_env_secret(rev, config))["data"]
    # Dry runs leave nothing behind.
    assert apps.list_namespaced_deployment(kube_namespace).items == []


def test_an_invalid_object_is_refused_so_the_dry_run_checks_something(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    deployment = make_deployment(revision("cpu-basic"), settings(kube_namespace))
    deployment.spec.template.spec.containers[0].resources.requests["nvidia.com/gpu"] = "1"
    deployment.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] = "2"
    with pytest.raises(ApiException) as caught:
        client.AppsV1Api(kube_cluster.api_client()).create_namespaced_deployment(
            kube_namespace, deployment, dry_run="All"
        )
    assert caught.value.status == 422


def _until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def test_deleting_the_deployment_removes_everything_it_owns(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    api = kube_cluster.api_client()
    apps, core, net = client.AppsV1Api(api), client.CoreV1Api(api), client.NetworkingV1Api(api)
    config = settings(kube_namespace)
    rev = revision("cpu-basic")
    names = space_names(UID)
    # 0 replicas: no pod takes room on the shared fake nodes.
    made = apps.create_namespaced_deployment(kube_namespace, make_deployment(rev, config, 0))
    owner = (made.metadata.name, made.metadata.uid)
    ingress = make_ingress(rev, config, "alice-demo.spaces.example.org")
    assert ingress is not None
    core.create_namespaced_service(kube_namespace, with_owner(make_service(rev, config), *owner))
    net.create_namespaced_ingress(kube_namespace, with_owner(ingress, *owner))
    net.create_namespaced_network_policy(
        kube_namespace, with_owner(make_network_policy(rev, config), *owner)
    )
    core.create_namespaced_secret(kube_namespace, with_owner(make_env_secret(rev, config), *owner))

    reads: dict[str, Callable[[], object]] = {
        "service": lambda: core.read_namespaced_service(names.service, kube_namespace),
        "ingress": lambda: net.read_namespaced_ingress(names.ingress, kube_namespace),
        "network policy": lambda: net.read_namespaced_network_policy(
            names.network_policy, kube_namespace
        ),
        "env secret": lambda: core.read_namespaced_secret(names.env_secret, kube_namespace),
    }
    for read in reads.values():
        read()  # all there

    apps.delete_namespaced_deployment(
        names.deployment, kube_namespace, propagation_policy="Background"
    )

    def gone(read: Callable[[], object]) -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    for what, read in reads.items():
        _until(f"the garbage collector to delete the {what}", lambda read=read: gone(read))
