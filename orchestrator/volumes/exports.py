"""Another Space's files for a pod that can't see the platform's disk (the Kubernetes
backend): a signed URL the controller makes for exactly one (Space uid, commit, folder),
the Space that mounts them and an expiry, and the tar of that folder of the export
(orchestrator/volumes/mounts.py) that the API serves for it. A Space pod's init container
fetches it (sandbox/kubernetes/fetch_export.py) into the emptyDir its app mounts
read-only.

The signature is the permission, and not the only check: no signature, no files; a URL
for one commit or folder opens no other, and none opens anything after its expiry. While
it is valid, the API still checks, as the controller did when it made the mount
(mounts.space_mounts), that the mounting Space still mounts that source and that its
owner may still read it: a source made private since is not served."""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from orchestrator.core import url_signing
from sandbox.backend import SpaceFiles

KEY_FILE = "space-files-signing.key"
ROUTE = "/api/volumes/space-files"
PURPOSE = "space-files"  # in every signed message: no other signed URL's signature fits


class ExportRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _signature(files: SpaceFiles, mounted_by: str, expires: int) -> str:
    return url_signing.signature(
        KEY_FILE, PURPOSE, files.space_uid, files.sha, files.path, mounted_by, expires
    )


def signed_url(
    base_url: str, files: SpaceFiles, mounted_by: str, seconds: int, now: float | None = None
) -> str:
    """The URL of the files' tar at `base_url` (the platform as the pod reaches it) for
    the Space `mounted_by` (its uid), valid for `seconds`."""
    expires = int(now if now is not None else time.time()) + seconds
    signature = _signature(files, mounted_by, expires)
    query = urlencode({"path": files.path, "for": mounted_by, "expires": expires, "sig": signature})
    return f"{base_url.rstrip('/')}{ROUTE}/{files.space_uid}/{files.sha}?{query}"


def check(
    files: SpaceFiles, mounted_by: str, expires: str, signature: str, now: float | None = None
) -> None:
    """Raises ExportRefused (403) unless the signature is the controller's for exactly
    these files and this mounting Space, and has not expired."""
    try:
        when = int(expires)
    except ValueError:
        when = -1
    if when < 0 or not url_signing.matches(_signature(files, mounted_by, when), signature):
        raise ExportRefused(
            403,
            "this Space files URL is not signed for these files: the controller hands each "
            "pod its own (no signature, no files)",
        )
    if when < (now if now is not None else time.time()):
        raise ExportRefused(
            403,
            "this Space files URL has expired: restart the Space for a new one "
            "(SPACEPORT_KUBE_EXPORT_URL_SECONDS says how long one lasts)",
        )


def write_tar(root: Path, path: str) -> Path:
    """A tar file (temporary: the caller removes it) of the folder `path` of the export
    at `root` (the whole export for ""), its members named by their path in the repo, so
    that unpacked in one folder, `path` of it is what the Space mounts."""
    if path and any(p in ("", ".", "..") for p in path.split("/")):
        raise ExportRefused(404, f"the commit has no folder {path!r}")
    folder = root / path if path else root
    if not folder.is_dir():
        raise ExportRefused(404, f"the commit has no folder {path!r}")
    handle = tempfile.NamedTemporaryFile(prefix="space-files-", suffix=".tar", delete=False)
    handle.close()
    target = Path(handle.name)
    try:
        with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
            for child in sorted(folder.iterdir()):
                name = f"{path}/{child.name}" if path else child.name
                tar.add(child, arcname=name, filter=_plain)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _plain(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names or ids of the platform's in the tar: the pod's user owns what it
    unpacks."""
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member
