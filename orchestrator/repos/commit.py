"""Writing a commit into a Space's bare repo without a checkout, for the Hub commit API.

The new tree is built in a throwaway index (GIT_INDEX_FILE): read-tree of the parent, the
operations applied with `update-index`, then write-tree, commit-tree, and an update-ref
that names the old value, so a push that lands meanwhile makes the commit fail rather
than be silently overwritten.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from orchestrator.repos import lfs
from orchestrator.repos import store as repos

LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"
FORBIDDEN_PARTS = {"", ".", "..", ".git"}
BACKSLASH_FORBIDDEN = {".", "..", ".git"}


class CommitError(Exception):
    """An operation the repo can't take; `status` and `code` are for the HTTP answer."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class AddFile:
    path: str
    source: Path  # the file's content, in a temporary file


@dataclass(frozen=True)
class AddLfs:
    path: str
    oid: str
    size: int


@dataclass(frozen=True)
class Delete:
    path: str
    folder: bool


Operation = AddFile | AddLfs | Delete


def clean_path(path: object, *, folder: bool = False) -> str:
    """A repo-relative path, or CommitError: no absolute paths, no `..`, nothing in .git."""
    if not isinstance(path, str) or "\0" in path:
        raise CommitError(400, f"invalid path {path!r}")
    text = path.strip("/") if folder else path.removeprefix("/")
    if any(part in FORBIDDEN_PARTS for part in text.split("/")):
        raise CommitError(400, f"invalid path {path!r}")
    # A backslash is a separator to Windows and to tools that normalise paths: `..\x` or
    # `a\..\b` would climb out of the folder there. The Hub refuses them with a 422.
    if any(part in BACKSLASH_FORBIDDEN for part in text.replace("\\", "/").split("/")):
        raise CommitError(
            422,
            f"invalid path {path!r}: no '.', '..' or '.git' segment is allowed, "
            "with '\\' read as '/'",
        )
    return text


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, data: bytes = b"") -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=data,
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise repos.GitError(f"git {args[0]}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode()


def _files(repo: Path, parent: str | None) -> dict[str, str]:
    """path -> mode of every file in the parent commit."""
    if parent is None:
        return {}
    out = _git(repo, "ls-tree", "-r", "-z", "--full-tree", parent)
    files = {}
    for record in out.split("\0"):
        if record:
            meta, _, path = record.partition("\t")
            files[path] = meta.split()[0]
    return files


def _folders(path: str) -> list[str]:
    """The folders `path` is in, outermost first: a/b/c -> [a, a/b]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class _Tree:
    """The files of a commit being written, indexed by folder, so that each check an
    operation needs ("is this a folder?", "which files are under it?") costs what it
    touches, not what the Space holds: a commit costs linear time in its files (scanning
    every path per operation made 20,000 files take minutes)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files: dict[str, str] = {}
        self.count: Counter[str] = Counter()  # files under each folder, at any depth
        self.direct: defaultdict[str, set[str]] = defaultdict(set)  # folder -> its files
        self.subfolders: defaultdict[str, set[str]] = defaultdict(set)
        for path, mode in files.items():
            self.add(path, mode)

    def is_folder(self, path: str) -> bool:
        return self.count[path] > 0

    def add(self, path: str, mode: str) -> None:
        if path not in self.files:
            folders = _folders(path)
            for parent, folder in zip(["", *folders], folders, strict=False):
                self.subfolders[parent].add(folder)
                self.count[folder] += 1
            self.direct[folders[-1] if folders else ""].add(path)
        self.files[path] = mode

    def remove(self, path: str) -> None:
        del self.files[path]
        folders = _folders(path)
        self.direct[folders[-1] if folders else ""].discard(path)
        for parent, folder in zip(["", *folders], folders, strict=False):
            self.count[folder] -= 1
            if self.count[folder] == 0:
                del self.count[folder]
                self.subfolders[parent].discard(folder)

    def under(self, folder: str) -> list[str]:
        found: list[str] = []
        pending = [folder]
        while pending:
            current = pending.pop()
            found.extend(self.direct.get(current, ()))
            pending.extend(self.subfolders.get(current, ()))
        return found


def _apply(files: dict[str, str], operations: list[Operation]) -> dict[str, str | None]:
    """The index changes, path -> new mode (None: remove). Checks each operation against
    the tree as the operations before it left it, as the Hub does."""
    tree = _Tree(files)
    changes: dict[str, str | None] = {}
    for op in operations:
        if isinstance(op, Delete):
            # A plain path names a file or, where there is none, a folder: the client's
            # CommitOperationDelete("dir") (is_folder="auto") sends a folder as a file.
            if not op.folder and op.path in tree.files:
                gone = [op.path]
            else:
                gone = tree.under(op.path) if tree.is_folder(op.path) else []
            if not gone:
                what = "folder" if op.folder else "file"
                raise CommitError(
                    404, f"A {what} with this name doesn't exist: {op.path}", "EntryNotFound"
                )
            for path in gone:
                tree.remove(path)
                changes[path] = None
            continue
        for parent in _folders(op.path):
            if parent in tree.files:
                raise CommitError(400, f"{op.path}: {parent} is a file, not a folder")
        if tree.is_folder(op.path):
            raise CommitError(400, f"{op.path} is a folder: delete it first to add a file there")
        # An edited script keeps its executable bit; everything new is a plain file.
        executable = tree.files.get(op.path) == "100755" and isinstance(op, AddFile)
        mode = "100755" if executable else "100644"
        tree.add(op.path, mode)
        changes[op.path] = mode
    return changes


def _blobs(repo: Path, operations: list[Operation]) -> dict[str, str]:
    """Blob id of each added path: file contents and LFS pointers, hashed in one git call."""
    sources: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory(prefix="spaceport-pointers-") as scratch:
        for index, op in enumerate(operations):
            if isinstance(op, AddFile):
                sources.append((op.path, op.source))
            elif isinstance(op, AddLfs):
                pointer = Path(scratch) / str(index)
                pointer.write_text(lfs.pointer_text(op.oid, op.size))
                sources.append((op.path, pointer))
        if not sources:
            return {}
        out = _git(
            repo,
            "hash-object",
            "-w",
            "--no-filters",
            "--stdin-paths",
            data="".join(f"{source}\n" for _, source in sources).encode(),
        )
    blobs: dict[str, str] = {}
    for (path, _), blob in zip(sources, out.split(), strict=True):
        blobs[path] = blob  # a later operation on the same path wins
    return blobs


def _track_lfs(repo: Path, env: dict[str, str], paths: list[str]) -> None:
    """Add LFS files that .gitattributes doesn't cover yet to it, as the Hub does, so a git
    clone with git-lfs turns their pointers back into content."""
    untracked = sorted(set(paths) - lfs_tracked_in_index(repo, env, paths))
    if not untracked:
        return
    listed = _git(repo, "ls-files", "-s", "-z", "--", ".gitattributes", env=env)
    current = repos.git(repo, "cat-file", "blob", listed.split()[1]) if listed else b""
    text = current.decode(errors="surrogateescape")
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{_attribute_pattern(p)} {LFS_ATTRIBUTES}\n" for p in untracked)
    blob = _git(repo, "hash-object", "-w", "--stdin", data=text.encode(errors="surrogateescape"))
    _git(
        repo,
        "update-index",
        "--add",
        "--cacheinfo",
        f"100644,{blob.strip()},.gitattributes",
        env=env,
    )


def _attribute_pattern(path: str) -> str:
    """`path` as a .gitattributes pattern matching just that file: glob characters escaped,
    and C-quoted when it has spaces (attributes can't escape a space otherwise)."""
    escaped = "".join("\\" + c if c in "*?[\\" else c for c in path)
    if any(c.isspace() or c == '"' for c in path):
        return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def lfs_tracked_in_index(repo: Path, env: dict[str, str], paths: list[str]) -> set[str]:
    """Paths the .gitattributes files in the index (GIT_INDEX_FILE in `env`) mark
    `filter=lfs`. git 2.39 has no `check-attr --source`, hence the index."""
    if not paths:
        return set()
    out = _git(
        repo,
        "check-attr",
        "--cached",
        "-z",
        "--stdin",
        "filter",
        env=env,
        data="".join(f"{p}\0" for p in paths).encode(),
    )
    fields = out.split("\0")
    return {fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] == "lfs"}


