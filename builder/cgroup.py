"""A cgroup of its own for each build, so that all of its steps together stay under a pids
limit: the Engine's build API has memory and CPU limits but no pids limit, only a cgroup
parent (`cgroupparent`), under which it puts every RUN step's container.

With the cgroupfs driver the Engine (runc) takes an absolute parent as a path below the root
of each controller's hierarchy, so the parent made here is
`/sys/fs/cgroup/pids/spaceport-builds/<name>` (cgroup v1) or
`/sys/fs/cgroup/spaceport-builds/<name>` (cgroup v2), with `pids.max` set. runc creates the
same path in the other controllers; all of them are removed when the build ends.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
BUILDS_CGROUP = "spaceport-builds"


class CgroupUnavailable(Exception):
    """The pids limit can't be set up on this host; the message says what to do."""


def _is_v2(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def _pids_dir(root: Path, name: str) -> Path:
    base = root if _is_v2(root) else root / "pids"
    return base / BUILDS_CGROUP / name


@contextlib.contextmanager
def build_cgroup(name: str, pids_max: int, root: Path = CGROUP_ROOT) -> Iterator[str | None]:
    """Yield the `cgroupparent` for one build (None when pids_max is 0: no limit)."""
    if pids_max <= 0:
        yield None
        return
    path = _pids_dir(root, name)
    try:
        if _is_v2(root):
            # v2: the pids controller must be enabled for children at each level.
            for level in (root, root / BUILDS_CGROUP):
                level.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):
                    (level / "cgroup.subtree_control").write_text("+pids")
        path.mkdir(parents=True, exist_ok=True)
        (path / "pids.max").write_text(str(pids_max))
    except OSError as exc:
        raise CgroupUnavailable(
            f"cannot set up the build's pids limit in {path} ({exc.strerror or exc}): run the "
            "build worker as root on a host with the cgroup pids controller, or set "
            "SPACEPORT_BUILD_PIDS_LIMIT=0 to build without a pids limit"
        ) from exc
    try:
        yield f"/{BUILDS_CGROUP}/{name}"
    finally:
        _remove(root, name)


def sweep_stale(prefix: str, older_than_s: float, root: Path = CGROUP_ROOT) -> None:
    """Remove the cgroups of builds whose worker died before it could (names starting with
    `prefix`, this installation's). Only ones older than any build may run: between two
    steps a live build's cgroup is empty too, and removing it would lose its pids.max."""
    base = _pids_dir(root, "x").parent
    with contextlib.suppress(OSError):
        for path in base.iterdir():
            if path.name.startswith(prefix) and time.time() - path.stat().st_mtime > older_than_s:
                _remove(root, path.name)


def _remove(root: Path, name: str) -> None:
    candidates = [root / BUILDS_CGROUP / name]
    if not _is_v2(root):
        with contextlib.suppress(OSError):
            candidates = [
                entry / BUILDS_CGROUP / name for entry in root.iterdir() if entry.is_dir()
            ]
    for path in candidates:
        if not path.is_dir() or path.is_symlink():
            continue
        # Children are the (already removed) step containers' cgroups, deepest first.
        for child in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(child)
        with contextlib.suppress(OSError):
            os.rmdir(path)
