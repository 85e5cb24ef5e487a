"""Reading a Space's files the way huggingface_hub does: tree listings, paths-info and
`resolve` (file metadata on HEAD, content on GET).

Revisions and tree paths arrive percent-encoded with `safe=""` (`refs%2Fpr%2F1`,
`src%2Fapp.py`), and Starlette decodes `%2F` before routing, so routes whose URL holds a
revision *and* a path split the raw path themselves (see `_rev_and_path`).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlmodel import Session

from orchestrator.api import wire
from orchestrator.api.deps import current_principal, origin, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.timefmt import hub_time
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.limits import TOO_MANY, KeyedLimiter, TooMany
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.repos import tree as repo_tree
from orchestrator.repos.tree import Entry

router = APIRouter(responses=ERROR_RESPONSES)

_downloads = KeyedLimiter()
_listings = KeyedLimiter()

REVISION_NOT_FOUND = "RevisionNotFound"
ENTRY_NOT_FOUND = "EntryNotFound"


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


def raw_tail(request: Request, keyword: str) -> list[str]:
    """The still-encoded URL segments after .../spaces/{owner}/{name}/{keyword}/ (the API's
    and the Files pages' URLs alike)."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    segments = raw.split("/")
    # Counted from the route's own "spaces", so an owner or Space named like the keyword
    # can't confuse it.
    start = segments.index("spaces") + 3
    assert segments[start] == keyword
    return segments[start + 1 :]


def _rev_and_path(request: Request, space: Space, keyword: str) -> tuple[Path, str, str]:
    """(repo, commit, path) from the raw URL segments after `keyword` (`tree`, `resolve`),
    split by repo_tree.revision_and_path."""
    tail = raw_tail(request, keyword)
    repo = repos.repo_path(space.owner, space.name)
    found = repo_tree.revision_and_path(repo, tail)
    if found is None:
        raise revision_not_found(space, unquote(tail[0]) if tail else "")
    _rev, sha, path = found
    return repo, sha, path


def _no_commits(space: Space) -> bool:
    return repos.resolve(repos.repo_path(space.owner, space.name), repos.DEPLOY_REF) is None


def _empty_main(space: Space, request: Request, keyword: str) -> bool:
    """A listing of main in a Space whose main has no commit yet (one created without
    files): empty, rather than an error, so that e.g. upload_folder(delete_patterns=...)
    works on it as on the Hub, where a new repo always has a first commit."""
    tail = raw_tail(request, keyword)
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
) -> list[wire.TreeEntry]:
    pointers = repo_tree.pointers(repo, entries)
    lfs_paths = servable(space, session, pointers)
    items: list[wire.TreeEntry] = []
    for entry in entries:
        if entry.kind == "commit":
            continue  # submodules have no content to serve
        item = wire.TreeEntry(
            type="file" if entry.kind == "blob" else "directory",
            oid=entry.oid,
            size=entry.size,
            path=entry.path,
        )
        if entry.path in lfs_paths:
            oid, size = pointers[entry.path]
            item.size = size
            item.lfs = wire.EntryLfs(oid=oid, size=size, pointer_size=entry.size)
        if expand and (commit := repo_tree.last_commit(repo, sha, entry.path)):
            item.last_commit = wire.LastCommit(
                id=commit["id"], title=commit["title"], date=_hub_date(commit["date"])
            )
        items.append(item)
    return items


def _hub_date(iso: str) -> str | None:
    return hub_time(datetime.fromisoformat(iso))


