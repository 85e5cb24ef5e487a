"""space_info / repo_info: GET /api/spaces/{id} and GET .../revision/{rev}, as the Hub
answers them: the Space with its files as `siblings` (with `?blobs=true` each file's size,
blob id and LFS metadata, which `files_metadata=True` asks), and `expand=` honoured
(orchestrator/api/expand.py).

The file list is one `git ls-tree` of the commit, at most SPACEPORT_MAX_TREE_ENTRIES files;
it is computed only when `siblings` is wanted, under the same per-client listing slots as
tree listings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from orchestrator.api import expand, files, wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.spaces import space_json
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.limits import space_bytes
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import store as repos
from orchestrator.repos import tree as repo_tree

router = APIRouter(prefix="/api/spaces", responses=ERROR_RESPONSES)


def siblings(
    space: Space, session: Session, repo: Path, sha: str, blobs: bool
) -> list[wire.Sibling] | None:
    """The files of commit `sha`, or None when there are more than max_tree_entries. With
    `blobs`, each with its size and blob id, and its LFS object for LFS files (`sha256`
    here, where the tree says `oid`)."""
    found = repo_tree.files_at(repo, sha, get_settings().max_tree_entries)
    if found is None:
        return None
    if not blobs:
        return [wire.Sibling(rfilename=entry.path) for entry in found]
    listed: list[wire.Sibling] = []
    for item in files.entries_json(repo, sha, space, session, found):
        lfs = item.lfs
        listed.append(
            wire.Sibling(
                rfilename=item.path,
                size=item.size,
                blob_id=item.oid,
                lfs=wire.SiblingLfs(size=lfs.size, sha256=lfs.oid, pointer_size=lfs.pointer_size)
                if lfs
                else None,
            )
        )
    return listed


def _details(
    space: Space,
    session: Session,
    sha: str | None,
    files_of: list[wire.Sibling] | None,
    wanted: set[str] | None,
) -> dict[str, Any]:
    """The answer with the Hub's names: everything by default, only `wanted` with expand."""
    base = space_json(space).model_dump(by_alias=False) | {"sha": sha}
    extra: dict[str, Any] = {"siblings": files_of}
    if wanted is not None:
        # Properties Spaceport has no use for, with the values of a Space that has none.
        extra |= {
            "models": [],
            "datasets": [],
            "region": "us",
            "resource_group": None,
            "trending_score": 0,
            "xet_enabled": False,
        }
        if "usedStorage" in wanted:
            extra["used_storage"] = space_bytes(session, space)
    answer = wire.SpaceDetails(**(base | extra)).model_dump(mode="json")
    if wanted is None:
        return answer
    if "resourceGroup" in wanted:
        answer["resourceGroup"] = None  # the Hub's null: no resource group
    return expand.only(answer, wanted)


def _wants_siblings(wanted: set[str] | None) -> bool:
    return wanted is None or "siblings" in wanted


def expanded(space: Space, session: Session, request: Request, wanted: set[str]) -> dict[str, Any]:
    """One item of list_spaces(expand=...): main's files only when `siblings` is asked."""
    repo = repos.repo_path(space.owner, space.name)
    sha = repos.resolve(repo, repos.DEPLOY_REF)
    files_of: list[wire.Sibling] | None = None
    if "siblings" in wanted:
        files_of = []
        if sha is not None:
            with files.listing_slot(request):
                files_of = siblings(space, session, repo, sha, blobs=False)
    return _details(space, session, sha or space.head_sha, files_of, wanted)


@router.get("/{owner}/{name}", response_model=wire.SpaceDetails)
def space_info(
    owner: str,
    name: str,
    request: Request,
    blobs: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> JSONResponse:
    """space_info, repo_info, repo_exists; gradio_client reads `host` and `private`.
    `siblings` are main's files ([] before main's first commit)."""
    wanted = expand.asked(request)
    space = visible_space(session, principal, owner, name)
    repo = repos.repo_path(space.owner, space.name)
    sha = repos.resolve(repo, repos.DEPLOY_REF)
    files_of: list[wire.Sibling] | None = None
    if _wants_siblings(wanted):
        if sha is None:
            files_of = []
        else:
            with files.listing_slot(request):
                files_of = siblings(space, session, repo, sha, files.flag(blobs))
    return JSONResponse(_details(space, session, sha or space.head_sha, files_of, wanted))


@router.get("/{owner}/{name}/revision/{rev:path}", response_model=wire.SpaceRevision)
def space_revision(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    blobs: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> JSONResponse:
    """space_info(revision=...), and what snapshot_download asks first: `sha` is the commit
    the revision resolves to, `siblings` its files (a 413 past max_tree_entries: the file
    list is the point of this call)."""
    wanted = expand.asked(request)
    space = visible_space(session, principal, owner, name)
    repo, sha = files.resolve(space, rev)
    files_of: list[wire.Sibling] | None = None
    if _wants_siblings(wanted):
        with files.listing_slot(request):
            files_of = siblings(space, session, repo, sha, files.flag(blobs))
        if files_of is None:
            most = get_settings().max_tree_entries
            raise HubError(
                413,
                f"{space.full_name} has more than {most} files at {rev} "
                "(SPACEPORT_MAX_TREE_ENTRIES): list them page by page with list_repo_tree",
            )
    return JSONResponse(_details(space, session, sha, files_of, wanted))