def lfs_tracked(repo: Path, sha: str | None, paths: list[str]) -> set[str]:
    """Paths that the .gitattributes of commit `sha` store with LFS."""
    if sha is None or not paths:
        return set()
    with tempfile.TemporaryDirectory(prefix="spaceport-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo, "read-tree", sha, env=env)
        return lfs_tracked_in_index(repo, env, paths)


def create_commit(
    repo: Path,
    ref: str,
    parent: str | None,
    operations: list[Operation],
    message: str,
    author: tuple[str, str],
) -> str:
    """Commit `operations` on top of `parent` (None: the branch's first commit) and move
    `ref` to it, provided `ref` still points at `parent`. Returns the new commit's sha."""
    changes = _apply(_files(repo, parent), operations)
    blobs = _blobs(repo, operations)
    with tempfile.TemporaryDirectory(prefix="spaceport-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo, *(["read-tree", parent] if parent else ["read-tree", "--empty"]), env=env)
        # `--index-info -z`: "mode sha\tpath\0" per entry; mode 0 removes the path.
        info = "".join(
            f"{mode} {blobs[path]}\t{path}\0" if mode else f"0 {repos.ZERO_SHA}\t{path}\0"
            for path, mode in changes.items()
        )
        _git(repo, "update-index", "-z", "--index-info", env=env, data=info.encode())
        lfs_paths = [op.path for op in operations if isinstance(op, AddLfs)]
        _track_lfs(repo, env, [p for p in lfs_paths if changes.get(p)])
        tree = _git(repo, "write-tree", env=env).strip()
    sha = repos.commit_tree(repo, tree, [parent] if parent else [], message, author)
    try:
        _git(repo, "update-ref", "-m", "commit (api)", ref, sha, parent or repos.ZERO_SHA)
    except repos.GitError as exc:
        branch = ref.removeprefix("refs/heads/")
        raise CommitError(
            409,
            f"{branch} moved while this commit was written (a push or another commit "
            f"landed first); nothing was changed, retry on top of the new head ({exc})",
        ) from exc
    return sha
