"""Bad input gets a clear 4xx and changes nothing; private and missing Spaces get one answer.

Against a real `spaceport up` on both stacks: every route the API serves (read from its
own OpenAPI document, so a new route is covered without touching this file) gets malformed
JSON, wrong types, huge numbers, NUL characters, invalid UTF-8 and lone surrogates, unknown
hardware and bad paths. None may answer 5xx (501 stays: LFS locking is documented as not
implemented), and nothing stored may change.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from tests.platform import Platform

OWNER = "hxalice"
PUBLIC, PRIVATE, MISSING = "hx-public", "hx-private", "hx-missing"

HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("application/json", b"{"),
    ("application/json", b"[1, 2]"),
    ("application/json", b'"text"'),
    ("application/json", b"null"),
    ("application/json", b'{"private": "true", "visibility": 1}'),
    (
        "application/json",
        b'{"name": 5, "key": 5, "value": 5, "seconds": "60", "flavor": 7, "operation": 5,'
        b' "objects": 5, "files": 5, "content": 5, "fromRepo": 5, "toRepo": [], "repository": 1}',
    ),
    (
        "application/json",
        b'{"seconds": 99999999999999999999999, "sleepTimeSeconds": 99999999999999999999,'
        b' "flavor": "gpu-9000", "key": "A", "value": "\\u0000", "name": "a\\u0000b",'
        b' "fromRepo": "a/b\\u0000", "toRepo": "a/\\ud800", "type": "space", "sdk": "static"}',
    ),
    (
        "application/json",
        b'{"key": "\\ud800", "value": "\\ud800", "description": "\\ud800", "name": "\\ud800",'
        b' "content": "\\ud800", "repository": "hxalice/\\ud800", "type": "space"}',
    ),
    ("application/json", b"\xff\xfe\x00not json at all"),
    (
        "application/json",
        b'{"operation": "upload", "objects": [{"oid": "a", "size": 99999999999999999999999}]}',
    ),
    ("application/json", b'{"files": [{"path": "\\u0000", "size": -1}]}'),
    ("application/json", b'{"repository": "x/y/z", "hardware": "gpu-9000"}'),
    (
        "application/json",
        b'{"key": "' + b"K" * 300 + b'", "value": "v", "description": "' + b"d" * 600 + b'"}',
    ),
    ("application/x-www-form-urlencoded", b"paths=\xff\xfe&expand=%00"),
    ("application/x-ndjson", b'{"key": "header", "value": 5}\n\xff\n{"key": "file"}\n'),
]
HOSTILE_PATH_VALUES = ["no%00body", "%ff%fe", "a" * 300, "..%2f..%2fetc", "99999999999999999999"]
HOSTILE_QUERY = (
    "limit=99999999999999999999&cursor=-5&expand=%00&recursive=maybe&direction=sideways"
    "&factory=perhaps&author=%00&search=%ff"
)


@pytest.fixture(scope="module")
def people(platform: Platform) -> dict[str, str]:
    tokens = {"alice": platform.token(OWNER), "bob": platform.token("hxbob")}
    auth = {"authorization": f"Bearer {tokens['alice']}"}
    for name, private in ((PUBLIC, False), (PRIVATE, True)):
        response = httpx.post(
            f"{platform.url}/api/repos/create",
            json={"name": name, "type": "space", "sdk": "static", "private": private},
            headers=auth,
        )
        assert response.status_code in (200, 409), response.text
    secret = httpx.post(
        f"{platform.url}/api/spaces/{OWNER}/{PUBLIC}/secrets",
        json={"key": "HX_SECRET", "value": "hx-secret-value"},
        headers=auth,
    )
    assert secret.status_code == 200, secret.text
    return tokens


def snapshot(platform: Platform) -> tuple[str, list]:
    """Every repo file's digest, and every stored row that a request could change."""
    digest = hashlib.sha256()
    for path in sorted((platform.home / "repos").rglob("*")):
        if path.is_file():
            digest.update(str(path).encode() + path.read_bytes())
    url = platform.env.get("SPACEPORT_DATABASE_URL") or f"sqlite:///{platform.home}/spaceport.db"
    engine = sqlalchemy.create_engine(url)
    queries = [
        'SELECT count(*) FROM "user"',
        "SELECT count(*) FROM apitoken",
        "SELECT count(*) FROM build",
        "SELECT owner, name, visibility, requested_hardware, sleep_time_seconds, "
        "restart_count, head_sha FROM space ORDER BY id",
        "SELECT space_id, key, value, description FROM secret ORDER BY id",
        "SELECT space_id, key, value, description FROM variable ORDER BY id",
        "SELECT count(*) FROM lfsobject",
    ]
    with engine.connect() as connection:
        rows = [[tuple(r) for r in connection.execute(sqlalchemy.text(q))] for q in queries]
    engine.dispose()
    return digest.hexdigest(), rows


