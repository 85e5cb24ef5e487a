"""Reading a Space's files the way huggingface_hub does: tree listings, paths-info, the
revision view of space_info, and `resolve` (file metadata on HEAD, content on GET).

Revisions and tree paths arrive percent-encoded with `safe=""` (`refs%2Fpr%2F1`,
`src%2Fapp.py`), and Starlette decodes `%2F` before routing, so routes whose URL holds a
revision *and* a path split the raw path themselves (see `_rev_and_path`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from sqlmodel import Session

from orchestrator import lfs, repo_tree, repos
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import HubError
from orchestrator.api.spaces import space_json
from orchestrator.api.timefmt import hub_time
from orchestrator.auth import Principal
from orchestrator.db import get_session
from orchestrator.models import Space
from orchestrator.repo_tree import Entry

router = APIRouter()

REVISION_NOT_FOUND = "RevisionNotFound"
ENTRY_NOT_FOUND = "EntryNotFound"
# refs/heads/a/b/c: the longest unencoded revision we try to split off a path.
MAX_REV_SEGMENTS = 5


def flag(value: str | None) -> bool:
    """Query booleans: httpx sends `true`, requests `True`, some clients `1`."""
    return (value or "").strip().lower() in ("1", "true", "yes")


def revision_not_found(space: Space, rev: str) -> HubError:
    return HubError(404, f"Invalid rev id: {rev} in {space.full_name}", REVISION_NOT_FOUND)


def entry_not_found(space: Space, path: str, sha: str, problem: str | None = None) -> HubError:
    message = f"{path} {problem or 'does not exist'} in {space.full_name}"
    error = HubError(404, message, ENTRY_NOT_FOUND)
    # Lets the client cache the file's absence for this commit.
    assert error.headers is not None
    error.headers["X-Repo-Commit"] = sha
    return error


def resolve(space: Space, rev: str) -> tuple[Path, str]:
    repo = repos.repo_path(space.owner, space.name)
    sha = repo_tree.resolve_revision(repo, rev)
    if sha is None:
        raise revision_not_found(space, rev)
    return repo, sha


def _raw_tail(request: Request, keyword: str) -> list[str]:
    """The still-encoded URL segments after .../spaces/{owner}/{name}/{keyword}/."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    segments = raw.split("/")
    # Counted from the route's own "spaces", so an owner or Space named like the keyword
    # can't confuse it.
    start = segments.index("spaces") + 3
    assert segments[start] == keyword
    return segments[start + 1 :]


def _rev_and_path(request: Request, space: Space, keyword: str) -> tuple[Path, str, str]:
    """(repo, commit, path) from the raw URL segments after `keyword` (`tree`, `resolve`).

    The client quotes the revision with safe="", so normally it is the first segment. A
    revision sent with bare slashes (`refs/pr/1/app.py`) is found by trying longer prefixes.
    """
    tail = _raw_tail(request, keyword)
    repo = repos.repo_path(space.owner, space.name)
    for count in range(1, min(len(tail), MAX_REV_SEGMENTS) + 1):
        rev = "/".join(unquote(s) for s in tail[:count])
        if sha := repo_tree.resolve_revision(repo, rev):
            return repo, sha, unquote("/".join(tail[count:])).strip("/")
    raise revision_not_found(space, unquote(tail[0]) if tail else "")


def _no_commits(space: Space) -> bool:
    return repos.resolve(repos.repo_path(space.owner, space.name), repos.DEPLOY_REF) is None


def _empty_main(space: Space, request: Request, keyword: str) -> bool:
    """A listing of main in a Space whose main has no commit yet (one created without
    files): empty, rather than an error, so that e.g. upload_folder(delete_patterns=...)
    works on it as on the Hub, where a new repo always has a first commit."""
    tail = _raw_tail(request, keyword)
    rev = unquote(tail[0]) if tail else ""
    return repo_tree.branch_ref(rev) == repos.DEPLOY_REF and _no_commits(space)


def servable(space: Space, session: Session, pointers: dict[str, tuple[str, int]]) -> set[str]:
    """Paths whose pointer names an object this Space has: those are served (and listed) as
    LFS files; any other pointer is just a small text file."""
    assert space.id is not None
    have = lfs.recorded(session, space.id, [oid for oid, _ in pointers.values()])
    return {
        path
        for path, (oid, size) in pointers.items()
        if have.get(oid) == size and lfs.has_object(oid, size)
    }


def entries_json(
    repo: Path,
    sha: str,
    space: Space,
    session: Session,
    entries: list[Entry],
    expand: bool = False,
) -> list[dict[str, object]]:
    pointers = repo_tree.pointers(repo, entries)
    lfs_paths = servable(space, session, pointers)
    items: list[dict[str, object]] = []
    for entry in entries:
        if entry.kind == "commit":
            continue  # submodules have no content to serve
        item: dict[str, object] = {
            "type": "file" if entry.kind == "blob" else "directory",
            "oid": entry.oid,
            "size": entry.size,
            "path": entry.path,
        }
        if entry.path in lfs_paths:
            oid, size = pointers[entry.path]
            item["size"] = size
            item["lfs"] = {"oid": oid, "size": size, "pointerSize": entry.size}
        if expand and (commit := repo_tree.last_commit(repo, sha, entry.path)):
            item["lastCommit"] = commit | {"date": _hub_date(commit["date"])}
        items.append(item)
    return items


