"""A Space's Files tab, at the Hub's URLs: a folder at a revision
(/spaces/{owner}/{name}/tree/{revision}/{path}), a file (/blob/{revision}/{path}) and a
revision's history (/commits/{revision}).

Everything is read from the Space's bare repo with the functions the Hub file API uses
(repos/tree.py, repos/history.py, repos/refs.py, api/files.entries_json for sizes and LFS);
a path is only ever a name looked up in a git tree, never a file on this machine. Revisions
in the URL are split off the path as the API splits them (repo_tree.revision_and_path), so
`refs%2Fpr%2F1` and branches with slashes work; the links here quote them with safe="".
Downloads are the API's own `resolve` route, which the session's cookie opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from orchestrator.api.errors import HubError
from orchestrator.api.files import entries_json, listing_slot, raw_tail, servable
from orchestrator.api.refs import COMMITS_PAGE
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import history, refs
from orchestrator.repos import store as repos
from orchestrator.repos import tree as repo_tree
from orchestrator.web.errors import error_page, not_found
from orchestrator.web.render import page
from orchestrator.web.space_page import SpaceHead, find, space_head
from orchestrator.web.viewer import page_viewer

router = APIRouter(include_in_schema=False)

DEFAULT_REVISION = "main"
SHOWN_BYTES = 1_000_000  # of a text file; longer ones are cut, with a note and the download
SHOWN_REFS = 100  # branches, and tags, in the switcher (the per-Space limit bounds them too)
MAX_SAID = 300  # of the words that say which revision or path is missing
MAX_COMMIT_PAGE = 10_000  # `git log --skip` walks every skipped commit
# git's own test for binary content: a NUL byte in the first 8000 bytes.
BINARY_SNIFF = 8000
# Shown with <img> from the resolve route, which serves application/octet-stream: browsers
# sniff these formats; SVG (which needs its own type in an <img>) is shown as text.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".ico"}


@dataclass(frozen=True)
class Links:
    """The URLs of one revision's pages, the revision quoted as one segment."""

    base: str  # /spaces/{owner}/{name}
    rev: str

    def _at(self, keyword: str, path: str = "") -> str:
        url = f"{self.base}/{keyword}/{quote(self.rev, safe='')}"
        return url + (f"/{quote(path)}" if path else "")

    def tree(self, path: str = "") -> str:
        return self._at("tree", path)

    def blob(self, path: str) -> str:
        return self._at("blob", path)

    def raw(self, path: str) -> str:
        return self._at("resolve", path)

    def commits(self) -> str:
        return self._at("commits")

    def at(self, rev: str) -> Links:
        return Links(self.base, rev)

    def same_page(self, kind: str, path: str) -> str:
        """This revision's page of `kind` (tree, blob, commits): the ref switcher's links."""
        if kind == "commits":
            return self.commits()
        return self.blob(path) if kind == "blob" else self.tree(path)


@dataclass(frozen=True)
class Where:
    """What a Files page shows: a revision of a Space (its commit) and a path in it."""

    space: Space
    head: SpaceHead
    repo: Path
    rev: str
    sha: str | None  # None: main of a Space with no commit yet
    path: str
    links: Links


def _find_space(
    request: Request, session: Session, viewer: Principal | None, owner: str, name: str
) -> tuple[Space, SpaceHead] | Response:
    space, access, moved_to = find(session, viewer, owner, name)
    if moved_to:
        # The same page under the Space's new name: what follows owner/name is kept as sent.
        raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        tail = raw.split("/", 4)[4]
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{moved_to}/{tail}{query}", status_code=307)
    if space is None:
        return not_found(request, viewer, "Space")
    return space, space_head(session, viewer, space, access, "files")