def routes(platform: Platform) -> list[tuple[str, str, dict]]:
    spec = httpx.get(f"{platform.url}/openapi.json", timeout=30).json()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            found.append((method.upper(), path, operation))
    return found


def fill(path: str, hostile: str | None = None, which: int = 0) -> str:
    """The route's path with a real Space in it, or its `which`th parameter hostile."""
    values = {"owner": OWNER, "name": PUBLIC, "repo": PUBLIC, "rev": "main", "rest": "main/x"}
    values |= {"oid": "0" * 64, "build_id": "1", "path": "info/refs"}
    for index, param in enumerate(re.findall(r"{(\w+)(?::path)?}", path)):
        value = hostile if hostile is not None and index == which else values.get(param, "x")
        path = re.sub(r"{" + param + r"(?::path)?}", str(value), path)
    return path


def streamed(operation: dict) -> bool:
    """Whether the route answers Server-Sent Events (logs, events)."""
    return "text/event-stream" in str(operation.get("responses", {}).get("200", {}))


GIT_PROTOCOL = ("/info/refs", "/git-upload-pack", "/git-receive-pack", "/{repo}/{path}")


def shape_problem(response: httpx.Response) -> str | None:
    """What is wrong with a refusal's shape: {"error": message} (plus `url` on a 409 of
    create/duplicate, `message` for git-lfs, `error_description` for the OAuth token
    endpoint) and X-Error-Message (orchestrator/api/errors.py)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return f"{response.status_code} {str(body)[:60]}"
    extra = set(body) - {"error", "url", "message", "error_description"}
    if extra or not response.headers.get("x-error-message"):
        return f"{response.status_code} not the one error shape"
    return None


def test_no_bad_input_is_a_server_error_or_changes_anything(
    platform: Platform, people: dict[str, str]
) -> None:
    before = snapshot(platform)
    headers_of = [{"authorization": f"Bearer {people['alice']}"}, {}]
    failures = []
    sent = 0
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        table = routes(platform)
        assert len(table) > 20, "the API's own OpenAPI document lists its routes"
        for method, path, operation in table:
            requests: list[tuple[str, dict[str, str], bytes | None]] = []
            for value in HOSTILE_PATH_VALUES:
                for which in range(path.count("{")):
                    requests.append((fill(path, value, which), {}, None))
            requests.append(
                (fill(path) + "?" + HOSTILE_QUERY, {}, None)
                if method == "GET"
                else (fill(path, "no%00body") + "?" + HOSTILE_QUERY, {}, None)
            )
            if "requestBody" in operation or method in ("POST", "PUT", "DELETE"):
                takes_body = "requestBody" in operation
                for content_type, body in HOSTILE_BODIES:
                    target = fill(path) if takes_body else fill(path, "no%00body")
                    requests.append((target, {"content-type": content_type}, body))
            for target, extra, body in requests:
                for auth in headers_of:
                    sent += 1
                    try:
                        request = client.build_request(
                            method, target, content=body, headers={**auth, **extra}
                        )
                        # A followed stream that is accepted never ends: its status is enough.
                        response = client.send(request, stream=True)
                        if response.status_code >= 400 or not streamed(operation):
                            response.read()
                        response.close()
                    except httpx.TransportError as exc:  # a dropped connection is no answer
                        failures.append(f"{exc!r} {method} {target} {body!r:.80}")
                        continue
                    if response.status_code < 400 and method in ("POST", "PUT", "DELETE"):
                        # An odd value that is still a valid request (a branch named
                        # 99999999999999999999, a squash with a `null` body) does what it
                        # asks: what it changed is the new baseline. Refusals change nothing.
                        before = snapshot(platform)
                    if response.status_code >= 500 and response.status_code != 501:
                        failures.append(f"{response.status_code} {method} {target} {body!r:.80}")
                    elif response.status_code >= 400 and method != "HEAD":
                        # Every refusal says what is wrong, in the one error shape (git's
                        # own endpoints answer git in its text protocol).
                        assert response.content, f"{method} {target}: empty {response.status_code}"
                        # (An encoded slash makes more segments: git's catch-all answers.)
                        if not any(part in path for part in GIT_PROTOCOL) and "%2f" not in target:
                            problem = shape_problem(response)
                            if problem:
                                failures.append(f"{problem}: {method} {target} {body!r:.60}")
    assert not failures, f"{len(failures)} of {sent} requests were 5xx or misshapen:\n" + "\n".join(
        failures[:40]
    )
    assert snapshot(platform) == before, "a refused request changed what is stored"
    assert httpx.get(f"{platform.url}/api/health").status_code == 200


def test_a_string_is_not_a_boolean(platform: Platform, people: dict[str, str]) -> None:
    auth = {"authorization": f"Bearer {people['alice']}"}
    before = snapshot(platform)
    response = httpx.put(
        f"{platform.url}/api/spaces/{OWNER}/{PUBLIC}/settings",
        json={"private": "true"},
        headers=auth,
    )
    assert response.status_code == 422, response.text
    assert "private" in response.json()["error"] and "boolean" in response.json()["error"]
    assert "private" in response.headers["x-error-message"]
    created = httpx.post(
        f"{platform.url}/api/repos/create",
        json={"name": "hx-stringly", "type": "space", "sdk": "static", "private": "yes"},
        headers=auth,
    )
    assert created.status_code == 422 and "private" in created.json()["error"]
    secret = httpx.post(
        f"{platform.url}/api/spaces/{OWNER}/{PUBLIC}/secrets",
        json={"key": "NUMBER", "value": 12345},
        headers=auth,
    )
    assert secret.status_code == 422 and "value" in secret.json()["error"]
    assert "12345" not in secret.text  # a refused value is never echoed (it may be a secret)
    assert snapshot(platform) == before
    info = httpx.get(f"{platform.url}/api/spaces/{OWNER}/{PUBLIC}", headers=auth).json()
    assert info["private"] is False


def _answer(response: httpx.Response, name: str) -> tuple:
    """What a caller sees of a refusal, with the name it asked for taken out."""
    headers = {
        k: v.replace(name, "NAME")
        for k, v in response.headers.items()
        if k in ("x-error-code", "x-error-message", "www-authenticate", "content-type")
    }
    return response.status_code, response.content.replace(name.encode(), b"NAME"), headers


@pytest.mark.parametrize(
    "route",
    [
        ("GET", "/api/spaces/{space}"),
        ("GET", "/api/spaces/{space}/runtime"),
        ("GET", "/api/spaces/{space}/builds"),
        ("GET", "/api/spaces/{space}/secrets"),
        ("GET", "/api/spaces/{space}/variables"),
        ("GET", "/api/spaces/{space}/tree/main"),
        ("GET", "/api/spaces/{space}/revision/main"),
        ("GET", "/api/spaces/{space}/logs/build"),
        ("GET", "/spaces/{space}/resolve/main/README.md"),
        ("POST", "/api/spaces/{space}/pause"),
        ("POST", "/api/spaces/{space}/duplicate"),
        ("GET", "/spaces/{space}/info/refs?service=git-upload-pack"),
        ("GET", "/spaces/{space}/info/refs?service=git-receive-pack"),
        ("POST", "/spaces/{space}/git-receive-pack"),
        ("POST", "/spaces/{space}.git/info/lfs/objects/batch"),
    ],
)
def test_private_and_missing_spaces_get_one_answer(
    platform: Platform, people: dict[str, str], route: tuple[str, str]
) -> None:
    method, template = route
    body = b'{"operation": "download", "objects": []}' if "batch" in template else b"{}"
    for who in (people["bob"], None):
        answers = []
        for name in (PRIVATE, MISSING):
            url = platform.url + template.format(space=f"{OWNER}/{name}")
            headers = {"content-type": "application/json"}
            auth = httpx.BasicAuth("x", who) if who and "/spaces/" in template[:8] else None
            if who and auth is None:
                headers["authorization"] = f"Bearer {who}"
            response = httpx.request(method, url, headers=headers, auth=auth, content=body)
            assert response.status_code in (401, 404), (name, response.status_code, response.text)
            answers.append(_answer(response, name))
        assert answers[0] == answers[1], f"{method} {template} tells private from missing"


def test_git_names_a_missing_space_like_a_private_one(
    platform: Platform, people: dict[str, str], tmp_path: Path
) -> None:
    """The finding itself: a push to a missing Space in another's namespace was 403 while a
    private one was 404."""
    statuses = {}
    for name in (PRIVATE, MISSING):
        response = httpx.get(
            f"{platform.url}/spaces/{OWNER}/{name}/info/refs?service=git-receive-pack",
            auth=httpx.BasicAuth("x", people["bob"]),
        )
        statuses[name] = response.status_code
    assert statuses == {PRIVATE: 404, MISSING: 404}
