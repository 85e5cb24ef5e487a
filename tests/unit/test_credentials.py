"""Credentials stay with the platform, checked without a server: what the gateway strips
(gateway/credentials.py), Space JWTs (space_tokens.py) and masking (redaction.py)."""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from orchestrator.core.models import Space
from orchestrator.core.redaction import RedactingFilter, Redactor
from orchestrator.core.settings import get_settings
from orchestrator.gateway import credentials
from orchestrator.gateway.routes import Route
from orchestrator.spaces import tokens as space_tokens

API_TOKEN = "sp_" + secrets.token_urlsafe(32)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def space(uid: str = "a" * 24, name: str = "secret") -> Space:
    return Space(owner="alice", name=name, owner_id=1, uid=uid, host=f"alice-{name}")


def route(uid: str = "a" * 24, private: bool = True) -> Route:
    values = dict(
        space_id=1,
        owner_id=1,
        full_name="alice/secret",
        private=private,
        stage="RUNNING",
        error_message=None,
        address="http://127.0.0.1:1",
        host="alice-secret",
        uid=uid,
    )
    # Only the fields Route has (it grows with the gateway: host labels, redirects); the
    # ones it has grown since (sleep, the visitor queue's) keep their defaults.
    fields = {f.name for f in dataclasses.fields(Route)}
    return Route(**{k: v for k, v in values.items() if k in fields})  # type: ignore[arg-type]


def test_the_key_is_made_once_and_readable_by_its_owner_only(home: Path) -> None:
    space_tokens.issue(space(), "alice")
    key = home / space_tokens.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32


def test_a_space_jwt_opens_that_space_only_and_only_until_it_expires() -> None:
    issued = space_tokens.issue(space(), "alice")
    assert space_tokens.verify(issued.token, "a" * 24) == issued.expires_at
    assert space_tokens.verify(issued.token, "b" * 24) is None
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["sub"] == "/spaces/alice/secret" and claims["onBehalfOf"] == "alice"
    assert issued.expires_at - time.time() == pytest.approx(3600, abs=5)
    expired = jwt.encode(
        {**claims, "exp": int(time.time()) - 1}, space_tokens.signing_key(), algorithm="HS256"
    )
    assert space_tokens.verify(expired, "a" * 24) is None
    forged = jwt.encode(claims, b"not the installation's key" * 2, algorithm="HS256")
    assert space_tokens.verify(forged, "a" * 24) is None
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert space_tokens.verify(unsigned, "a" * 24) is None


def test_platform_credentials_are_stripped_and_the_apps_own_pass() -> None:
    space_jwt = space_tokens.issue(space(), "alice").token
    basic = base64.b64encode(f"user:{API_TOKEN}".encode()).decode()
    for platform_value in (f"Bearer {API_TOKEN}", f"Basic {basic}", f"Bearer {space_jwt}"):
        assert credentials.forwardable([("Authorization", platform_value)]) == []
    own = [("Authorization", "Bearer the-apps-own-token"), ("X-Other", "1")]
    assert credentials.forwardable(own) == own
    assert credentials.forwardable([("X-HF-Authorization", "Bearer anything")]) == []
    cookie = f"a=1; spaceport-space-session={space_jwt}; Spaceport-other=x; b=2"
    assert credentials.forwardable([("Cookie", cookie)]) == [("Cookie", "a=1; b=2")]
    assert credentials.forwardable([("Cookie", f"spaceport-space-session={space_jwt}")]) == []
    assert credentials.is_platform_set_cookie(b"spaceport-space-session=x; Path=/")
    assert not credentials.is_platform_set_cookie(b"session=x; Path=/")


def test_sign_becomes_a_host_only_cookie_and_leaves_the_url() -> None:
    token = space_tokens.issue(space(), "alice").token
    answer = credentials.sign_redirect(
        route(), "/page", f"a=1&__sign={token}&b=2", False, int(time.time())
    )
    assert answer.location == "/page?a=1&b=2"
    assert answer.set_cookie is not None
    attributes = [a.strip() for a in answer.set_cookie.split(";")]
    assert attributes[0] == f"{credentials.SESSION_COOKIE}={token}"
    assert {"Path=/", "HttpOnly", "SameSite=Lax"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)
    max_age = next(int(a.split("=")[1]) for a in attributes if a.startswith("Max-Age="))
    assert 3590 <= max_age <= 3600
    # Another Space's token sets no cookie (and may_visit refuses it: below), yet still
    # leaves the URL, on a public Space or for a visitor let in by another credential.
    other = space_tokens.issue(space("b" * 24, "other"), "alice").token
    for private in (True, False):
        answer = credentials.sign_redirect(route(private=private), "/", f"__sign={other}", False, 0)
        assert answer.location == "/" and answer.set_cookie is None


def test_who_may_visit_a_private_space_by_jwt() -> None:
    token = space_tokens.issue(space(), "alice").token
    other = space_tokens.issue(space("b" * 24, "other"), "alice").token
    cookie = [("cookie", f"x=1; {credentials.SESSION_COOKIE}={token}")]
    assert credentials.may_visit(route(), cookie, None)
    assert credentials.may_visit(route(), [("authorization", f"Bearer {token}")], None)
    assert credentials.may_visit(route(), [], token)
    assert not credentials.may_visit(route(), [], None)
    wrong_cookie = [("cookie", f"{credentials.SESSION_COOKIE}={other}")]
    assert not credentials.may_visit(route(), wrong_cookie, None)
    assert not credentials.may_visit(route(), [("authorization", f"Bearer {other}")], None)


def test_masking_secrets_and_anything_shaped_like_a_platform_credential() -> None:
    space_jwt = space_tokens.issue(space(), "alice").token
    mask = Redactor(["hunter2-long", "abc", "hunter2-long-and-more"])
    line = f"secret hunter2-long-and-more / hunter2-long / abc / {API_TOKEN} / {space_jwt}!"
    assert mask(line) == "secret *** / *** / abc / *** / ***!"
    assert mask("sp_short stays") == "sp_short stays"
    assert Redactor()(f"Authorization: Bearer {API_TOKEN}") == "Authorization: Bearer ***"


def test_log_records_are_masked_before_they_are_written() -> None:
    space_jwt = space_tokens.issue(space(), "alice").token
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "x",
        1,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", f"/?__sign={space_jwt}"),
        None,
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /?__sign=***"'