def _locate(
    request: Request,
    session: Session,
    viewer: Principal | None,
    owner: str,
    name: str,
    keyword: str,
) -> Where | Response:
    """The revision and path of a tree or blob URL, or the page that says which is missing."""
    found = _find_space(request, session, viewer, owner, name)
    if isinstance(found, Response):
        return found
    space, head = found
    repo = repos.repo_path(space.owner, space.name)
    tail = raw_tail(request, keyword)
    split = repo_tree.revision_and_path(repo, tail)
    if split is None:
        rev = unquote(tail[0]) if tail else ""
        no_commit_yet = repos.resolve(repo, repos.DEPLOY_REF) is None
        if rev == DEFAULT_REVISION and no_commit_yet:
            path = unquote("/".join(tail[1:])).strip("/")
            return Where(space, head, repo, rev, None, path, Links(head.base, rev))
        return _missing(request, viewer, head, f"no branch, tag or commit “{rev}”")
    rev, sha, path = split
    return Where(space, head, repo, rev, sha, path, Links(head.base, rev))


def _missing(
    request: Request, viewer: Principal | None, head: SpaceHead, what: str
) -> HTMLResponse:
    """A 404 inside the Space's tabs, saying what is not there (a URL's words, cut short)."""
    what = what if len(what) <= MAX_SAID else what[: MAX_SAID - 1] + "…"
    return page(
        request,
        "files_missing.html",
        viewer,
        status_code=404,
        head=head,
        what=what,
        home=Links(head.base, DEFAULT_REVISION).tree(),
    )


def _busy(request: Request, viewer: Principal | None, exc: HubError) -> HTMLResponse:
    return error_page(request, viewer, exc.status_code, "Too busy right now", str(exc.detail))


def _crumbs(where: Where) -> list[tuple[str, str]]:
    """(name, folder URL) from the Space's root down to the path's last part."""
    crumbs = [(where.space.name, where.links.tree())]
    parts = where.path.split("/") if where.path else []
    for depth, part in enumerate(parts, start=1):
        crumbs.append((part, where.links.tree("/".join(parts[:depth]))))
    return crumbs


def _switcher(where: Where) -> dict[str, list[str]]:
    """The branches and tags the ref switcher offers (names, first SHOWN_REFS of each)."""
    if where.sha is None:
        return {"branches": [], "tags": []}
    found = refs.list_refs(where.repo)
    return {
        "branches": [r.name for r in found.branches[:SHOWN_REFS]],
        "tags": [r.name for r in found.tags[:SHOWN_REFS]],
    }


def _rev_words(where: Where) -> str:
    """The revision as the switcher's summary says it."""
    return f"commit {where.rev[:7]}" if repo_tree.SHA_PATTERN.match(where.rev) else where.rev


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _context(where: Where, kind: str) -> dict[str, object]:
    """What the Files templates share: head, links, crumbs, the switcher."""
    return {
        "kind": kind,
        "path_in": where.path,
        "head": where.head,
        "links": where.links,
        "rev_words": _rev_words(where),
        "crumbs": _crumbs(where),
        "refs": _switcher(where),
    }


def _last_commit(where: Where) -> dict[str, str] | None:
    """The newest commit that touched the folder: the revision's own for the root."""
    assert where.sha is not None
    if where.path:
        found = repo_tree.last_commit(where.repo, where.sha, where.path)
    else:
        commits, _more = history.page(where.repo, where.sha, 0, 1)
        found = (
            {"id": commits[0].id, "title": commits[0].title, "date": commits[0].date}
            if commits
            else None
        )
    if found is None:
        return None
    return {**found, "short": found["id"][:7], "when": _when(found["date"])}


