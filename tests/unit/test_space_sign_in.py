"""Sign in with Spaceport inside a Space (`hf_oauth: true`), in process: the OpenID Connect
flow as authlib (under Gradio's LoginButton) runs it — discovery, the consent page, the
code sent back to the Space's own host only, the code traded once with the client secret
for an access token and an ID token signed with the published key (orchestrator/oauth/,
api/oauth.py, web/oauth_consent.py)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from sqlmodel import Session, select

from orchestrator.controller.environment import oauth_environment
from orchestrator.core import auth, db, secret_store, status
from orchestrator.core.models import ApiToken, Space, utcnow
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces
from tests.unit.in_process_api import Api
from tests.unit.test_web_pages import sign_in

CALLBACK_QUERY = urlencode({"_target_url": "/?"})


def _space(name: str, card: dict) -> Space:
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        space = spaces.get_space(session, "alice", name) or spaces.create_space(
            session, alice, name, sdk="gradio"
        )
        status.change_spec(session, space, card_data=json.dumps(card))
        session.commit()
        session.refresh(space)
        return space


def _env(space: Space) -> dict[str, str]:
    return oauth_environment(space, json.loads(space.card_data or "{}"), get_settings().public_url)


def _authorize_query(env: dict[str, str], host: str, **extra: str) -> dict[str, str]:
    """What authlib's authorize_redirect sends, with Gradio's https://SPACE_HOST callback."""
    return {
        "response_type": "code",
        "client_id": env["OAUTH_CLIENT_ID"],
        "redirect_uri": f"https://{host}/login/callback?{CALLBACK_QUERY}",
        "scope": env["OAUTH_SCOPES"],
        "state": "state-123",
        "nonce": "nonce-456",
        **extra,
    }


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