def page_size(expand: bool, asked: int | None) -> int:
    """Entries per page: the Hub's 1000, or 50 with expand (each entry then costs a
    `git log`); a client may ask for fewer."""
    most = get_settings().max_tree_page
    most = max(1, most // 20) if expand else most
    return most if asked is None else max(1, min(asked, most))


def _cursor(sha: str, offset: int) -> str:
    # The commit rides along, so every page lists the same tree even if the branch moves.
    return base64.urlsafe_b64encode(f"{sha}:{offset}".encode()).decode().rstrip("=")


def _from_cursor(repo: Path, cursor: str) -> tuple[str, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        sha, _, offset = text.partition(":")
        if repo_tree.SHA_PATTERN.match(sha) and repos.resolve(repo, sha) == sha:
            return sha, int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise HubError(400, f"Invalid cursor {cursor!r}: use the Link header of the previous page")


def _next_link(request: Request, cursor: str) -> str:
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    return f'<{origin(request)}{raw}?{urlencode(query + [("cursor", cursor)])}>; rel="next"'


@router.get("/api/spaces/{owner}/{name}/tree/{rest:path}", response_model=list[wire.TreeEntry])
def list_tree(
    owner: str,
    name: str,
    request: Request,
    response: Response,
    recursive: str | None = None,
    expand: str | None = None,
    cursor: str | None = None,
    limit: int | None = Query(default=None, ge=1),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.TreeEntry]:
    """list_repo_tree / list_repo_files, a page at a time: a `Link: <...>; rel="next"`
    header names the next page while there is one, as on the Hub (the client follows it)."""
    space = visible_space(session, principal, owner, name)
    if _empty_main(space, request, "tree"):
        return []
    with listing_slot(request):
        return _tree_page(request, response, space, session, recursive, expand, cursor, limit)


def _tree_page(
    request: Request,
    response: Response,
    space: Space,
    session: Session,
    recursive: str | None,
    expand: str | None,
    cursor: str | None,
    limit: int | None,
) -> list[wire.TreeEntry]:
    repo, sha, path = _rev_and_path(request, space, "tree")
    offset = 0
    if cursor:
        sha, offset = _from_cursor(repo, cursor)
    kind = repo_tree.object_type(repo, sha, path)
    if kind != "tree":
        raise entry_not_found(space, path, sha, "is a file, not a folder" if kind else None)
    size = page_size(flag(expand), limit)
    entries, more = repo_tree.tree_page(repo, sha, path, flag(recursive), offset, size)
    if more:
        response.headers["Link"] = _next_link(request, _cursor(sha, offset + len(entries)))
    return entries_json(repo, sha, space, session, entries, expand=flag(expand))


async def form_fields(request: Request) -> dict[str, list[str]]:
    """An urlencoded body, parsed here: python-multipart (FastAPI's Form) isn't installed."""
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError as exc:
        raise HubError(400, "the form body is not valid UTF-8") from exc
    return parse_qs(text, keep_blank_values=True)


@router.post(
    "/api/spaces/{owner}/{name}/paths-info/{rev:path}", response_model=list[wire.TreeEntry]
)
def paths_info(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    fields: dict[str, list[str]] = Depends(form_fields),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.TreeEntry]:
    """get_paths_info: entries at the given paths; unknown paths are left out."""
    space = visible_space(session, principal, owner, name)
    if repo_tree.branch_ref(rev) == repos.DEPLOY_REF and _no_commits(space):
        return []
    repo, sha = resolve(space, rev)
    paths = fields.get("paths", []) + fields.get("paths[]", [])
    expand = flag((fields.get("expand") or ["false"])[0])
    if len(paths) > (most := page_size(expand, None)):
        raise HubError(
            413,
            f"{len(paths)} paths in one paths-info request; at most {most} "
            f"({'with' if expand else 'without'} expand): ask in smaller batches",
        )
    with listing_slot(request):
        entries = repo_tree.path_entries(repo, sha, paths)
        return entries_json(repo, sha, space, session, entries, expand=expand)


# One route per method: each gets its own OpenAPI operation id.
@router.get("/spaces/{owner}/{name}/resolve/{rest:path}")
@router.head("/spaces/{owner}/{name}/resolve/{rest:path}")
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
    # Streamed from git as it reads the blob: a 200 MB file never sits in memory whole.
    headers["Content-Length"] = str(entry.size)
    release = _download_slot(request)
    return StreamingResponse(
        _released(repo_tree.stream_blob(repo, entry.oid), release),
        headers=headers,
        media_type="application/octet-stream",
    )


def _download_slot(request: Request) -> Callable[[], None]:
    """A place among the downloads streamed at once (per client address and in all), or
    429: each one holds a git process and the server's bandwidth."""
    settings = get_settings()
    return _client_slot(
        _downloads, request, "downloads", settings.max_downloads_per_client, "MAX_DOWNLOADS"
    )


@contextlib.contextmanager
def listing_slot(request: Request) -> Iterator[None]:
    """A place among the listings computed at once (tree, paths-info, a revision's files):
    each holds a worker thread and runs git, `expand` a `git log` per entry, so one client
    can't take every thread the other routes wait for."""
    settings = get_settings()
    release = _client_slot(
        _listings, request, "listings", settings.max_listings_per_client, "MAX_LISTINGS"
    )
    try:
        yield
    finally:
        release()


def _client_slot(
    limiter: KeyedLimiter, request: Request, what: str, per_client: int, setting: str
) -> Callable[[], None]:
    """One place under `limiter` for this client address and in all (SPACEPORT_<setting>
    and SPACEPORT_<setting>_PER_CLIENT), or a 429 that names the one reached."""
    total = int(getattr(get_settings(), setting.lower()))
    client = request.client.host if request.client else "unknown"
    try:
        return limiter.acquire({f"client:{client}": per_client, "all": total})
    except TooMany as exc:
        name = f"{setting}_PER_CLIENT" if exc.key.startswith("client:") else setting
        raise HubError(
            429,
            f"Too many {what} at once (at most {exc.limit}, SPACEPORT_{name}): "
            "wait for one to finish",
            TOO_MANY,
        ) from exc


async def _released(
    chunks: AsyncIterator[bytes], release: Callable[[], None]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        release()  # also when the client left mid-way (the response is cancelled)
