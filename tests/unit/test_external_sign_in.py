"""Signing in to the pages through an external OpenID Connect provider (SPACEPORT_OIDC_*;
core/external_sign_in.py, web/sign_in_external.py), against a small provider of the test's
own on loopback: the authorization code flow with PKCE and a nonce, the ID token verified
against the provider's keys, a person linked by (issuer, subject) at the first sign-in and
found by it afterwards, and an existing user's name never taken over."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlmodel import Session, select

from orchestrator.core import auth, db, external_sign_in
from orchestrator.core.models import ExternalIdentity
from tests import services
from tests.unit.in_process_api import Api

CLIENT_ID, CLIENT_SECRET = "spaceport-test", "s3cret-of-the-client"


class Provider:
    """An OpenID Connect provider in miniature: whoever `person` is signs in at once."""

    def __init__(self, port: int) -> None:
        self.issuer = f"http://127.0.0.1:{port}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.person: dict[str, str] = {}
        self.wrong_nonce = False
        self.codes: dict[str, dict[str, str]] = {}
        self.app = FastAPI()
        self.app.get("/.well-known/openid-configuration")(self.discovery)
        self.app.get("/authorize")(self.authorize)
        self.app.post("/token")(self.token)
        self.app.get("/jwks")(self.jwks)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def authorize(self, request: Request) -> RedirectResponse:
        asked = request.query_params
        assert asked["client_id"] == CLIENT_ID and asked["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = dict(asked)
        back = {"code": code, "state": asked["state"]}
        return RedirectResponse(f"{asked['redirect_uri']}?{urlencode(back)}", status_code=302)

    def token(
        self, request: Request, code: str = Form(""), code_verifier: str = Form("")
    ) -> JSONResponse:
        basic = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        asked = self.codes.pop(code, None)
        digest = hashlib.sha256(code_verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if basic != f"{CLIENT_ID}:{CLIENT_SECRET}" or asked is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if challenge != asked["code_challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        now = int(time.time())
        claims = {
            **self.person,
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": "not-it" if self.wrong_nonce else asked["nonce"],
        }
        signed = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        return JSONResponse({"access_token": "x", "token_type": "bearer", "id_token": signed})

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}


_PORT = services.free_port()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    served = Provider(_PORT)
    yield served
    served.server.should_exit = True
    served.thread.join(timeout=30)


@pytest.fixture
def api_settings(provider: Provider) -> dict[str, str]:
    external_sign_in._discovered.clear()
    return {
        "SPACEPORT_OIDC_ISSUER": provider.issuer,
        "SPACEPORT_OIDC_CLIENT_ID": CLIENT_ID,
        "SPACEPORT_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "SPACEPORT_OIDC_BUTTON_LABEL": "Company SSO",
    }


def _sign_in(client: Any, next_path: str = "/spaces") -> httpx.Response:
    """The browser's round trip: Spaceport -> the provider -> Spaceport's callback."""
    start = client.get(f"/login/sso?next={next_path}", follow_redirects=False)
    assert start.status_code == 303, start.text
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302
    back = urlsplit(at_provider.headers["location"])
    assert back.path == "/login/sso/callback"
    return client.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_a_person_signs_in_through_the_provider_and_is_found_by_subject_after(
    api: Api, provider: Provider
) -> None:
    client, _alice, _bob = api
    assert "Sign in with Company SSO" in client.get("/login").text
    start = client.get("/login/sso?next=/spaces", follow_redirects=False)
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    assert asked["redirect_uri"] == ["http://localhost:8000/login/sso/callback"]
    assert asked["scope"] == ["openid profile email"] and asked["nonce"] and asked["state"]
    assert CLIENT_SECRET not in start.headers["location"]

    provider.person = {"sub": "u-100", "preferred_username": "erin", "name": "Erin E."}
    done = _sign_in(client)
    assert done.status_code == 303 and done.headers["location"] == "/spaces"
    assert 'href="/erin"' in client.get("/spaces").text  # the header: signed in as erin
    with Session(db.get_engine()) as session:
        erin = auth.find_user(session, "erin")
        assert erin is not None and erin.fullname == "Erin E."
        linked = session.exec(select(ExternalIdentity)).one()
        assert (linked.issuer, linked.subject, linked.user_id) == (
            provider.issuer,
            "u-100",
            erin.id,
        )

    # Renamed at the provider: still the same Spaceport user (found by subject).
    client.cookies.clear()
    provider.person = {"sub": "u-100", "preferred_username": "erin-renamed"}
    assert _sign_in(client).status_code == 303
    assert 'href="/erin"' in client.get("/spaces").text


def test_an_existing_name_is_never_taken_over_and_bad_answers_are_refused(
    api: Api, provider: Provider
) -> None:
    client, _alice, _bob = api
    # Someone at the provider calling themselves alice does not become Spaceport's alice.
    provider.person = {"sub": "u-666", "preferred_username": "alice"}
    refused = _sign_in(client)
    assert refused.status_code == 400 and "already exists" in refused.text
    assert "spaceport-session" not in refused.headers.get("set-cookie", "")

    provider.person = {"sub": "u-7", "preferred_username": "not a name!"}
    assert "is not a name Spaceport can use" in _sign_in(client).text

    provider.person, provider.wrong_nonce = {"sub": "u-8", "preferred_username": "gus"}, True
    try:
        bad = _sign_in(client)
    finally:
        provider.wrong_nonce = False
    assert bad.status_code == 400 and "nonce" in bad.text

    # A callback this browser did not start, or the provider's own refusal.
    forged = client.get("/login/sso/callback?code=x&state=y", follow_redirects=False)
    assert forged.status_code == 400 and "not started here" in forged.text
    denied = client.get("/login/sso/callback?error=access_denied", follow_redirects=False)
    assert denied.status_code == 400 and "access_denied" in denied.text
    with Session(db.get_engine()) as session:
        assert auth.find_user(session, "gus") is None
        assert len(session.exec(select(ExternalIdentity)).all()) == 0


def test_without_a_provider_there_is_no_sso(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _alice, _bob = api
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_OIDC_ISSUER", "")
    get_settings.cache_clear()
    assert "Sign in with" not in client.get("/login").text
    assert client.get("/login/sso").status_code == 404
