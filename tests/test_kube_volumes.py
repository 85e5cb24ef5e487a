"""A bucket volume's Kubernetes objects against a real apiserver (tests/kube): the claim
and the Deployment that mounts it validate, and the claim outlives the Deployment (the
real garbage collector removes what a Deployment owns, never a bucket's data)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from kubernetes import client

from sandbox.backend import BackendError, VolumeMount
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
        # Another Space's files are exported on the control plane's disk: no pod sees it.
        files = VolumeMount("space-x", "/files", read_only=True, source_dir="/tmp/x")
        with pytest.raises(BackendError, match="'space' volume"):
            backend.start(replace(backend_revision(new_uid()), mounts=(files,)))
    finally:
        backend.close()
