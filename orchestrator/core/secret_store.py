"""Space secrets encrypted at rest.

A secret's value is stored as ``fernet:v1:<Fernet token>`` (AES-128-CBC plus an
HMAC-SHA256, from the ``cryptography`` package), so neither the database file, nor a
dump of it, nor a backup holds a secret without the installation's key. The key lives in
``$SPACEPORT_HOME/secrets.key`` (mode 0600), made at the first start; every process of an
installation (API, worker, controller) reads the same file.

The column type :class:`EncryptedText` encrypts when a value is written and decrypts when
it is read, so code that reads or writes ``Secret.value`` sees plain text and never handles
the key. Rows written before encryption existed are plain text without the prefix;
:func:`encrypt_plaintext_rows` turns them into tokens once, at migrate time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator

from orchestrator.core.settings import get_settings

PREFIX = "fernet:v1:"
KEY_FILE = "secrets.key"


class SecretKeyError(RuntimeError):
    """The key file is missing where rows need it, or does not decrypt them."""


def key_path() -> Path:
    return get_settings().home / KEY_FILE


def ensure_key(path: Path | None = None) -> bytes:
    """The installation's key, created on the first call (mode 0600). Several processes
    may start at once: the key is written to a private temporary file and linked into
    place, which fails if another process got there first, so all of them use one key and
    none ever reads a half-written file."""
    path = path or key_path()
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # an older or copied file: keep it to its owner
    return key


@lru_cache
def _fernet(path: str) -> Fernet:
    return Fernet(ensure_key(Path(path)))


def fernet() -> Fernet:
    return _fernet(str(key_path()))


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode("ascii")


def decrypt(stored: str) -> str:
    if not is_encrypted(stored):
        return stored  # a row from before encryption; encrypt_plaintext_rows converts it
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
    except InvalidToken as exc:
        raise SecretKeyError(
            f"a stored secret does not decrypt with {key_path()}: the key file was replaced "
            "or belongs to another installation; restore the original key file"
        ) from exc


class EncryptedText(TypeDecorator[str]):
    """Text column holding an encrypted string; Python code sees the plain text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)


def encrypt_plaintext_rows(connection: Connection) -> int:
    """Encrypt the secrets stored before encryption existed, in place; idempotent."""
    rows = connection.execute(
        text("SELECT id, value FROM secret WHERE value NOT LIKE :prefix"),
        {"prefix": PREFIX + "%"},
    ).all()
    for row_id, value in rows:
        connection.execute(
            text("UPDATE secret SET value = :value WHERE id = :id"),
            {"value": encrypt(value), "id": row_id},
        )
    return len(rows)


def oauth_client_secret(space_uid: str) -> str:
    """The client secret of a Space's OAuth app (`hf_oauth: true`): the installation key's
    HMAC of the Space's uid, so it is stable across restarts, never stored, and different
    for every Space and installation."""
    message = b"oauth-client-secret:" + space_uid.encode()
    return hmac.new(ensure_key(), message, hashlib.sha256).hexdigest()
