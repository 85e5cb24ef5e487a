"""Reading a Space repo's files at a revision, for the Hub file APIs: revisions, tree
entries, blobs, and which blobs are LFS pointers.

Everything goes through git plumbing on the bare repo; nothing is checked out.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from orchestrator.repos import lfs
from orchestrator.repos import store as repos

# What anyone may ask for (listings, `expand`'s `git log`s, downloads) runs at a lower CPU
# priority, so that under load the Spaces and the server's own event loop come first.
BACKGROUND = ["nice", "-n", "10"] if shutil.which("nice") else []
SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")
# Branch, tag and ref names we accept; anything else (`HEAD~1`, `main@{1}`, `-x`) is not a
# revision the Hub API knows, and must never reach git as an option or rev expression.
REF_PATTERN = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]+(?<![/.])$")
# refs/heads/a/b/c: the longest unencoded revision we try to split off a path.
MAX_REV_SEGMENTS = 5


@dataclass(frozen=True)
class Entry:
    path: str
    mode: str
    kind: str  # "blob", "tree" or "commit" (a submodule)
    oid: str
    size: int  # blob size in bytes; 0 for trees and submodules


def resolve_revision(repo: Path, rev: str) -> str | None:
    """The commit a branch, tag, `refs/...` name or full commit sha names; None if none."""
    if SHA_PATTERN.match(rev):
        return repos.resolve(repo, rev)
    if not REF_PATTERN.match(rev):
        return None
    candidates = [f"refs/heads/{rev}", f"refs/tags/{rev}"]
    if rev.startswith("refs/"):
        candidates.insert(0, rev)
    for ref in candidates:
        if sha := repos.resolve(repo, ref):
            return sha
    return None


def revision_and_path(repo: Path, segments: list[str]) -> tuple[str, str, str] | None:
    """(revision, commit, path) from a URL's still-percent-encoded segments after
    `tree/`, `blob/` or `resolve/`; None when no revision is found.

    Clients quote the revision with safe="" (`refs%2Fpr%2F1`), so normally it is the first
    segment; one sent with bare slashes (`refs/pr/1/app.py`) is found by trying longer
    prefixes. The path is only ever a name looked up in git's tree, never a file here.
    """
    for count in range(1, min(len(segments), MAX_REV_SEGMENTS) + 1):
        rev = "/".join(unquote(s) for s in segments[:count])
        if sha := resolve_revision(repo, rev):
            return rev, sha, unquote("/".join(segments[count:])).strip("/")
    return None


def branch_ref(rev: str) -> str | None:
    """The ref a commit to `rev` updates, when `rev` names a branch (existing or not)."""
    name = rev.removeprefix("refs/heads/")
    if name.startswith("refs/") or SHA_PATTERN.match(name) or not REF_PATTERN.match(name):
        return None
    return f"refs/heads/{name}"


def _entry(record: str) -> Entry:
    meta, _, path = record.partition("\t")
    mode, kind, oid, size = meta.split()
    return Entry(path, mode, kind, oid, int(size) if size != "-" else 0)


def _ls_tree(repo: Path, *args: str) -> list[Entry]:
    # --literal-pathspecs: a file named `*.py` means that file, not a glob.
    out = repos.git(repo, "--literal-pathspecs", "ls-tree", "-l", "-z", *args)
    records = out.decode("utf-8", errors="surrogateescape").split("\0")
    return [_entry(record) for record in records if record]


def _iter_ls_tree(repo: Path, *args: str) -> Iterator[Entry]:
    """ls-tree's entries as git prints them, so a caller that needs only the first few
    of a huge tree stops git there (closing the iterator kills it)."""
    process = subprocess.Popen(
        [*BACKGROUND, "git", "-C", str(repo), "--literal-pathspecs", "ls-tree", "-l", "-z", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    pending = b""
    try:
        while chunk := process.stdout.read(1 << 16):
            *records, pending = (pending + chunk).split(b"\0")
            for record in records:
                if record:
                    yield _entry(record.decode("utf-8", errors="surrogateescape"))
        if process.wait() != 0:
            raise repos.GitError(f"git ls-tree {' '.join(args)} failed")
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.wait()


def tree_page(
    repo: Path, sha: str, path: str, recursive: bool, offset: int, limit: int
) -> tuple[list[Entry], bool]:
    """Entries `offset` to `offset + limit` of list_tree's listing, and whether more follow.
    git stops after them, so a page costs what it lists, not what the Space holds."""
    args = ["-r", "-t"] if recursive else []
    target = [path.rstrip("/") + "/"] if path else []
    listed = _iter_ls_tree(repo, *args, sha, "--", *target)
    try:
        inside = (e for e in listed if e.path != path.rstrip("/"))
        page = list(itertools.islice(inside, offset, offset + limit + 1))
    finally:
        listed.close()
    return page[:limit], len(page) > limit


def files_at(repo: Path, sha: str, most: int) -> list[Entry] | None:
    """Every file of commit `sha`, or None when there are more than `most`."""
    listed = _iter_ls_tree(repo, "-r", sha)
    try:
        found = list(itertools.islice((e for e in listed if e.kind == "blob"), most + 1))
    finally:
        listed.close()
    return found if len(found) <= most else None


def in_tree(path: str) -> bool:
    """Whether `path` could name an entry of a git tree: no empty, `.` or `..` part. git
    refuses the others as pathspecs (`../x` is "outside repository": an error, not a 404)
    or reads them as another path (`a/../b` is `b`)."""
    return all(part not in ("", ".", "..") for part in path.strip("/").split("/"))


def object_type(repo: Path, sha: str, path: str) -> str | None:
    """ "blob", "tree", "commit" for what `path` is at commit `sha`; None if nothing."""
    if not path:
        return "tree"
    if not in_tree(path):
        return None
    found = _ls_tree(repo, sha, "--", path.rstrip("/"))
    return found[0].kind if found and found[0].path == path.rstrip("/") else None


def list_tree(repo: Path, sha: str, path: str = "", recursive: bool = False) -> list[Entry]:
    """The entries inside directory `path` (the root when empty); with `recursive`, every
    entry below it, directories included, as the Hub lists them."""
    args = ["-r", "-t"] if recursive else []
    target = [path.rstrip("/") + "/"] if path else []
    return [e for e in _ls_tree(repo, *args, sha, "--", *target) if e.path != path.rstrip("/")]


def path_entries(repo: Path, sha: str, paths: list[str]) -> list[Entry]:
    """The entries at exactly these paths (files or directories); unknown ones are left out."""
    wanted = {p.strip("/") for p in paths if p.strip("/") and in_tree(p)}
    if not wanted:
        return []
    # -r -t: asked for both `src` and `src/app.py`, plain ls-tree would list src's children
    # instead of src itself; recursing shows every level, and the filter keeps the asked ones.
    return [e for e in _ls_tree(repo, "-r", "-t", sha, "--", *sorted(wanted)) if e.path in wanted]


def read_blobs(repo: Path, oids: list[str]) -> dict[str, bytes]:
    """Contents of many (small) blobs with one `git cat-file --batch`."""
    unique = sorted(set(oids))
    if not unique:
        return {}
    result = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input="".join(f"{oid}\n" for oid in unique).encode(),
        capture_output=True,
        check=True,
    )
    out, position, blobs = result.stdout, 0, {}
    for oid in unique:
        end = out.index(b"\n", position)
        header = out[position:end].split()
        position = end + 1
        if len(header) < 3 or header[1] == b"missing":
            continue
        size = int(header[2])
        blobs[oid] = out[position : position + size]
        position += size + 1  # content, then a newline
    return blobs


def read_blob(repo: Path, oid: str) -> bytes:
    return repos.git(repo, "cat-file", "blob", oid)


def read_blob_head(repo: Path, oid: str, most: int) -> bytes:
    """A blob's first `most` bytes; git is stopped there, so a huge blob costs only those."""
    process = subprocess.Popen(
        [*BACKGROUND, "git", "-C", str(repo), "cat-file", "blob", oid],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        head = process.stdout.read(most)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.wait()
    return head


async def stream_blob(repo: Path, oid: str, chunk: int = 1 << 16) -> AsyncIterator[bytes]:
    """A blob's content as git prints it, never held whole; git is killed if the client
    leaves mid-way."""
    process = await asyncio.create_subprocess_exec(
        *BACKGROUND,
        "git",
        "-C",
        str(repo),
        "cat-file",
        "blob",
        oid,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        while data := await process.stdout.read(chunk):
            yield data
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def pointers(repo: Path, entries: list[Entry]) -> dict[str, tuple[str, int]]:
    """(oid, size) of the LFS object behind each entry that is an LFS pointer, by path."""
    small = [e for e in entries if e.kind == "blob" and e.size < lfs.MAX_POINTER_SIZE]
    contents = read_blobs(repo, [e.oid for e in small])
    found = {}
    for entry in small:
        parsed = lfs.parse_pointer(contents.get(entry.oid, b""))
        if parsed:
            found[entry.path] = parsed
    return found


def last_commit(repo: Path, sha: str, path: str) -> dict[str, str] | None:
    """The newest commit up to `sha` that touched `path`: {"id", "title", "date"} with an ISO
    date (the caller formats it)."""
    result = subprocess.run(
        [*BACKGROUND, "git", "-C", str(repo), "--literal-pathspecs", "log", "-1"]
        + ["--format=%H%x00%s%x00%cI", sha, "--", path],
        capture_output=True,
        check=False,
    )
    parts = result.stdout.decode(errors="replace").strip().split("\0")
    if len(parts) != 3:
        return None
    return {"id": parts[0], "title": parts[1], "date": parts[2]}
