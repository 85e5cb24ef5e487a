"""A Space's volumes as its owner asks for them (huggingface_hub's `Volume`), checked and
stored on the Space (spec), and shown in the runtime and space info.

The wire shape is the Hub's: {"type", "source", "mountPath", "revision"?, "readOnly"?,
"path"?}. Served here: `bucket` (read-write unless readOnly) and `space` (another Space's
repo at a revision, always read-only). This platform hosts no models or datasets: those are
a 400 that says so."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from orchestrator.core.auth import Access, Principal, seats_of, space_access
from orchestrator.core.models import Space, TokenRole, User
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry
from orchestrator.volumes import buckets

APP_DIR = "/home/user/app"  # where the Space's own files are: never covered by a volume
_MAX_TEXT = 256  # a source, path or revision longer than this is no id we could hold
_FIELDS = {"type", "source", "mountPath", "revision", "readOnly", "path"}


class VolumeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Volume:
    type: str  # "bucket" | "space"
    source: str  # owner/name
    mount_path: str
    revision: str | None = None
    read_only: bool = False
    path: str | None = None  # a folder inside the bucket or repo
    # The source's uid (a bucket's: its data's name on the backend; a Space's: found again
    # after a move), so a renamed owner or a moved source keeps being mounted.
    uid: str | None = None

    def to_column(self) -> dict[str, Any]:
        data = self.to_wire()
        if self.uid is not None:
            data["uid"] = self.uid
        return data

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "source": self.source,
            "mountPath": self.mount_path,
        }
        if self.revision is not None:
            data["revision"] = self.revision
        data["readOnly"] = self.read_only
        if self.path is not None:
            data["path"] = self.path
        return data


def check_mount_path(path: str) -> str:
    """Absolute, normalised (no '..', no '//'), not '/', not over or under the app's files."""
    if not path.startswith("/") or len(path) > _MAX_TEXT:
        raise VolumeError(400, f"mountPath {path!r} must be an absolute path such as /data")
    parts = path.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts) and path != "/":
        raise VolumeError(400, f"mountPath {path!r} must not contain '.', '..' or '//'")
    if path == "/":
        raise VolumeError(400, "mountPath / would cover the whole container: pick a folder")
    if path == APP_DIR or path.startswith(APP_DIR + "/") or APP_DIR.startswith(path + "/"):
        raise VolumeError(400, f"mountPath {path!r} would cover the Space's files in {APP_DIR}")
    return path


def _check_sub_path(path: str | None) -> str | None:
    if path is None or path.strip("/") == "":
        return None
    clean = path.strip("/")
    if len(clean) > _MAX_TEXT or any(p in ("", ".", "..") for p in clean.split("/")):
        raise VolumeError(400, f"path {path!r} must be a folder inside the source, without '..'")
    return clean