def _allow(client, csrf: str, query: dict[str, str]) -> str:  # noqa: ANN001 - TestClient
    """Allow on the consent page; the code the browser is sent back to the Space with."""
    consent = client.get("/oauth/authorize", params=query)
    assert consent.status_code == 200, consent.text
    fields = {k: query.get(k, "") for k in ("client_id", "redirect_uri", "scope", "state", "nonce")}
    fields["code_challenge"] = query.get("code_challenge", "")
    sent = client.post(
        "/oauth/authorize",
        data={"csrf": csrf, "decision": "allow", **fields},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    return sent.headers["location"]


def test_a_space_signs_a_person_in_with_the_openid_connect_flow(api: Api) -> None:
    client, _alice, _bob = api
    space = _space("login", {"hf_oauth": True, "title": "Login demo"})
    env = _env(space)
    host = f"{space.host}.{get_settings().spaces_domain}"
    assert env["OAUTH_SCOPES"] == "openid profile"

    # Discovery, as authlib reads it from OPENID_PROVIDER_URL.
    config = client.get("/.well-known/openid-configuration").json()
    issuer = env["OPENID_PROVIDER_URL"]
    assert config["issuer"] == issuer
    assert config["authorization_endpoint"] == issuer + "/oauth/authorize"
    assert config["token_endpoint"] == issuer + "/oauth/token"
    assert config["id_token_signing_alg_values_supported"] == ["ES256"]

    query = _authorize_query(env, host)
    # Not signed in to Spaceport: sign in first, then back to the same request.
    first = client.get("/oauth/authorize", params=query, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
    csrf = sign_in(client, "bob")
    consent = client.get("/oauth/authorize", params=query)
    assert "Sign in to Login demo" in consent.text and "bob" in consent.text

    back = urlsplit(_allow(client, csrf, query))
    # Back to the Space's own origin (the scheme it is really served with), same path.
    assert f"{back.scheme}://{back.netloc}" == spaces.app_url(space)
    assert back.path == "/login/callback"
    params = parse_qs(back.query)
    assert params["state"] == ["state-123"] and params["_target_url"] == ["/?"]
    code = params["code"][0]

    # The Space's server trades the code, with its secret (client_secret_basic).
    secret = env["OAUTH_CLIENT_SECRET"]
    assert secret == secret_store.oauth_client_secret(space.uid)
    trade = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": query["redirect_uri"],
    }
    wrong = client.post("/oauth/token", data=trade, headers=_basic(space.uid, "not-it"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    tokens = client.post("/oauth/token", data=trade, headers=_basic(space.uid, secret))
    assert tokens.status_code == 200, tokens.text
    issued = tokens.json()
    assert issued["token_type"] == "bearer" and issued["expires_in"] == 480 * 60
    assert tokens.headers["cache-control"] == "no-store"

    # The ID token verifies against the published key, for this Space, with the nonce.
    keys = client.get("/oauth/jwks").json()["keys"]
    header = jwt.get_unverified_header(issued["id_token"])
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(
        issued["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["ES256"],
        audience=space.uid,
        issuer=issuer,
    )
    assert claims["nonce"] == "nonce-456"
    assert claims["preferred_username"] == "bob" and claims["profile"].endswith("/bob")
    assert {"name", "picture", "sub"} <= claims.keys()  # what gr.OAuthProfile reads

    # The access token is bob's, read-only, and works for whoami and userinfo.
    bearer = {"authorization": f"Bearer {issued['access_token']}"}
    assert client.get("/api/whoami-v2", headers=bearer).json()["name"] == "bob"
    assert client.get("/oauth/userinfo", headers=bearer).json()["preferred_username"] == "bob"
    assert (
        client.post(
            "/api/repos/create",
            json={"name": "x", "type": "space", "sdk": "gradio"},
            headers=bearer,
        ).status_code
        == 403
    )

    # A code is traded once.
    again = client.post("/oauth/token", data=trade, headers=_basic(space.uid, secret))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    # And the token stops working when it expires.
    with Session(db.get_engine()) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.display_name == "Sign-in to alice/login")
        ).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert client.get("/api/whoami-v2", headers=bearer).status_code == 401


def test_a_code_goes_only_to_the_spaces_own_host_and_only_for_its_scopes(api: Api) -> None:
    client, _alice, _bob = api
    space = _space("login", {"hf_oauth": True})
    env = _env(space)
    host = f"{space.host}.{get_settings().spaces_domain}"
    csrf = sign_in(client, "bob")

    elsewhere = _authorize_query(env, host, redirect_uri="https://evil.example/login/callback")
    refused = client.get("/oauth/authorize", params=elsewhere, follow_redirects=False)
    assert refused.status_code == 400 and "own host" in refused.text  # a page, no redirect
    posted = client.post(
        "/oauth/authorize",
        data={"csrf": csrf, "decision": "allow", **elsewhere},
        follow_redirects=False,
    )
    assert posted.status_code == 400 and "location" not in posted.headers

    more = _authorize_query(env, host, scope="openid profile write-repos")
    asked = client.get("/oauth/authorize", params=more, follow_redirects=False)
    assert asked.status_code == 303 and "error=invalid_scope" in asked.headers["location"]

    unknown = _authorize_query(env, host, client_id="0" * 24)
    assert client.get("/oauth/authorize", params=unknown).status_code == 400
    without = _space("plain", {"title": "No sign-in"})
    assert (
        client.get(
            "/oauth/authorize", params=_authorize_query(env, host, client_id=without.uid)
        ).status_code
        == 400
    )

    denied = client.post(
        "/oauth/authorize",
        data={"csrf": csrf, "decision": "deny", **_authorize_query(env, host)},
        follow_redirects=False,
    )
    assert denied.status_code == 303 and "error=access_denied" in denied.headers["location"]

    # PKCE: a code asked with a challenge is only traded with its verifier.
    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    pkce = _authorize_query(env, host, code_challenge=challenge, code_challenge_method="S256")
    code = parse_qs(urlsplit(_allow(client, csrf, pkce)).query)["code"][0]
    trade = {"grant_type": "authorization_code", "code": code, "redirect_uri": pkce["redirect_uri"]}
    secret = {"client_id": space.uid, "client_secret": env["OAUTH_CLIENT_SECRET"]}  # _post
    assert (
        client.post("/oauth/token", data={**trade, **secret, "code_verifier": "w" * 50}).status_code
        == 400
    )
    # (a failed verifier does not use the code up: the right one still trades it)
    assert (
        client.post("/oauth/token", data={**trade, **secret, "code_verifier": verifier}).status_code
        == 200
    )


def test_hf_oauth_authorized_org_lets_only_its_members_sign_in(api: Api) -> None:
    client, _alice, _bob = api
    space = _space(
        "lab-only",
        {"hf_oauth": True, "hf_oauth_authorized_org": "lab", "hf_oauth_expiration_minutes": 60},
    )
    env = _env(space)
    host = f"{space.host}.{get_settings().spaces_domain}"
    sign_in(client, "bob")
    refused = client.get("/oauth/authorize", params=_authorize_query(env, host))
    assert refused.status_code == 403 and "Only members of lab" in refused.text
