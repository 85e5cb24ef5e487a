"""Credentials stay with the platform, driven end to end: a hostile Space
(sample_spaces/credential_thief) logs and echoes every header, cookie and query it gets,
behind the real gateway, and must never see a credential the platform consumed; private
Spaces open with Space-scoped JWTs; crashed apps' secrets are masked; websocket messages
are bounded."""

from __future__ import annotations

import json
import os
import secrets
import struct
import time
from pathlib import Path

import docker
import httpx
import jwt
import pytest
import websockets.sync.client
from gradio_client import Client
from websockets.exceptions import ConnectionClosed

from tests.platform import Platform, docker_checkout, push, sample_checkout

SESSION_COOKIE = "spaceport-space-session"


@pytest.fixture(scope="module")
def people(platform: Platform) -> dict[str, str]:
    return {
        "mallory": platform.token("mallory"),  # owns the hostile Spaces
        "admin": platform.token("root", "--admin"),
        "victor": platform.token("victor"),  # visits them
    }


def create(platform: Platform, token: str, name: str, private: bool, **extra: object) -> None:
    response = httpx.post(
        f"{platform.url}/api/repos/create",
        headers={"authorization": f"Bearer {token}"},
        json={"type": "space", "name": name, "sdk": "gradio", "private": private, **extra},
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def thieves(
    platform: Platform, people: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """mallory/thief (public) and mallory/vault, mallory/vault-two (private), RUNNING."""
    workdir = tmp_path_factory.mktemp("thief")
    mallory = people["mallory"]
    for name, private in (("thief", False), ("vault", True), ("vault-two", True)):
        create(platform, mallory, name, private)
        push(
            sample_checkout("credential_thief", workdir), platform.git_url("mallory", name, mallory)
        )
    for name in ("thief", "vault", "vault-two"):
        runtime = platform.wait_for_stage("mallory", name, mallory, timeout=600)
        assert runtime["stage"] == "RUNNING", runtime
    return {name: platform.app_url("mallory", name) for name in ("thief", "vault", "vault-two")}


def container_log(platform: Platform, space: str) -> str:
    """What the app printed, read straight from Docker: what its author could ship anywhere,
    not the masked copy the API serves."""
    labels = [
        f"org.spaceport.instance={platform.env['SPACEPORT_INSTANCE']}",
        f"org.spaceport.space={space}",
    ]
    containers = docker.from_env().containers.list(ignore_removed=True, filters={"label": labels})
    return "".join(c.logs().decode(errors="replace") for c in containers)


def jwt_for(platform: Platform, space: str, token: str | None) -> httpx.Response:
    return platform.api(f"/api/spaces/{space}/jwt", token)


def assert_no_credentials(seen: dict, *values: str) -> None:
    text = json.dumps(seen)
    for value in values:
        assert value not in text, f"the app saw a credential: {seen}"
    headers = {k.lower() for k in seen["headers"]}
    assert "x-hf-authorization" not in headers
    assert not any(name.lower().startswith("spaceport") for name in seen["cookies"])


def test_a_public_space_never_sees_its_visitors_tokens(
    platform: Platform, people: dict[str, str], thieves: dict[str, str]
) -> None:
    victor = people["victor"]
    someone_elses = jwt_for(platform, "mallory/vault", people["mallory"]).json()["token"]
    response = httpx.get(
        thieves["thief"] + "/anything?q=1",
        headers={
            "authorization": f"Bearer {victor}",
            "x-hf-authorization": f"Bearer {victor}",
            "cookie": f"{SESSION_COOKIE}={someone_elses}; app-cookie=kept",
        },
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert_no_credentials(seen, victor, someone_elses)
    assert "authorization" not in seen["headers"]
    assert seen["cookies"] == {"app-cookie": "kept"} and seen["query"] == "q=1"
    # The app's own Authorization (not a platform credential) still reaches it.
    own = httpx.get(thieves["thief"] + "/x", headers={"authorization": "Bearer app-own-key"})
    assert own.json()["headers"]["authorization"] == "Bearer app-own-key"
    # Websockets too.
    url = "ws" + thieves["thief"].removeprefix("http") + "/ws"
    headers = {"authorization": f"Bearer {victor}", "x-hf-authorization": f"Bearer {victor}"}
    with websockets.sync.client.connect(url, additional_headers=headers) as ws:
        assert_no_credentials(json.loads(ws.recv(timeout=10)), victor)
    assert victor not in container_log(platform, "mallory/thief")


def test_owner_and_admin_visit_a_private_space_and_leak_nothing(
    platform: Platform, people: dict[str, str], thieves: dict[str, str]
) -> None:
    for who in ("mallory", "admin"):
        token = people[who]
        response = httpx.get(
            thieves["vault"] + "/page",
            headers={"authorization": f"Bearer {token}", "x-hf-authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, (who, response.text)
        assert_no_credentials(response.json(), token)
    stranger = httpx.get(
        thieves["vault"] + "/page", headers={"authorization": f"Bearer {people['victor']}"}
    )
    assert stranger.status_code == 404 and "no Space here" in stranger.text
    # The admin's token is nowhere in what the app printed, nor in the run log it serves.
    assert people["admin"] not in container_log(platform, "mallory/vault")
    with httpx.stream(
        "GET",
        f"{platform.url}/api/spaces/mallory/vault/logs/run",
        params={"follow": "false"},
        headers={"authorization": f"Bearer {people['mallory']}"},
    ) as log:
        text = "".join(log.iter_text())
    assert "SEEN" in text and people["admin"] not in text


def test_the_jwt_endpoint_gives_a_token_to_those_who_see_the_space(
    platform: Platform, people: dict[str, str], thieves: dict[str, str]
) -> None:
    mine = jwt_for(platform, "mallory/vault", people["mallory"])
    assert mine.status_code == 200
    body = mine.json()
    assert set(body) == {"token", "exp"} and body["exp"] > time.time() + 600
    missing = jwt_for(platform, "mallory/no-such-space", people["victor"])
    for who in ("victor", None):
        refused = jwt_for(platform, "mallory/vault", people[who] if who else None)
        assert refused.status_code == 404 == missing.status_code
        assert refused.headers["x-error-code"] == missing.headers["x-error-code"]
    # A public Space: anyone, anonymous included.
    assert jwt_for(platform, "mallory/thief", None).status_code == 200


def test_a_jwt_opens_its_own_private_space_by_a_host_only_cookie(
    platform: Platform, people: dict[str, str], thieves: dict[str, str]
) -> None:
    token = jwt_for(platform, "mallory/vault", people["mallory"]).json()["token"]
    vault, vault_two = thieves["vault"], thieves["vault-two"]
    assert httpx.get(vault + "/page").status_code == 404  # nothing without a credential

    signed = httpx.get(vault + f"/page?a=1&__sign={token}", follow_redirects=False)
    assert signed.status_code == 302
    assert signed.headers["location"] == "/page?a=1"
    cookie = signed.headers["set-cookie"]
    attributes = [a.strip() for a in cookie.split(";")]
    assert attributes[0] == f"{SESSION_COOKIE}={token}"
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)  # host-only
    assert 3500 < int(next(a for a in attributes if a.startswith("Max-Age="))[8:]) <= 3600

    # A browser follows the redirect with the cookie: the Space opens, and sees neither.
    with httpx.Client() as browser:
        page = browser.get(vault + f"/page?a=1&__sign={token}", follow_redirects=True)
        assert page.status_code == 200, page.text
        assert_no_credentials(page.json(), token)
        assert page.json()["query"] == "a=1"
        assert browser.get(vault + "/again").status_code == 200  # the cookie alone
        # httpx keeps the host-only cookie to its host: the sibling Space gets none.
        assert browser.get(vault_two + "/page").status_code == 404
    # A token for vault never opens vault-two, however it is presented.
    for response in (
        httpx.get(vault_two + f"/?__sign={token}", follow_redirects=False),
        httpx.get(vault_two + "/", headers={"cookie": f"{SESSION_COOKIE}={token}"}),
        httpx.get(vault_two + "/", headers={"authorization": f"Bearer {token}"}),
    ):
        assert response.status_code == 404
    # As a Bearer token on its own host it works, and is stripped too.
    bearer = httpx.get(vault + "/b", headers={"authorization": f"Bearer {token}"})
    assert bearer.status_code == 200 and "authorization" not in bearer.json()["headers"]
    # A websocket with the cookie.
    url = "ws" + vault.removeprefix("http") + "/ws"
    cookie_header = {"cookie": f"{SESSION_COOKIE}={token}"}
    with websockets.sync.client.connect(url, additional_headers=cookie_header) as ws:
        assert_no_credentials(json.loads(ws.recv(timeout=10)), token)
    # A websocket can't follow a redirect: __sign is taken as a credential, then dropped.
    with websockets.sync.client.connect(url + f"?x=1&__sign={token}") as ws:
        seen = json.loads(ws.recv(timeout=10))
        assert_no_credentials(seen, token)
        assert seen["query"] == "x=1"
    assert token not in container_log(platform, "mallory/vault")
    # Nor in the platform's own log, whose access lines name every URL followed.
    platform_log = (platform.home / "logs" / "up.log").read_text(errors="replace")
    assert "__sign=***" in platform_log and token not in platform_log


def test_an_expired_or_forged_jwt_is_refused(
    platform: Platform, people: dict[str, str], thieves: dict[str, str]
) -> None:
    token = jwt_for(platform, "mallory/vault", people["mallory"]).json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    key = (platform.home / "space-jwt.key").read_bytes()
    assert oct((platform.home / "space-jwt.key").stat().st_mode & 0o777) == "0o600"
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, key, algorithm="HS256")
    forged = jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
    for bad in (expired, forged):
        for response in (
            httpx.get(thieves["vault"] + f"/?__sign={bad}", follow_redirects=False),
            httpx.get(thieves["vault"] + "/", headers={"cookie": f"{SESSION_COOKIE}={bad}"}),
            httpx.get(thieves["vault"] + "/", headers={"authorization": f"Bearer {bad}"}),
        ):
            assert response.status_code == 404 and "no Space here" in response.text
    # The owner, let in by their API token, is redirected without the bad token, no cookie.
    owner = httpx.get(
        thieves["vault"] + f"/?__sign={expired}",
        headers={"authorization": f"Bearer {people['mallory']}"},
        follow_redirects=False,
    )
    assert owner.status_code == 302 and "set-cookie" not in owner.headers


def test_a_space_cannot_plant_the_platform_cookie(thieves: dict[str, str]) -> None:
    response = httpx.get(thieves["thief"] + "/set-cookie")
    set_cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("app-cookie=") for c in set_cookies)
    assert not any(c.lower().startswith("spaceport") for c in set_cookies), set_cookies


def test_gradio_client_reaches_a_private_space_with_its_token(
    platform: Platform, people: dict[str, str], workdir: Path
) -> None:
    mallory = people["mallory"]
    create(platform, mallory, "private-hello", True)
    push(sample_checkout("hello", workdir), platform.git_url("mallory", "private-hello", mallory))
    runtime = platform.wait_for_stage("mallory", "private-hello", mallory, timeout=600)
    assert runtime["stage"] == "RUNNING", runtime
    client = Client(platform.app_url("mallory", "private-hello"), token=mallory, verbose=False)
    assert client.predict("World", api_name="/predict") == "Hello, World!"


def test_a_crashed_apps_secrets_are_masked_everywhere(
    platform: Platform, people: dict[str, str], workdir: Path
) -> None:
    mallory = people["mallory"]
    leaked = "leak-" + secrets.token_hex(8)
    token_shaped = "sp_" + secrets.token_urlsafe(32)
    create(
        platform,
        mallory,
        "leaky",
        False,
        secrets=[{"key": "LEAKED", "value": leaked}],
        variables=[{"key": "CRASH", "value": "1"}, {"key": "TOKEN_SHAPED", "value": token_shaped}],
    )
    push(
        sample_checkout("credential_thief", workdir), platform.git_url("mallory", "leaky", mallory)
    )
    runtime = platform.wait_for_stage("mallory", "leaky", timeout=600)
    assert runtime["stage"] == "RUNTIME_ERROR", runtime
    assert "starting with LEAKED=***" in runtime["errorMessage"]
    assert "token in my config: ***" in runtime["errorMessage"]
    info = platform.api("/api/spaces/mallory/leaky").json()
    page = httpx.get(platform.app_url("mallory", "leaky"))
    with httpx.stream(
        "GET", f"{platform.url}/api/spaces/mallory/leaky/logs/run", params={"follow": "false"}
    ) as response:
        run_log = "".join(response.iter_text())
    assert "LEAKED=***" in run_log
    listed = platform.api("/api/spaces?author=mallory&full=true").text
    for text in (runtime["errorMessage"], json.dumps(info), page.text, run_log, listed):
        assert leaked not in text and token_shaped not in text


def _oversized_frame_header(length: int) -> bytes:
    """A masked binary frame's header announcing `length` bytes (RFC 6455, 64-bit length)."""
    return struct.pack("!BBQ", 0x82, 0x80 | 127, length) + os.urandom(4)


def gateway_peak_memory(platform: Platform) -> int:
    """Peak resident memory (VmHWM, bytes) of this platform's API server, the process that
    runs the gateway: a message it buffered whole would raise it, even if freed since."""
    wanted = ["serve", "--port", str(platform.port)]
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode().split("\0")
            if "orchestrator.cli" not in args or not all(w in args for w in wanted):
                continue
            status = (proc / "status").read_text()
        except (OSError, UnicodeDecodeError):
            continue  # gone meanwhile, or not ours to read
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    raise AssertionError("the API server's process was not found")


def test_oversized_websocket_messages_are_refused_both_ways(
    platform: Platform, thieves: dict[str, str]
) -> None:
    url = "ws" + thieves["thief"].removeprefix("http") + "/ws"
    limit = 16 * 2**20
    before = gateway_peak_memory(platform)
    with websockets.sync.client.connect(url, max_size=None) as ws:
        ws.recv(timeout=10)
        ws.send("big 1000000")
        assert len(ws.recv(timeout=30)) == 1_000_000  # within the limit: carried
        ws.send(f"big {limit + 1}")  # the app answers past the limit
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # A visitor announces a 300 MB message and sends only its first 64 KiB: refused on
    # the frame header alone, so the gateway never buffers it.
    with websockets.sync.client.connect(url) as ws:
        ws.recv(timeout=10)
        ws.socket.sendall(_oversized_frame_header(300 * 2**20) + os.urandom(64 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # The app sends 64 MiB at once (what its 0.5 GiB test tier can build): refused on the
    # frame header too, so the gateway's memory does not grow by the message.
    with websockets.sync.client.connect(url, max_size=None) as ws:
        ws.recv(timeout=10)
        ws.send(f"big {64 * 2**20}")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert gateway_peak_memory(platform) - before < 32 * 2**20
    # The Space itself is fine afterwards.
    assert httpx.get(thieves["thief"] + "/ok").status_code == 200


def test_a_build_that_prints_a_secret_shows_it_masked(
    platform: Platform, people: dict[str, str], workdir: Path
) -> None:
    mallory = people["mallory"]
    leaked = "build-leak-" + secrets.token_hex(8)
    token_shaped = "sp_" + secrets.token_urlsafe(32)
    create(
        platform,
        mallory,
        "leaky-build",
        False,
        sdk="docker",
        secrets=[{"key": "CONFIG_KEY", "value": leaked}],
    )
    repo = docker_checkout(
        workdir,
        "leaky-build",
        "FROM python:3.11-slim\n"
        f'RUN echo "configured with {leaked} and {token_shaped}"\n'
        'CMD ["python", "-m", "http.server", "7860"]\n',
        "a Dockerfile that prints what it should not",
    )
    pushed = push(repo, platform.git_url("mallory", "leaky-build", mallory))
    platform.wait_for_stage("mallory", "leaky-build", timeout=600)
    build = platform.builds("mallory", "leaky-build")[0]
    stored = platform.build_log("mallory", "leaky-build", build["id"])
    with httpx.stream(
        "GET", f"{platform.url}/api/spaces/mallory/leaky-build/logs/build"
    ) as response:
        served = "".join(response.iter_text())
    assert "configured with *** and ***" in stored
    for text in (stored, served, pushed.stdout + pushed.stderr):
        assert leaked not in text and token_shaped not in text
