"""Volumes of a Space (set_space_volumes, delete_space_volumes) and the buckets they mount
(create_bucket, bucket_info, list_buckets, delete_bucket): huggingface_hub's calls. And the
signed tar of another Space's files a Kubernetes pod's init container fetches for a
`space` volume (orchestrator/volumes/exports.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import FileResponse
from sqlmodel import Session, select
from starlette.background import BackgroundTask

from orchestrator.api import bodies, wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, REPO_NOT_FOUND, HubError
from orchestrator.api.spaces import runtime_json
from orchestrator.api.timefmt import hub_time
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.db import get_session
from orchestrator.core.events import ACTOR_SYSTEM
from orchestrator.core.models import Bucket, Space, User
from orchestrator.core.settings import get_settings
from orchestrator.volumes import buckets, exports
from orchestrator.volumes import lifecycle as volume_lifecycle
from orchestrator.volumes import mounts as volume_mounts
from orchestrator.volumes import spec as volume_spec
from sandbox.backend import SpaceFiles

router = APIRouter(responses=ERROR_RESPONSES)


def _actor(principal: Principal | None) -> str:
    return principal.user.name if principal is not None else ACTOR_SYSTEM


def checked(
    session: Session, principal: Principal | None, space: Space, raw: list[Any] | None
) -> list[volume_spec.Volume]:
    """Volumes sent as the Hub's dicts, checked for `space`; a refusal is the one error
    shape (a source the caller can't see: the 404 of a missing repo)."""
    try:
        return volume_spec.parse(session, principal, space, raw or [])
    except volume_spec.VolumeError as exc:
        code = REPO_NOT_FOUND if exc.status == 404 else None
        raise HubError(exc.status, str(exc), code) from exc


def set_from_body(
    session: Session, principal: Principal | None, space: Space, raw: list[Any], actor: str
) -> None:
    """Check and store volumes (set_space_volumes, create_repo); nothing written if refused."""
    volumes = checked(session, principal, space, raw)
    volume_lifecycle.set_volumes(session, space, volumes, actor=actor)


@router.put("/api/spaces/{owner}/{name}/volumes", response_model=wire.SpaceRuntime)
def set_volumes(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    checked = bodies.check(bodies.Volumes, body)
    space = visible_space(session, principal, owner, name, need=Access.WRITE)
    raw = [v.model_dump(exclude_none=True) for v in checked.volumes]
    set_from_body(session, principal, space, raw, _actor(principal))
    session.refresh(space)
    return runtime_json(space)


@router.delete("/api/spaces/{owner}/{name}/volumes", response_model=wire.SpaceRuntime)
def delete_volumes(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    space = visible_space(session, principal, owner, name, need=Access.WRITE)
    if not space.volumes:
        raise HubError(400, f"{space.full_name} has no volumes to remove")
    volume_lifecycle.set_volumes(session, space, [], actor=_actor(principal))
    session.refresh(space)
    return runtime_json(space)


# -- another Space's files, for a pod's init container (Kubernetes) ----------------------


@router.get(exports.ROUTE + "/{uid}/{sha}", include_in_schema=False)
def space_files(
    uid: str,
    sha: str,
    path: str = "",
    mounted_by: str = Query("", alias="for"),
    expires: str = "",
    sig: str = "",
    session: Session = Depends(get_session),
) -> FileResponse:
    """The tar of one folder of another Space's commit, for exactly the URL the controller
    signed (orchestrator/volumes/exports.py): no token, the signature is the permission;
    and the Space it was signed for must still mount the source, whose owner may still
    read it (a source made private since is the 404 of a missing one)."""
    files = SpaceFiles(uid, sha, path)
    try:
        exports.check(files, mounted_by, expires, sig)
    except exports.ExportRefused as exc:
        raise HubError(exc.status, str(exc)) from exc
    gone = HubError(404, "the Space these files are from is gone")
    other = session.exec(select(Space).where(Space.uid == uid)).first()
    mounter = session.exec(select(Space).where(Space.uid == mounted_by)).first()
    if other is None or other.id is None or mounter is None:
        raise gone
    if not any(v.type == "space" and v.uid == uid for v in volume_spec.stored(mounter)):
        raise HubError(403, f"{mounter.full_name} no longer mounts these files")
    if space_access(volume_spec.owner_reader(session, mounter), other) == Access.NONE:
        raise gone
    try:
        root = volume_mounts.export(other.id, other.uid, other.owner, other.name, sha)
    except Exception as exc:  # noqa: BLE001 - a commit no longer in the repo (a force push + gc)
        raise HubError(404, f"{other.full_name} has no commit {sha[:12]} any more") from exc
    try:
        tar = exports.write_tar(root, path)
    except exports.ExportRefused as exc:
        raise HubError(exc.status, f"{other.full_name}@{sha[:7]}: {exc}") from exc
    return FileResponse(
        tar,
        media_type="application/x-tar",
        background=BackgroundTask(tar.unlink, missing_ok=True),
    )


# -- buckets -----------------------------------------------------------------------------


def _bucket_error(exc: buckets.BucketError) -> HubError:
    # 404 carries RepoNotFound: huggingface_hub then raises BucketNotFoundError.
    return HubError(exc.status, str(exc), REPO_NOT_FOUND if exc.status == 404 else None)


def _info(owner: User, bucket: Bucket) -> wire.BucketInfo:
    return wire.BucketInfo(
        id=buckets.bucket_id(owner, bucket),
        private=bucket.private,
        created_at=hub_time(bucket.created_at) or "",
        size=bucket.size_bytes or 0,
        size_quota=buckets.quota_bytes(),
        size_measured_at=hub_time(bucket.size_measured_at),
        over_quota=buckets.over_quota(bucket),
    )


@router.post("/api/buckets/{namespace}/{name}", response_model=wire.BucketCreated)
def create_bucket(
    namespace: str,
    name: str,
    body: dict[str, Any] = Body(default={}),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.BucketCreated:
    checked = bodies.check(bodies.CreateBucket, body)
    private = checked.visibility == "private" if checked.visibility else bool(checked.private)
    try:
        owner, bucket = buckets.create(session, principal, namespace, name, private)
    except buckets.BucketError as exc:
        raise _bucket_error(exc) from exc
    full = buckets.bucket_id(owner, bucket)
    url = f"{get_settings().public_url.rstrip('/')}/buckets/{full}"
    return wire.BucketCreated(url=url, id=full)


@router.get("/api/buckets/{namespace}/{name}", response_model=wire.BucketInfo)
def bucket_info(
    namespace: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.BucketInfo:
    try:
        owner, bucket = buckets.visible(session, principal, namespace, name, Access.READ)
    except buckets.BucketError as exc:
        raise _bucket_error(exc) from exc
    return _info(owner, bucket)


@router.get("/api/buckets/{namespace}", response_model=list[wire.BucketInfo])
def list_buckets(
    namespace: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.BucketInfo]:
    return [_info(owner, b) for owner, b in buckets.listed(session, principal, namespace)]


@router.delete("/api/buckets/{namespace}/{name}")
def delete_bucket(
    namespace: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> dict[str, Any]:
    try:
        owner, bucket = buckets.visible(session, principal, namespace, name, Access.WRITE)
        buckets.delete(session, _actor(principal), owner, bucket)
    except buckets.BucketError as exc:
        raise _bucket_error(exc) from exc
    return {}
