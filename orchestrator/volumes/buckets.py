"""Buckets: a user's or organisation's writable storage, what a `bucket` volume mounts.

Only what huggingface_hub's buckets API calls: create, info, list, delete. The files live
on the backend (a Docker volume, a PersistentVolumeClaim) named by the bucket's uid: a
deleted bucket's data stays there until the controller's sweep removes it, once no instance
mounts it (orchestrator/controller/volume_sweep.py), and a new bucket of the same name is a
new uid, so it never sees the old one's files. The size quota is SPACEPORT_BUCKET_SIZE_GIB:
the sweep writes what each bucket takes (`size_bytes`) where the backend measures it."""

from __future__ import annotations

import json
import re

from sqlalchemy import func
from sqlmodel import Session, col, select

from orchestrator.core import events
from orchestrator.core.auth import Access, Principal, bucket_access
from orchestrator.core.models import Bucket, Space, User
from orchestrator.core.organizations import find_name
from orchestrator.core.settings import get_settings

# The Hub's repo-name rule: letters, digits, '-', '_', '.', not starting or ending with
# '-' or '.', no '--' or '..', at most 96 characters.
_NAME = re.compile(r"^(?![.-])(?!.*(--|\.\.))[A-Za-z0-9._-]{1,96}(?<![.-])$")


class BucketError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def not_found(bucket_id: str) -> BucketError:
    # The same answer for a missing bucket and one the caller may not see.
    return BucketError(404, f"Bucket not found: {bucket_id}")


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise BucketError(
            400,
            f"invalid bucket name {name!r}: use letters, digits, '-', '_' and '.' "
            "(1-96 characters, not starting or ending with '-' or '.', no '--' or '..')",
        )


def bucket_id(owner: User, bucket: Bucket) -> str:
    return f"{owner.name}/{bucket.name}"


def find(session: Session, namespace: str, name: str) -> tuple[User, Bucket] | None:
    owner = find_name(session, namespace)
    if owner is None:
        return None
    bucket = session.exec(
        select(Bucket).where(Bucket.owner_id == owner.id, func.lower(Bucket.name) == name.lower())
    ).first()
    return (owner, bucket) if bucket is not None else None


def visible(
    session: Session, principal: Principal | None, namespace: str, name: str, need: Access
) -> tuple[User, Bucket]:
    """The bucket if the caller may use it as asked; else 404, or 403 for a reader who
    asked to write."""
    found = find(session, namespace, name)
    full = f"{namespace}/{name}"
    if found is None:
        raise not_found(full)
    owner, bucket = found
    access = bucket_access(principal, owner.id or 0, bucket.private)
    if access == Access.NONE:
        raise not_found(full)
    if access.value < need.value:
        raise BucketError(403, f"you can read {full} but not write to it")
    return owner, bucket


def create(
    session: Session, principal: Principal | None, namespace: str, name: str, private: bool
) -> tuple[User, Bucket]:
    """A new bucket in the caller's namespace ('me' is it) or an organisation where they
    write; committed. 409 if the name is taken (what `exist_ok` reads)."""
    if principal is None or not principal.can_write:
        raise BucketError(401, "creating a bucket needs a write token")
    owner = principal.user if namespace == "me" else find_name(session, namespace)
    if owner is None or bucket_access(principal, owner.id or 0, True) != Access.WRITE:
        raise BucketError(403, f"you can't create buckets in {namespace}")
    check_name(name)
    if find(session, owner.name, name) is not None:
        raise BucketError(409, f"bucket {owner.name}/{name} already exists")
    most = get_settings().max_buckets_per_owner
    owned = session.exec(
        select(func.count()).select_from(Bucket).where(Bucket.owner_id == owner.id)
    ).one()
    if owned >= most:
        raise BucketError(
            429,
            f"{owner.name} already owns {owned} buckets, the most allowed "
            "(SPACEPORT_MAX_BUCKETS_PER_OWNER): delete one first",
        )
    bucket = Bucket(owner_id=owner.id or 0, name=name, private=private)
    session.add(bucket)
    session.flush()
    events.record(
        session,
        events.EventKind.BUCKET_CREATED,
        principal.user.name,
        bucket=f"{owner.name}/{name}",
        uid=bucket.uid,
        private=private,
    )
    session.commit()
    session.refresh(bucket)
    return owner, bucket


def delete(session: Session, actor: str, owner: User, bucket: Bucket) -> None:
    """Delete the row, with its event (what the sweep reads as the go-ahead to remove the
    data); committed. 409 while a Space's volumes name it."""
    users = [s.full_name for s in spaces_mounting(session, bucket.uid)]
    if users:
        raise BucketError(409, f"{', '.join(users[:5])} mount this bucket: remove the volume first")
    events.record(
        session,
        events.EventKind.BUCKET_DELETED,
        actor,
        bucket=bucket_id(owner, bucket),
        uid=bucket.uid,
    )
    session.delete(bucket)
    session.commit()


def spaces_mounting(session: Session, uid: str) -> list[Space]:
    """The Spaces whose volumes (spec) name the bucket `uid`."""
    with_volumes = session.exec(select(Space).where(col(Space.volumes).is_not(None)))
    return [
        s for s in with_volumes if any(v.get("uid") == uid for v in json.loads(s.volumes or "[]"))
    ]


def quota_bytes() -> int:
    """Each bucket's size quota (SPACEPORT_BUCKET_SIZE_GIB) in bytes."""
    return int(get_settings().bucket_size_gib * 2**30)


def over_quota(bucket: Bucket) -> bool:
    """Measured over its quota (never, while unmeasured)."""
    return bucket.size_bytes is not None and bucket.size_bytes > quota_bytes()


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def listed(
    session: Session, principal: Principal | None, namespace: str
) -> list[tuple[User, Bucket]]:
    owner = principal.user if namespace == "me" and principal else find_name(session, namespace)
    if owner is None:
        return []
    rows = session.exec(select(Bucket).where(Bucket.owner_id == owner.id).order_by(Bucket.name))
    return [
        (owner, b)
        for b in rows
        if bucket_access(principal, owner.id or 0, b.private) != Access.NONE
    ]
