"""The build context sent to the Engine: the commit's files as `.dockerignore` filters them,
plus Spaceport's own Dockerfile, and nothing else of Spaceport's.

The classic builder (`POST /build` with a tar) does not apply `.dockerignore` itself: the
docker CLI filters the context before sending it, and the daemon only drops the Dockerfile
and `.dockerignore` when they are listed. So Spaceport filters the tar here with the docker
SDK's own matcher (`docker.utils.build.PatternMatcher`, Docker's pattern semantics: `**`,
`!` exceptions, a pattern matching a folder excluding what is under it).

Spaceport's own files never reach an image: its Dockerfile is one top-level file
(`SPACEPORT_DOCKERFILE`) that the context's generated `.dockerignore` names, so the daemon
reads it and then removes it before any `COPY .`; the `.dockerignore` itself is removed the
same way. Repo files with either name, or under `.spaceport/`, are dropped: a repo can't bring
its own recipe.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile

from docker.utils.build import PatternMatcher

SPACEPORT_DOCKERFILE = ".spaceport.Dockerfile"
_RESERVED_DIR = ".spaceport"


def dockerignore_patterns(text: str) -> list[str]:
    """Patterns as the docker CLI reads them (comments and blank lines out, `/` leading
    dropped, paths cleaned)."""
    patterns: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = posixpath.normpath(line).lstrip("/") if line else line
        if line in ("", "."):
            continue
        patterns.append(("!" if negate else "") + line)
    return patterns


def _name(member: tarfile.TarInfo) -> str:
    name = posixpath.normpath(member.name)
    return name[2:] if name.startswith("./") else name.lstrip("/")


def scan(repo_tar: bytes) -> tuple[frozenset[str], str]:
    """The files of a commit's tar and a digest of its content, in one pass over the tar
    (the commit is read once per build: its archive). The digest covers each entry's path,
    kind, executable bit, link target and bytes, not git's timestamps, so the same files
    make the same digest whatever commit holds them, and an LFS object filled in since
    makes a new one."""
    files: set[str] = set()
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(repo_tar), mode="r:") as tar:
        for member in sorted(tar.getmembers(), key=_name):
            name = _name(member)
            if name in ("", "."):
                continue
            executable = "x" if member.mode & 0o100 else "-"
            digest.update(
                f"{name}\0{member.type.decode()}{executable}\0{member.linkname}\0".encode()
            )
            if member.isfile():
                files.add(name)
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                digest.update(f"{len(data)}\0".encode())
                digest.update(data)
            elif member.issym():
                files.add(name)
    return frozenset(files), digest.hexdigest()


def build_context(repo_tar: bytes, dockerfile: str, generated: bytes | None = None) -> bytes:
    """The filtered context.

    `dockerfile` is the Dockerfile's path in the context; `generated` its text when Spaceport
    wrote it (it is then stored as SPACEPORT_DOCKERFILE and `dockerfile` must be that name).
    """
    source = tarfile.open(fileobj=io.BytesIO(repo_tar), mode="r:")
    members = source.getmembers()
    ignore_text = b""
    for member in members:
        if _name(member) == ".dockerignore" and member.isfile():
            handle = source.extractfile(member)
            ignore_text = handle.read() if handle else b""
    patterns = dockerignore_patterns(ignore_text.decode(errors="replace"))
    matcher = PatternMatcher(patterns)
    # What the daemon itself must drop after reading: .dockerignore always (it is
    # Spaceport's, not the repo's), Spaceport's Dockerfile, and a repo Dockerfile the repo's
    # .dockerignore lists (Docker still sends that one to the daemon).
    daemon_drops = [".dockerignore", SPACEPORT_DOCKERFILE]
    if generated is None and patterns and matcher.matches(dockerfile):
        daemon_drops.append(dockerfile)

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as target:
        for member in members:
            name = _name(member)
            if name in ("", ".", ".dockerignore", SPACEPORT_DOCKERFILE):
                continue
            if name == _RESERVED_DIR or name.startswith(_RESERVED_DIR + "/"):
                continue  # a repo may not smuggle in its own build recipe
            keep_dockerfile = generated is None and name == dockerfile
            if patterns and matcher.matches(name) and not keep_dockerfile:
                continue
            member.name = name
            # Fixed ownership keeps the layer cache stable (docker-py#1582).
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        files = {".dockerignore": "".join(f"{p}\n" for p in daemon_drops).encode()}
        if generated is not None:
            files[SPACEPORT_DOCKERFILE] = generated
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            target.addfile(info, io.BytesIO(data))
    return out.getvalue()