def _text(item: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            raise VolumeError(400, f"each volume needs {key!r}")
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise VolumeError(400, f"volume {key!r} must be a string of at most {_MAX_TEXT} chars")
    return value


def _split_source(source: str, kind: str) -> tuple[str, str]:
    namespace, _, name = source.partition("/")
    if not namespace or not name or "/" in name:
        raise VolumeError(400, f"a {kind} volume's source is 'owner/name', not {source!r}")
    return namespace, name


def owner_reader(session: Session, space: Space) -> Principal:
    """The Space's owner as a reader: what a volume's source must stay readable by (the
    Space serves its files to visitors; whoever set the volume may lose access later)."""
    owner = session.get(User, space.owner_id)
    assert owner is not None  # users are never deleted
    return Principal(
        user=owner, role=TokenRole.READ, token_name="volumes", seats=seats_of(session, owner)
    )


def parse(session: Session, principal: Principal | None, space: Space, raw: Any) -> list[Volume]:
    """The volumes asked for, each checked: the shape, the limits, and that the caller may
    use each source (a source they can't see is the same 404 as one that doesn't exist)."""
    if not isinstance(raw, list):
        raise VolumeError(400, 'send {"volumes": [{"type", "source", "mountPath", ...}]}')
    most = get_settings().max_volumes_per_space
    if len(raw) > most:
        raise VolumeError(
            400, f"at most {most} volumes per Space (SPACEPORT_MAX_VOLUMES_PER_SPACE)"
        )
    if raw and space.sdk == "static":
        raise VolumeError(400, "static Spaces have no container to mount volumes in")
    volumes: list[Volume] = []
    owner = owner_reader(session, space)
    for item in raw:
        if not isinstance(item, dict) or set(item) - _FIELDS:
            raise VolumeError(400, f"a volume has only the fields {sorted(_FIELDS)}")
        volume = _one(session, principal, space, item)
        # The caller may read it; the Space's owner must too (an organisation's Space
        # does not mount a member's private bucket).
        try:
            _one(session, owner, space, {**item, "readOnly": True})
        except VolumeError as exc:
            raise VolumeError(
                403,
                f"{space.owner}, the Space's owner, can't read {volume.source}: "
                "a Space mounts only what its owner may read",
            ) from exc
        volumes.append(volume)
    paths = [v.mount_path for v in volumes]
    for a in paths:
        for b in paths:
            if a is not b and (a == b or b.startswith(a + "/")):
                raise VolumeError(400, f"mountPath {b!r} overlaps {a!r}: one volume per folder")
    return volumes


def _one(session: Session, principal: Principal | None, space: Space, item: dict) -> Volume:
    kind = _text(item, "type", required=True)
    source = _text(item, "source", required=True) or ""
    mount_path = check_mount_path(_text(item, "mountPath", required=True) or "")
    revision = _text(item, "revision")
    sub_path = _check_sub_path(_text(item, "path"))
    read_only = item.get("readOnly")
    if read_only is not None and not isinstance(read_only, bool):
        raise VolumeError(400, "readOnly is true or false")
    if kind in ("model", "dataset"):
        raise VolumeError(
            400,
            f"{kind} volumes can't be served: this platform hosts Spaces only, no models or "
            "datasets. Use a bucket, or another Space's files (type 'space')",
        )
    if kind == "bucket":
        if revision is not None:
            raise VolumeError(400, "a bucket has no revisions: leave 'revision' out")
        if sub_path is not None:
            raise VolumeError(400, "a bucket is mounted whole here: leave 'path' out")
        namespace, name = _split_source(source, "bucket")
        need = Access.READ if read_only else Access.WRITE
        try:
            owner, bucket = buckets.visible(session, principal, namespace, name, need)
        except buckets.BucketError as exc:
            raise VolumeError(exc.status, str(exc)) from exc
        full = buckets.bucket_id(owner, bucket)
        return Volume("bucket", full, mount_path, None, bool(read_only), sub_path, bucket.uid)
    if kind == "space":
        if read_only is False:
            raise VolumeError(400, "a Space's files are mounted read-only: leave readOnly out")
        namespace, name = _split_source(source, "space")
        other = registry.get_space(session, namespace, name)
        if other is None or space_access(principal, other) == Access.NONE:
            raise VolumeError(404, f"Repository not found: {source}")
        return Volume(
            "space", other.full_name, mount_path, revision or "main", True, sub_path, other.uid
        )
    raise VolumeError(400, f"volume type {kind!r} is not one of bucket, space, model, dataset")


def stored(space: Space) -> list[Volume]:
    if not space.volumes:
        return []
    return [
        Volume(
            type=v["type"],
            source=v["source"],
            mount_path=v["mountPath"],
            revision=v.get("revision"),
            read_only=bool(v.get("readOnly")),
            path=v.get("path"),
            uid=v.get("uid"),
        )
        for v in json.loads(space.volumes)
    ]


def to_column(volumes: list[Volume]) -> str | None:
    return json.dumps([v.to_column() for v in volumes]) if volumes else None


def wire(space: Space) -> list[dict[str, Any]] | None:
    """What the runtime and space info show: the Hub's shape, absent without volumes."""
    return [v.to_wire() for v in stored(space)] or None


def mount_dir(volume: Volume) -> str:
    """The folder inside the source a volume mounts (its `path`), '' for the whole."""
    return posixpath.normpath(volume.path) if volume.path else ""
