"""Signed URLs: a permission carried by the URL itself, for clients that send no token
(huggingface_hub's LFS uploads, a Space pod's init container fetching another Space's
files). An HMAC-SHA256 over what the URL allows and its expiry, with a key of the
installation kept in $SPACEPORT_HOME (mode 0600), one key file per use."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from orchestrator.core.settings import get_settings


@lru_cache
def signing_key(path: Path) -> bytes:
    """The key in `path`, made once per installation. Created with link() so that
    processes starting together all end up with the same key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_bytes(secrets.token_bytes(32))
        temporary.chmod(0o600)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_bytes()


def signature(key_file: str, *fields: object) -> str:
    """The hex HMAC of `fields` (one per line) with the key in $SPACEPORT_HOME/key_file."""
    key = signing_key(get_settings().home / key_file)
    message = "\n".join(str(f) for f in fields).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def matches(expected: str, given: str) -> bool:
    """A constant-time comparison of two signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())