@router.get("/spaces/{owner}/{name}/tree/{rest:path}", response_class=HTMLResponse)
def tree_page(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    where = _locate(request, session, viewer, owner, name, "tree")
    if isinstance(where, Response):
        return where
    if where.sha is None:
        if where.path:
            return _missing(request, viewer, where.head, f"no folder “{where.path}” yet")
        return page(
            request, "files_tree.html", viewer, entries=[], empty=True, **_context(where, "tree")
        )
    kind = repo_tree.object_type(where.repo, where.sha, where.path)
    if kind == "blob":
        return RedirectResponse(where.links.blob(where.path), status_code=307)
    if kind != "tree":
        return _missing(request, viewer, where.head, f"no folder “{where.path}” at {where.rev}")
    shown = get_settings().max_tree_page
    try:
        with listing_slot(request):  # the API's listings' limit: each runs git
            entries, more = repo_tree.tree_page(where.repo, where.sha, where.path, False, 0, shown)
            items = entries_json(where.repo, where.sha, where.space, session, entries)
            last = _last_commit(where)
    except HubError as exc:
        return _busy(request, viewer, exc)
    rows = [
        {
            "name": PurePosixPath(item.path).name,
            "folder": item.type == "directory",
            "size": item.size,
            "lfs": item.lfs is not None,
            "url": where.links.tree(item.path)
            if item.type == "directory"
            else where.links.blob(item.path),
        }
        for item in items
    ]
    rows.sort(key=lambda row: (not row["folder"], str(row["name"]).lower()))
    return page(
        request,
        "files_tree.html",
        viewer,
        entries=rows,
        more=more,
        shown=shown,
        last=last,
        parent=where.links.tree(where.path.rpartition("/")[0]) if where.path else "",
        **_context(where, "tree"),
    )


@router.get("/spaces/{owner}/{name}/blob/{rest:path}", response_class=HTMLResponse)
def blob_page(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    where = _locate(request, session, viewer, owner, name, "blob")
    if isinstance(where, Response):
        return where
    kind = repo_tree.object_type(where.repo, where.sha, where.path) if where.sha else None
    if kind == "tree":
        return RedirectResponse(where.links.tree(where.path), status_code=307)
    if kind != "blob" or where.sha is None:
        return _missing(request, viewer, where.head, f"no file “{where.path}” at {where.rev}")
    (entry,) = repo_tree.path_entries(where.repo, where.sha, [where.path])
    pointer = repo_tree.pointers(where.repo, [entry]).get(entry.path)
    lfs = pointer is not None and bool(servable(where.space, session, {entry.path: pointer}))
    size = pointer[1] if lfs and pointer else entry.size
    image = PurePosixPath(entry.path).suffix.lower() in IMAGE_SUFFIXES
    text, cut, binary = None, False, False
    if not lfs and not image:
        start = repo_tree.read_blob_head(where.repo, entry.oid, SHOWN_BYTES + 1)
        cut, start = len(start) > SHOWN_BYTES, start[:SHOWN_BYTES]
        binary = b"\0" in start[:BINARY_SNIFF]
        # Cut inside a character: one replacement sign at the end, the rest as it is.
        text = None if binary else start.decode("utf-8", errors="replace")
    return page(
        request,
        "files_blob.html",
        viewer,
        name=PurePosixPath(entry.path).name,
        size=size,
        lfs=lfs,
        image=image,
        binary=binary,
        text=text,
        cut=cut,
        shown_bytes=SHOWN_BYTES,
        download=where.links.raw(entry.path),
        **_context(where, "blob"),
    )


@router.get("/spaces/{owner}/{name}/commits/{revision:path}", response_class=HTMLResponse)
def commits_page(
    request: Request,
    owner: str,
    name: str,
    revision: str,
    p: str = Query(default="0", max_length=8),
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    """A revision's history, newest first, COMMITS_PAGE (the API's page) at a time."""
    found = _find_space(request, session, viewer, owner, name)
    if isinstance(found, Response):
        return found
    space, head = found
    repo = repos.repo_path(space.owner, space.name)
    number = min(int(p), MAX_COMMIT_PAGE) if p.isdigit() else 0
    sha = refs.resolve_commit(repo, revision)  # the API's list_repo_commits resolves so too
    if sha is None and not (
        revision == DEFAULT_REVISION and repos.resolve(repo, repos.DEPLOY_REF) is None
    ):
        return _missing(request, viewer, head, f"no branch, tag or commit “{revision}”")
    commits, more = (
        history.page(repo, sha, number * COMMITS_PAGE, COMMITS_PAGE) if sha else ([], False)
    )
    links = Links(head.base, revision)
    where = Where(space, head, repo, revision, sha, "", links)
    return page(
        request,
        "files_commits.html",
        viewer,
        commits=[
            {
                "title": c.title,
                "authors": ", ".join(c.authors),
                "when": _when(c.date),
                "iso": c.date,
                "short": c.id[:7],
                "url": links.at(c.id).tree(),
            }
            for c in commits
        ],
        number=number,
        newer=f"{links.commits()}?p={number - 1}" if number > 0 else "",
        older=f"{links.commits()}?p={number + 1}" if more and number < MAX_COMMIT_PAGE else "",
        **_context(where, "commits"),
    )
