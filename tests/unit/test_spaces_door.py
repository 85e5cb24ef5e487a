"""The sign-in door for Spaces (orchestrator/oauth/spaces_door.py): a request that arrives on
the door's address reaches the provider's machine endpoints and nothing else of the
platform, its discovery document names the door for the Space's server and the public URL
for the browser, and Spaces are told the door as OPENID_PROVIDER_URL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from orchestrator.app import create_app
from orchestrator.controller.environment import space_environment
from orchestrator.core import auth, db, status
from orchestrator.core.settings import get_settings
from orchestrator.oauth import spaces_door
from orchestrator.spaces import registry as spaces
from sandbox import security

DOOR = "172.31.250.1"
PORT = 8765


@pytest.fixture
def door_settings(migrated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACEPORT_PUBLIC_URL", f"http://localhost:{PORT}")
    monkeypatch.setenv("SPACEPORT_SPACES_PROVIDER_URL", f"http://{DOOR}:{PORT}")
    get_settings.cache_clear()


def _get(base: str, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        # httpx's ASGI transport puts the URL's host and port in scope["server"], as uvicorn
        # puts the address a connection came in on.
        transport = httpx.ASGITransport(app=create_app(migrate=False))
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return await client.get(path)

    return asyncio.run(go())


def test_the_door_serves_only_the_providers_machine_endpoints(door_settings: None) -> None:
    door, public = f"http://{DOOR}:{PORT}", f"http://localhost:{PORT}"
    through = _get(door, "/.well-known/openid-configuration")
    assert through.status_code == 200
    config = through.json()
    assert config["issuer"] == public
    assert config["authorization_endpoint"] == f"{public}/oauth/authorize"  # the browser's
    assert config["token_endpoint"] == f"{door}/oauth/token"  # the Space's server's
    assert config["jwks_uri"] == f"{door}/oauth/jwks"
    assert _get(door, "/oauth/jwks").json()["keys"]
    for elsewhere in ("/api/whoami-v2", "/api/spaces", "/", "/login", "/api/health"):
        refused = _get(door, elsewhere)
        assert refused.status_code == 404, elsewhere
        assert "sign-in provider" in refused.json()["error"]
    # The same app on its public address is all there, and names itself everywhere.
    assert _get(public, "/api/health").status_code == 200
    assert _get(public, "/.well-known/openid-configuration").json()["token_endpoint"] == (
        f"{public}/oauth/token"
    )


def test_spaces_are_told_the_door_and_the_firewall_opens_only_its_port(
    door_settings: None,
) -> None:
    from sqlmodel import Session

    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        space = spaces.create_space(session, alice, "login", sdk="gradio")
        status.change_spec(session, space, card_data=json.dumps({"hf_oauth": True}))
        session.commit()
        env = space_environment(session, space)
    assert env["OPENID_PROVIDER_URL"] == f"http://{DOOR}:{PORT}"
    rule = security.spaces_door_rule(DOOR, PORT, "inst-1")
    assert rule[:8] == ["-i", security.SPACES_BRIDGE, "-d", DOOR, "-p", "tcp", "--dport", "8765"]
    assert rule[-2:] == ["-j", "ACCEPT"] and "spaceport-door:inst-1" in rule


def test_up_opens_a_door_only_where_spaces_cant_reach_the_public_url(
    migrated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url, loopback in (
        ("http://localhost:8000", True),
        ("http://127.0.0.1:8000", True),
        ("http://spaces.localhost:8000", True),
        ("https://spaces.example.com", False),
        ("http://10.1.2.3:8000", False),
    ):
        monkeypatch.setenv("SPACEPORT_PUBLIC_URL", url)
        get_settings.cache_clear()
        assert spaces_door.public_url_is_loopback(get_settings()) is loopback, url
    monkeypatch.setenv("SPACEPORT_PUBLIC_URL", "https://spaces.example.com")
    get_settings.cache_clear()
    assert spaces_door.open_for_up(get_settings(), 8000) is None  # no backend touched
    assert spaces_door.door_host(get_settings()) is None
    assert spaces_door.provider_url(get_settings()) == "https://spaces.example.com"