def _hub_date(iso: str) -> str | None:
    return hub_time(datetime.fromisoformat(iso))


@router.get("/api/spaces/{owner}/{name}/tree/{rest:path}")
def list_tree(
    owner: str,
    name: str,
    request: Request,
    recursive: str | None = None,
    expand: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[dict[str, object]]:
    """list_repo_tree / list_repo_files. One page: no `Link` header, the client stops there."""
    space = visible_space(session, principal, owner, name)
    if _empty_main(space, request, "tree"):
        return []
    repo, sha, path = _rev_and_path(request, space, "tree")
    kind = repo_tree.object_type(repo, sha, path)
    if kind != "tree":
        raise entry_not_found(space, path, sha, "is a file, not a folder" if kind else None)
    entries = repo_tree.list_tree(repo, sha, path, recursive=flag(recursive))
    return entries_json(repo, sha, space, session, entries, expand=flag(expand))


async def form_fields(request: Request) -> dict[str, list[str]]:
    """An urlencoded body, parsed here: python-multipart (FastAPI's Form) isn't installed."""
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError as exc:
        raise HubError(400, "the form body is not valid UTF-8") from exc
    return parse_qs(text, keep_blank_values=True)


@router.post("/api/spaces/{owner}/{name}/paths-info/{rev:path}")
def paths_info(
    owner: str,
    name: str,
    rev: str,
    fields: dict[str, list[str]] = Depends(form_fields),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[dict[str, object]]:
    """get_paths_info: entries at the given paths; unknown paths are left out."""
    space = visible_space(session, principal, owner, name)
    if repo_tree.branch_ref(rev) == repos.DEPLOY_REF and _no_commits(space):
        return []
    repo, sha = resolve(space, rev)
    paths = fields.get("paths", []) + fields.get("paths[]", [])
    entries = repo_tree.path_entries(repo, sha, paths)
    expand = flag((fields.get("expand") or ["false"])[0])
    return entries_json(repo, sha, space, session, entries, expand=expand)


@router.get("/api/spaces/{owner}/{name}/revision/{rev:path}")
def space_revision(
    owner: str,
    name: str,
    rev: str,
    blobs: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> dict[str, object]:
    """space_info(revision=...), and what snapshot_download asks first: `sha` is the commit
    the revision resolves to, `siblings` its files."""
    space = visible_space(session, principal, owner, name)
    repo, sha = resolve(space, rev)
    files = [e for e in repo_tree.list_tree(repo, sha, recursive=True) if e.kind == "blob"]
    siblings: list[dict[str, object]] = []
    if flag(blobs):
        for item in entries_json(repo, sha, space, session, files):
            sibling: dict[str, object] = {
                "rfilename": item["path"],
                "size": item["size"],
                "blobId": item["oid"],
            }
            if isinstance(info := item.get("lfs"), dict):
                sibling["lfs"] = {
                    "size": info["size"],
                    "sha256": info["oid"],
                    "pointerSize": info["pointerSize"],
                }
            siblings.append(sibling)
    else:
        siblings = [{"rfilename": e.path} for e in files]
    return space_json(space) | {"sha": sha, "siblings": siblings}


@router.api_route("/spaces/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_file(
    owner: str,
    name: str,
    request: Request,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> Response:
    """hf_hub_download's HEAD (metadata: commit, etag, size) and GET (content).

    LFS files are served from the object store, with the sha256 as ETag and the
    X-Linked-* headers the Hub puts on its CDN redirects; regular files have their git blob
    id as ETag. Never any Xet header: that would switch the client to Xet downloads.
    """
    space = visible_space(session, principal, owner, name)
    repo, sha, path = _rev_and_path(request, space, "resolve")
    found = repo_tree.path_entries(repo, sha, [path]) if path else []
    if not found or found[0].kind != "blob":
        raise entry_not_found(space, path, sha)
    entry = found[0]
    headers = {"X-Repo-Commit": sha}
    pointer = repo_tree.pointers(repo, [entry]).get(entry.path)
    if pointer and entry.path in servable(space, session, {entry.path: pointer}):
        oid, size = pointer
        headers |= {"ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(size)}
        # FileResponse also answers the Range requests of resumed downloads.
        return FileResponse(
            lfs.store_path(oid), headers=headers, media_type="application/octet-stream"
        )
    # Regular blobs ignore Range: the client copes with a full 200 by truncating.
    headers["ETag"] = f'"{entry.oid}"'
    if request.method == "HEAD":
        headers["Content-Length"] = str(entry.size)
        return Response(headers=headers, media_type="application/octet-stream")
    return Response(
        repo_tree.read_blob(repo, entry.oid),
        headers=headers,
        media_type="application/octet-stream",
    )
