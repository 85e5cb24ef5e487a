"""Volumes' Kubernetes objects against a real apiserver (tests/kube). A bucket: the claim
and the Deployment that mounts it validate, and the claim outlives the Deployment (the
real garbage collector removes what a Deployment owns, never a bucket's data). Another
Space's files (a `space` volume): an init container and an emptyDir, the signed URL in a
Secret of the Space's."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from sandbox.backend import BackendError, SpaceFiles, VolumeMount
from sandbox.kubernetes.backend import KubernetesBackend
from sandbox.kubernetes.objects import (
    make_deployment,
    make_volume_claim,
    volume_claim_name,
)
from tests.kube.control_plane import ControlPlane
from tests.test_kube_backend import new_uid, object_settings
from tests.test_kube_backend import revision as backend_revision
from tests.test_kube_objects_dry_run import revision, sent, settings

pytestmark = pytest.mark.kube

MOUNTS = (
    VolumeMount("bucket-00aa11bb22cc33dd44ee55ff", "/data"),
    VolumeMount("bucket-ffeeddccbbaa998877665544", "/shared", read_only=True),
)


def test_a_bucket_claim_validates_mounts_and_outlives_its_space(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    api = kube_cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    config = settings(kube_namespace)
    rev = replace(revision("cpu-basic"), mounts=MOUNTS)
    for mount in MOUNTS:
        core.create_namespaced_persistent_volume_claim(
            kube_namespace, make_volume_claim(mount.name, config, config.bucket_size_gib)
        )
    deployment = make_deployment(rev, config)
    made = apps.create_namespaced_deployment(kube_namespace, deployment)
    ours = sent(deployment)["spec"]["template"]["spec"]
    theirs = sent(made)["spec"]["template"]["spec"]
    assert theirs["volumes"] == ours["volumes"]
    assert theirs["containers"][0]["volumeMounts"] == ours["containers"][0]["volumeMounts"]

    apps.delete_namespaced_deployment(
        made.metadata.name, kube_namespace, propagation_policy="Foreground"
    )
    deadline = time.monotonic() + 30
    while apps.list_namespaced_deployment(kube_namespace).items and time.monotonic() < deadline:
        time.sleep(0.2)
    assert apps.list_namespaced_deployment(kube_namespace).items == []
    claims = core.list_namespaced_persistent_volume_claim(kube_namespace).items
    assert sorted(c.metadata.name for c in claims) == sorted(
        volume_claim_name(m.name) for m in MOUNTS
    )


def test_the_backend_makes_each_buckets_claim_at_a_start_and_forget_keeps_it(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    backend = KubernetesBackend(kube_cluster.api_client(), object_settings(kube_namespace))
    backend.prepare()
    core = client.CoreV1Api(kube_cluster.api_client())
    try:
        uid = new_uid()
        rev = replace(backend_revision(uid), mounts=MOUNTS)
        backend.start(rev)
        backend.start(rev)  # applied again: the same claims, no conflict
        names = sorted(volume_claim_name(m.name) for m in MOUNTS)
        claims = core.list_namespaced_persistent_volume_claim(kube_namespace).items
        assert sorted(c.metadata.name for c in claims) == names
        backend.forget(uid)
        claims = core.list_namespaced_persistent_volume_claim(kube_namespace).items
        assert sorted(c.metadata.name for c in claims) == names
        # Another Space's files need the init container's image, which this backend lacks:
        # refused, naming the setting, and nothing is made for it.
        refused = new_uid()
        with pytest.raises(BackendError, match="needs SPACEPORT_KUBE_EXPORT_IMAGE"):
            backend.start(replace(backend_revision(refused), mounts=(FILES,)))
        apps = client.AppsV1Api(kube_cluster.api_client())
        assert [
            d.metadata.name
            for d in apps.list_namespaced_deployment(kube_namespace).items
            if refused in d.metadata.name
        ] == []
    finally:
        backend.close()


OTHER_UID = "fedcba9876543210fedcba98"
FILES = VolumeMount(
    f"space-{OTHER_UID}-beefbeefbeef",
    "/weights",
    read_only=True,
    source_dir="/var/lib/spaceport/volumes/spaces/x/w",  # the control plane's disk: unseen
    files=SpaceFiles(OTHER_UID, "beef" * 10, "w"),
)
EXPORT_IMAGE = "spaceport/spaceport:test"


def test_a_space_volume_is_an_init_container_an_empty_dir_and_a_signed_url(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    """A Space with a `space` volume: its Deployment's pod has the init container that
    fetches the files into an emptyDir the app mounts read-only at the volume's folder, the
    signed URL in a Secret of the Space's (never in the Deployment), and a NetworkPolicy
    that lets it reach the gateway pods' port; the apiserver takes all of it, and the
    ReplicaSet controller makes the pod from it. (kwok runs no container: the files
    themselves are tests/unit/test_space_files_export.py's.)"""
    api = kube_cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    networking = client.NetworkingV1Api(api)
    expiry = iter(range(1, 100))

    def files_url(files: SpaceFiles, space_uid: str) -> str:
        return (
            f"http://spaceport-api.spaceport.svc:80/api/volumes/space-files/{files.space_uid}"
            f"/{files.sha}?path={files.path}&for={space_uid}&expires={next(expiry)}&sig=00"
        )

    config = object_settings(kube_namespace, export_image=EXPORT_IMAGE, export_port=8000)
    backend = KubernetesBackend(api, config, files_url=files_url)
    backend.prepare()
    try:
        uid = new_uid()
        name = f"space-{uid}"
        rev = replace(backend_revision(uid), mounts=(MOUNTS[0], FILES))
        backend.start(rev)
        deployment = apps.read_namespaced_deployment(name, kube_namespace)
        spec = deployment.spec.template.spec
        (init,) = spec.init_containers
        assert init.name == "files-1" and init.image == EXPORT_IMAGE
        assert init.command == ["python", "-m", "sandbox.kubernetes.fetch_export"]
        assert init.args[0] == "/files"
        (url_env,) = init.env
        assert url_env.name == "SPACEPORT_EXPORT_URL" and url_env.value is None
        assert url_env.value_from.secret_key_ref.name == f"{name}-files"
        assert url_env.value_from.secret_key_ref.key == "volume-1"
        assert init.security_context.read_only_root_filesystem is True
        assert [(m.name, m.mount_path) for m in init.volume_mounts] == [("volume-1", "/files")]
        volumes = {v.name: v for v in spec.volumes}
        assert volumes["volume-1"].empty_dir is not None
        assert volumes["volume-0"].persistent_volume_claim.claim_name == volume_claim_name(
            MOUNTS[0].name
        )
        (app,) = spec.containers
        mounted = {m.name: (m.mount_path, m.read_only, m.sub_path) for m in app.volume_mounts}
        assert mounted == {"volume-0": ("/data", None, None), "volume-1": ("/weights", True, "w")}
        assert "sig=" not in str(api.sanitize_for_serialization(deployment))

        # The URL is in the Space's files Secret, owned by its Deployment.
        secret = core.read_namespaced_secret(f"{name}-files", kube_namespace)
        assert base64.b64decode(secret.data["volume-1"]).decode() == files_url_for(uid, 1)
        assert secret.metadata.owner_references[0].uid == deployment.metadata.uid
        # No claim for the files: only the bucket's.
        claims = core.list_namespaced_persistent_volume_claim(kube_namespace).items
        assert [c.metadata.name for c in claims] == [volume_claim_name(MOUNTS[0].name)]
        # Egress to the gateway pods' port, beside DNS and the internet.
        policy = networking.read_namespaced_network_policy(name, kube_namespace)
        rules = api.sanitize_for_serialization(policy.spec.egress)
        assert {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": kube_namespace}
                    },
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "spaceport"}},
                }
            ],
            "ports": [{"port": 8000, "protocol": "TCP"}],
        } in rules
        assert len(rules) == 3

        # The ReplicaSet controller made the pod from the template: the apiserver took it.
        deadline = time.monotonic() + 30
        pods: list[Any] = []
        while not pods and time.monotonic() < deadline:
            pods = core.list_namespaced_pod(
                kube_namespace, label_selector=f"spaceport.dev/space-id={uid}"
            ).items
            time.sleep(0.2)
        assert pods, "no pod was made from the Deployment"
        assert [c.name for c in pods[0].spec.init_containers] == ["files-1"]

        # Started again (a wake): a newly signed URL in the Secret, the same template, so
        # no new pod for it.
        generation = deployment.metadata.generation
        backend.start(rev)
        secret = core.read_namespaced_secret(f"{name}-files", kube_namespace)
        assert base64.b64decode(secret.data["volume-1"]).decode() == files_url_for(uid, 2)
        again = apps.read_namespaced_deployment(name, kube_namespace)
        assert again.metadata.generation == generation

        backend.forget(uid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            s.metadata.name == f"{name}-files"
            for s in core.list_namespaced_secret(kube_namespace).items
        ):
            time.sleep(0.2)
        assert f"{name}-files" not in {
            s.metadata.name for s in core.list_namespaced_secret(kube_namespace).items
        }
    finally:
        backend.close()


def files_url_for(uid: str, expires: int) -> str:
    return (
        f"http://spaceport-api.spaceport.svc:80/api/volumes/space-files/{OTHER_UID}/"
        f"{'beef' * 10}?path=w&for={uid}&expires={expires}&sig=00"
    )
