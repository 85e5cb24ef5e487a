"""A Space's volumes as the backend mounts them (sandbox.backend.VolumeMount).

A bucket is named by its uid: the backend keeps its data (a Docker volume, a claim) under
that name, so it survives restarts, rebuilds, sleep and moves of the Space. Another Space's
files are the commit its revision names, exported once per commit under
$SPACEPORT_HOME/volumes/spaces/{uid}/{sha} (LFS files resolved) and bound read-only; a push
to that revision is a new commit, so a new mount and a new revision of this Space."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from sqlmodel import Session, select

from orchestrator.core.auth import Access, Principal, bucket_access, space_access
from orchestrator.core.models import Bucket, Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.repos import tree as repo_tree
from orchestrator.spaces import registry
from orchestrator.volumes import buckets
from orchestrator.volumes.spec import Volume, owner_reader, stored
from sandbox.backend import SpaceFiles, VolumeMount


class MountError(Exception):
    """A volume that can't be mounted now (its source is gone): the Space's runtime error."""


def bucket_volume_name(uid: str) -> str:
    return f"bucket-{uid}"


def space_mounts(session: Session, space: Space) -> tuple[VolumeMount, ...]:
    """The Space's volumes as mounts, each source checked again now: it must still exist
    and its owner (the Space's, not whoever set the volume) may still read it, so a source
    made private later is not served to a Space whose owner can't see it."""
    volumes = stored(space)
    if not volumes:
        return ()
    reader = owner_reader(session, space)
    mounts = []
    for volume in volumes:
        if volume.type == "bucket" and volume.uid:
            bucket = session.exec(select(Bucket).where(Bucket.uid == volume.uid)).first()
            if (
                bucket is None
                or bucket_access(reader, bucket.owner_id, bucket.private) == Access.NONE
            ):
                raise MountError(
                    f"the bucket {volume.source} mounted at {volume.mount_path} is gone"
                )
            mounts.append(
                VolumeMount(
                    bucket_volume_name(volume.uid),
                    volume.mount_path,
                    volume.read_only,
                    over_quota=buckets.over_quota(bucket),  # read-only from the next start
                )
            )
        elif volume.type == "space":
            mounts.append(_space_files(session, reader, volume))
    return tuple(mounts)


def quota_notice(session: Session, space: Space) -> str | None:
    """Why a bucket the Space mounts is read-only from its next start (a status the
    controller writes, shown as the runtime's volumeNotice), and what to do; None when each
    is within its quota (or unmeasured). The measure is the controller's sweep: on Docker a
    bucket is not stopped from growing past its quota between two sweeps."""
    notes = []
    for volume in stored(space):
        if volume.type != "bucket" or not volume.uid or volume.read_only:
            continue
        bucket = session.exec(select(Bucket).where(Bucket.uid == volume.uid)).first()
        if bucket is None or not buckets.over_quota(bucket) or bucket.size_bytes is None:
            continue
        notes.append(
            f"The bucket {volume.source} at {volume.mount_path} holds "
            f"{buckets.gib(bucket.size_bytes)}, over its {buckets.gib(buckets.quota_bytes())} "
            "quota (SPACEPORT_BUCKET_SIZE_GIB): it is mounted read-only from the Space's next "
            "start until it is back under. Delete files from it (from a Space that still has "
            "it writable), or ask the operator to raise SPACEPORT_BUCKET_SIZE_GIB."
        )
    return " ".join(notes) or None


def _space_files(session: Session, reader: Principal, volume: Volume) -> VolumeMount:
    namespace, _, name = volume.source.partition("/")
    other = (
        session.exec(select(Space).where(Space.uid == volume.uid)).first()
        if volume.uid
        else registry.get_space(session, namespace, name)
    )
    if other is None or space_access(reader, other) == Access.NONE:
        raise MountError(f"the Space {volume.source} mounted at {volume.mount_path} is gone")
    repo = repos.repo_path(other.owner, other.name)
    sha = repo_tree.resolve_revision(repo, volume.revision or "main")
    if sha is None:
        raise MountError(
            f"{volume.source} has no revision {volume.revision!r} to mount at {volume.mount_path}"
        )
    root = export(other.id or 0, other.uid, other.owner, other.name, sha)
    source = root / volume.path if volume.path else root
    if not source.is_dir():
        raise MountError(f"{volume.source}@{sha[:7]} has no folder {volume.path!r}")
    return VolumeMount(
        f"space-{other.uid}-{sha[:12]}",
        volume.mount_path,
        True,
        source_dir=str(source),
        files=SpaceFiles(other.uid, sha, volume.path or ""),
    )


def export(space_id: int, uid: str, owner: str, name: str, sha: str) -> Path:
    """The commit's files on disk, readable by the Space's user; made once per commit (a
    temporary folder renamed into place, so a half-written export is never mounted)."""
    target = get_settings().home / "volumes" / "spaces" / uid / sha
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tar_bytes = lfs.smudge_tar(space_id, repos.archive(repos.repo_path(owner, name), sha))
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            tar.extractall(staging, filter="data")
        for folder, _dirs, files in os.walk(staging):
            os.chmod(folder, 0o755)  # the Space runs as uid 1000, the export is ours
            for f in files:
                path = Path(folder, f)
                if not path.is_symlink():
                    os.chmod(path, 0o644)
        os.chmod(staging, 0o755)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
