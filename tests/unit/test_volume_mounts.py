"""A Space's volumes as the backends get them (sandbox/): the revision key, the Kubernetes
objects (a claim per bucket, mounted in the Deployment). Docker's named volumes with real
containers: tests/test_volumes.py."""

from __future__ import annotations

from dataclasses import replace

from sandbox.backend import LABEL_INSTANCE, VolumeMount
from sandbox.kubernetes.objects import (
    make_deployment,
    make_volume_claim,
    volume_claim_name,
)
from tests.unit.test_kube_objects import PLAIN, revision, sent

BUCKET = VolumeMount("bucket-00aa11bb22cc33dd44ee55ff", "/data")


def test_a_revision_without_mounts_keeps_its_key_and_mounts_change_it() -> None:
    plain = revision()
    assert replace(plain, mounts=()).key == plain.key
    mounted = replace(plain, mounts=(BUCKET,))
    assert mounted.key != plain.key
    read_only = replace(plain, mounts=(replace(BUCKET, read_only=True),))
    assert read_only.key != mounted.key


def test_a_bucket_is_a_claim_of_its_own_mounted_in_the_deployment() -> None:
    claim = sent(make_volume_claim(BUCKET.name, PLAIN, PLAIN.bucket_size_gib))
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["name"] == volume_claim_name(BUCKET.name)
    assert claim["metadata"]["labels"] == {LABEL_INSTANCE: PLAIN.installation}
    # Not owned by a Deployment: a bucket outlives every Space that mounts it.
    assert "ownerReferences" not in claim["metadata"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"

    mounts = (BUCKET, VolumeMount("bucket-ffeeddccbbaa998877665544", "/ro", read_only=True))
    pod = sent(make_deployment(replace(revision(), mounts=mounts), PLAIN))["spec"]["template"]
    volumes = pod["spec"]["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in volumes] == [
        volume_claim_name(m.name) for m in mounts
    ]
    assert volumes[1]["persistentVolumeClaim"]["readOnly"] is True
    container = pod["spec"]["containers"][0]
    assert [(m["mountPath"], m.get("readOnly")) for m in container["volumeMounts"]] == [
        ("/data", None),
        ("/ro", True),
    ]
    # The pod's fsGroup makes the claim writable for the Space's user.
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000


def test_a_bucket_over_its_quota_is_read_only_in_the_pod_without_a_new_revision() -> None:
    over = replace(BUCKET, over_quota=True)
    mounted = replace(revision(), mounts=(BUCKET,))
    assert replace(mounted, mounts=(over,)).key == mounted.key  # what runs is not replaced
    pod = sent(make_deployment(replace(mounted, mounts=(over,)), PLAIN))["spec"]["template"]
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is True


def test_a_claim_asks_for_the_bucket_size_setting() -> None:
    config = replace(PLAIN, bucket_size_gib=2.5)
    claim = sent(make_volume_claim(BUCKET.name, config, config.bucket_size_gib))
    assert claim["spec"]["resources"]["requests"]["storage"] == "2560Mi"


def test_without_volumes_the_pod_has_none() -> None:
    pod = sent(make_deployment(revision(), PLAIN))["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
