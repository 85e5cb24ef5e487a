"""This installation's own name: a unique id made at its first start and kept in its home.

Every container it runs carries the name (sandbox.backend.LABEL_INSTANCE), and a controller
lists, stops and reads only containers with its own, so two installations sharing one Docker
Engine never touch each other's Spaces, even when both run with default settings. The
setting `instance` (SPACEPORT_INSTANCE) overrides it, for an operator who names them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from orchestrator.core.settings import get_settings

ID_FILE = "installation-id"
PREFIX = "spaceport-"
# What a container name and a label value may hold, and what this module writes.
VALID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class InstallationError(RuntimeError):
    """The home's id file is damaged: refusing to guess, since a new id would orphan (and a
    wrong one could adopt) containers."""


def installation_id(home: Path) -> str:
    """The id kept in `home`, made on the first call (mode 0600; safe when several processes
    start at once: the file appears whole, once, and every one reads the same id)."""
    path = home / ID_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    draft = home / f".{ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(PREFIX + secrets.token_hex(6) + "\n")
    try:
        os.link(draft, path)  # fails if another process made it first: theirs counts
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            draft.unlink()
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not VALID.match(value):
        raise InstallationError(
            f"{path} does not hold an installation id (got {value[:40]!r}); restore it from "
            "a backup, or delete it only if no container of this installation runs"
        )
    return value


def instance_name() -> str:
    """The name on this installation's containers: the setting, else the home's id."""
    settings = get_settings()
    return settings.instance or installation_id(settings.home)
