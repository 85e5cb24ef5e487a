"""Git LFS objects: a content-addressed store on disk plus, per Space, the record of which
objects it may serve.

Objects live at $SPACEPORT_HOME/lfs/{oid[:2]}/{oid[2:4]}/{oid}, shared by every Space (the
same weights uploaded to ten Spaces are stored once). Sharing the bytes must not share
access, though: a Space serves an object only when it was uploaded to *that* Space (or the
Space was duplicated from one that had it), so knowing a private file's sha256 is not enough
to read it through another Space.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from orchestrator.core.models import LfsObject
from orchestrator.core.settings import get_settings
from orchestrator.repos import store as repos

POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
# Pointers written by pre-1.0 git-lfs (still valid per the spec).
LEGACY_VERSIONS = ("https://hawser.github.com/spec/v1", "https://git-lfs.github.com/spec/v1")
# git-lfs itself never treats a blob of this size or more as a pointer.
MAX_POINTER_SIZE = 1024
OID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


class ObjectError(ValueError):
    """Uploaded bytes that don't match the oid or size they claim."""


def valid_oid(oid: str) -> bool:
    return bool(OID_PATTERN.match(oid))


def store_dir() -> Path:
    return get_settings().home / "lfs"


def store_path(oid: str) -> Path:
    if not valid_oid(oid):
        # Also what keeps a crafted oid from naming a path outside the store.
        raise ValueError(f"not an LFS oid (64 lowercase hex digits): {oid!r}")
    return store_dir() / oid[:2] / oid[2:4] / oid


def has_object(oid: str, size: int | None = None) -> bool:
    try:
        stat = store_path(oid).stat()
    except (OSError, ValueError):
        return False
    return size is None or stat.st_size == size


def open_object(oid: str) -> BinaryIO:
    """The object's bytes; FileNotFoundError when it is not stored."""
    return open(store_path(oid), "rb")


class ObjectWriter:
    """Receives one object chunk by chunk and stores it only if its sha256 and size match.

    The bytes go to a temporary file in the object's own directory, so the final rename is
    atomic: readers see the whole object or none, and two concurrent uploads of the same
    object both succeed (the second rename replaces identical content).
    """

    def __init__(self, oid: str, size: int) -> None:
        if size < 0:
            raise ObjectError(f"negative size {size}")
        self.oid = oid
        self.size = size
        self.path = store_path(oid)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in commit/abort
            dir=self.path.parent, prefix=f".{oid[:8]}-", suffix=".part", delete=False
        )
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self.written += len(chunk)
        if self.written > self.size:
            raise ObjectError(f"object {self.oid} is larger than its declared size {self.size}")
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> Path:
        self._file.close()
        if self.written != self.size:
            self.abort()
            raise ObjectError(
                f"object {self.oid}: received {self.written} bytes, expected {self.size}"
            )
        if self._hash.hexdigest() != self.oid:
            self.abort()
            raise ObjectError(
                f"object {self.oid}: content has sha256 {self._hash.hexdigest()} instead"
            )
        os.chmod(self._file.name, 0o644)
        os.replace(self._file.name, self.path)
        return self.path

    def abort(self) -> None:
        self._file.close()
        Path(self._file.name).unlink(missing_ok=True)

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def write_object(stream: BinaryIO, oid: str, size: int) -> Path:
    """Store what `stream` holds as object `oid`; ObjectError if it isn't that object."""
    with ObjectWriter(oid, size) as writer:
        while chunk := stream.read(CHUNK):
            writer.write(chunk)
        return writer.commit()


def record(session: Session, space_id: int, oid: str, size: int) -> None:
    """Let the Space serve the object. Commits; recording twice is harmless."""
    if recorded(session, space_id, [oid]):
        return
    session.add(LfsObject(space_id=space_id, oid=oid, size=size))
    try:
        session.commit()
    except IntegrityError:
        # A concurrent upload of the same object to the same Space won the race.
        session.rollback()


