"""Buckets' claims on a real apiserver (tests/kube) and the controller's volume sweep
(orchestrator/controller/volume_sweep.py): a claim asks for SPACEPORT_BUCKET_SIZE_GIB, the
backend lists the installation's claims and which a Space's Deployment or pod mounts, and
the sweep deletes a deleted bucket's claim once no Space mounts it, never one in use.
The claim and Deployment objects themselves: tests/test_kube_volumes.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from kubernetes import client
from sqlmodel import Session, select

from orchestrator.controller import volume_sweep
from orchestrator.core import auth, db
from orchestrator.core.models import Bucket
from orchestrator.volumes import buckets
from sandbox.backend import KeptVolume, VolumeMount
from sandbox.kubernetes.backend import KubernetesBackend
from sandbox.kubernetes.objects import volume_claim_name
from tests.kube.control_plane import ControlPlane
from tests.platform import until
from tests.test_kube_backend import new_uid, object_settings
from tests.test_kube_backend import revision as backend_revision
from tests.test_volumes_docker import home  # noqa: F401 - a fixture: a migrated SQLite home

pytestmark = pytest.mark.kube


def _claims(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """Live claims (not being deleted) by name, with the storage each requests."""
    return {
        c.metadata.name: c.spec.resources.requests["storage"]
        for c in core.list_namespaced_persistent_volume_claim(namespace).items
        if c.metadata.deletion_timestamp is None
    }


def test_a_deleted_buckets_claim_is_deleted_once_no_space_mounts_it(
    kube_cluster: ControlPlane,
    kube_namespace: str,
    home: Path,  # noqa: F811
) -> None:
    backend = KubernetesBackend(
        kube_cluster.api_client(), object_settings(kube_namespace, bucket_size_gib=2.5)
    )
    backend.prepare()
    core = client.CoreV1Api(kube_cluster.api_client())
    try:
        with Session(db.get_engine()) as session:
            owner = auth.get_or_create_user(session, "alice")
            gone = Bucket(owner_id=owner.id or 0, name="gone")
            kept = Bucket(owner_id=owner.id or 0, name="kept")
            session.add_all([gone, kept])
            session.commit()
            gone_name, kept_name = f"bucket-{gone.uid}", f"bucket-{kept.uid}"
            gone_uid = gone.uid
        space_uid = new_uid()
        mounts = (VolumeMount(gone_name, "/data"), VolumeMount(kept_name, "/keep"))
        backend.start(replace(backend_revision(space_uid), mounts=mounts))
        # Each claim asks for the setting (SPACEPORT_BUCKET_SIZE_GIB), not a constant.
        assert _claims(core, kube_namespace) == {
            volume_claim_name(gone_name): "2560Mi",
            volume_claim_name(kept_name): "2560Mi",
        }
        assert sorted(backend.volumes(), key=lambda v: v.name) == sorted(
            [KeptVolume(gone_name, in_use=True), KeptVolume(kept_name, in_use=True)],
            key=lambda v: v.name,
        )

        with Session(db.get_engine()) as session:
            row = session.exec(select(Bucket).where(Bucket.uid == gone_uid)).one()
            buckets.delete(session, "alice", auth.get_or_create_user(session, "alice"), row)
        swept = volume_sweep.sweep(backend)  # the Space's Deployment still names it
        assert swept.removed == [] and swept.in_use == [gone_name]
        assert volume_claim_name(gone_name) in _claims(core, kube_namespace)
        assert swept.measured == {}  # claims are not measured: the storage holds the quota

        backend.forget(space_uid)  # the Space is deleted: its Deployment and pods go
        apps = client.AppsV1Api(kube_cluster.api_client())
        until(
            "the Space's Deployment and pods gone",
            lambda: (
                not apps.list_namespaced_deployment(kube_namespace).items
                and not core.list_namespaced_pod(kube_namespace).items
            ),
            timeout=60,
        )
        assert volume_sweep.sweep(backend).removed == [gone_name]
        until(
            "the deleted bucket's claim gone",
            lambda: (
                not any(
                    c.metadata.name == volume_claim_name(gone_name)
                    for c in core.list_namespaced_persistent_volume_claim(kube_namespace).items
                )
            ),
            timeout=60,
        )
        # The bucket that exists keeps its claim, though nothing mounts it now.
        assert _claims(core, kube_namespace) == {volume_claim_name(kept_name): "2560Mi"}
        assert backend.volumes() == [KeptVolume(kept_name, in_use=False)]
        assert volume_sweep.sweep(backend).removed == []
    finally:
        backend.close()


def test_a_changed_quota_leaves_an_existing_claim_as_it_is(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    """An unbound claim's spec can't change: a start after the setting changed must still
    start, with the claim it had (new claims get the new size)."""
    core = client.CoreV1Api(kube_cluster.api_client())
    mounts = (VolumeMount(f"bucket-{new_uid()}", "/data"),)
    first = KubernetesBackend(
        kube_cluster.api_client(), object_settings(kube_namespace, bucket_size_gib=1)
    )
    first.prepare()
    try:
        first.start(replace(backend_revision(new_uid()), mounts=mounts))
    finally:
        first.close()
    bigger = KubernetesBackend(
        kube_cluster.api_client(), object_settings(kube_namespace, bucket_size_gib=4)
    )
    bigger.prepare()
    try:
        bigger.start(replace(backend_revision(new_uid()), mounts=mounts))
        assert _claims(core, kube_namespace) == {volume_claim_name(mounts[0].name): "1Gi"}
    finally:
        bigger.close()
