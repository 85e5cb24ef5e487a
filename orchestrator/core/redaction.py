"""Masking of everything secret that could leave the platform in a log or an error message.

One place for run logs, build logs and error messages alike: a Space's own secret values,
and anything shaped like a credential the platform issues (API tokens, Space JWTs), which
an app may have been handed by a careless visitor or printed from its environment.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator

from sqlmodel import Session, select

from orchestrator.core import secret_store
from orchestrator.core.models import Secret, Space

MASK = "***"
# Shorter secret values are not masked: "***" for every "a" would garble the log and
# tell an attacker the value anyway.
MIN_SECRET_LENGTH = 4
# A Spaceport API token: "sp_" + secrets.token_urlsafe(32) (orchestrator/core/auth.py).
PLATFORM_TOKEN = re.compile(r"sp_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
# A compact JWS (what orchestrator/spaces/tokens.py issues): header.payload.signature,
# header and payload being base64url JSON objects ("eyJ" is '{"').
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")
# The signature of a signed URL (orchestrator/core/url_signing.py: LFS transfers, a `space`
# volume's files), its permission: the access log keeps the rest of the URL.
URL_SIGNATURE = re.compile(r"(?<=[?&]sig=)[0-9a-fA-F]{16,}")


class Redactor:
    """Masks the given secret values and every platform credential in a piece of text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        values = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = PLATFORM_TOKEN.sub(MASK, text)
        text = URL_SIGNATURE.sub(MASK, text)
        return JWT.sub(MASK, text)

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            yield self(line)


class RedactingFilter(logging.Filter):
    """Masks platform credentials in log records before they are written: the server's
    access log would otherwise keep every `?__sign=<jwt>` a visitor followed."""

    def __init__(self) -> None:
        super().__init__()
        self.redact = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def space_secret_values(session: Session, space_id: int | None) -> list[str]:
    """The plain values of a Space's secrets: the one place masking reads them from."""
    if space_id is None:
        return []
    values = [s.value for s in session.exec(select(Secret).where(Secret.space_id == space_id))]
    space = session.get(Space, space_id)
    if space is not None and space.card_data and json.loads(space.card_data).get("hf_oauth"):
        values.append(secret_store.oauth_client_secret(space.uid))  # its OAuth app's
    return values


def for_space(session: Session, space_id: int | None) -> Redactor:
    return Redactor(space_secret_values(session, space_id))