def recorded(session: Session, space_id: int, oids: list[str]) -> dict[str, int]:
    """The oids among `oids` the Space may serve, with their sizes."""
    found: dict[str, int] = {}
    unique = sorted(set(oids))
    for start in range(0, len(unique), 500):  # stay far below SQL parameter limits
        rows = session.exec(
            select(LfsObject).where(
                LfsObject.space_id == space_id, col(LfsObject.oid).in_(unique[start : start + 500])
            )
        )
        found.update({row.oid: row.size for row in rows})
    return found


def copy_records(session: Session, from_space_id: int, to_space_id: int) -> None:
    """Give a duplicate the objects of its source. Adds rows only: the caller commits, in the
    same transaction that creates the duplicate."""
    have = {
        row.oid for row in session.exec(select(LfsObject).where(LfsObject.space_id == to_space_id))
    }
    for row in session.exec(select(LfsObject).where(LfsObject.space_id == from_space_id)).all():
        if row.oid not in have:
            session.add(LfsObject(space_id=to_space_id, oid=row.oid, size=row.size))


FILTER_OFF = {"filter.lfs.required": "false", "filter.lfs.smudge": "", "filter.lfs.process": ""}


def disable_repo_filters(repo: Path) -> None:
    """Keep git-lfs out of the Space's bare repo.

    Debian's git-lfs package configures its filter system-wide (/etc/gitconfig), so once
    a commit's .gitattributes says `filter=lfs`, `git archive` of it (the build context)
    runs git-lfs, which tries to download the objects from a remote the bare repo doesn't
    have, and fails. Empty filter commands in the repo's own config switch that off: the
    archive then holds the pointers, and smudge_tar puts the content in.
    """
    if repos.git(repo, "config", "--get", "--default", "", "filter.lfs.required") == b"false\n":
        return
    for key, value in FILTER_OFF.items():
        try:
            repos.git(repo, "config", key, value)
        except repos.GitError:
            pass  # a concurrent request holds the config lock and writes the same values


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """(oid, size) when `data` is a git-lfs pointer file, else None."""
    if len(data) >= MAX_POINTER_SIZE or not data.startswith(b"version "):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" ")
        if not sep or not key or key in fields:
            return None
        fields[key] = value
    if fields.get("version") not in LEGACY_VERSIONS:
        return None
    oid = fields.get("oid", "").removeprefix("sha256:")
    size = fields.get("size", "")
    if not fields.get("oid", "").startswith("sha256:") or not valid_oid(oid):
        return None
    if not size.isdigit():
        return None
    return oid, int(size)


def pointer_text(oid: str, size: int) -> str:
    """The pointer file git-lfs writes for an object (byte for byte, so blob ids agree)."""
    return f"version {POINTER_VERSION}\noid sha256:{oid}\nsize {size}\n"


def smudge_tar(space_id: int, tar_bytes: bytes) -> bytes:
    """A build context with each LFS pointer replaced by its object, where the Space has it.

    Pointers to objects the Space doesn't have stay pointers (the build sees what `git
    clone` without the object would). Without any pointer, the input is returned as is.
    """
    from orchestrator.core.db import session_scope

    source = tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:")
    pointers: dict[str, tuple[str, int]] = {}
    for member in source.getmembers():
        if member.isfile() and member.size < MAX_POINTER_SIZE:
            extracted = source.extractfile(member)
            parsed = parse_pointer(extracted.read()) if extracted else None
            if parsed:
                pointers[member.name] = parsed
    if not pointers:
        return tar_bytes
    with session_scope() as session:
        servable = recorded(session, space_id, [oid for oid, _ in pointers.values()])
    out = io.BytesIO()
    # PAX keeps long names and git archive's global header (the commit id) intact.
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers=source.pax_headers
    ) as target:
        for member in source.getmembers():
            oid, size = pointers.get(member.name, ("", -1))
            if oid and servable.get(oid) == size and has_object(oid, size):
                member.size = size
                with open_object(oid) as content:
                    target.addfile(member, content)
            elif member.isfile():
                target.addfile(member, source.extractfile(member))
            else:
                target.addfile(member)
    return out.getvalue()
