"""Every input bounded (issue 7, finding 7): each limit driven through a real Spaceport, with
small limits so the tests stay small. An over-limit request gets its 4xx and changes
nothing (refs, rows, repo folders). State-touching ones run on both stacks.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests import services
from tests.conftest import STACKS
from tests.platform import Platform, git, push, sample_checkout

KIB, MIB = 1 << 10, 1 << 20
LIMITS = {
    "SPACEPORT_MAX_REQUEST_BYTES": 64 * KIB,
    "SPACEPORT_MAX_VALIDATE_YAML_BYTES": 16 * KIB,
    "SPACEPORT_MAX_README_FRONT_MATTER_BYTES": 4 * KIB,
    "SPACEPORT_MAX_COMMIT_BYTES": 2 * MIB,
    "SPACEPORT_MAX_COMMIT_FILES": 2500,
    "SPACEPORT_MAX_PUSH_BYTES": 1 * MIB,
    "SPACEPORT_MAX_LFS_OBJECT_BYTES": 4 * MIB,
    "SPACEPORT_MAX_REPO_BYTES": 8 * MIB,
    "SPACEPORT_MAX_TREE_PAGE": 100,
    "SPACEPORT_MAX_TREE_ENTRIES": 1000,
    "SPACEPORT_MAX_LOG_FOLLOWERS_PER_SPACE": 2,
    "SPACEPORT_MAX_LOG_FOLLOWERS_PER_CLIENT": 3,
    "SPACEPORT_MAX_BUILD_LOG_LINES": 20,
    "SPACEPORT_MAX_BUILDS_PER_USER": 1,
    "SPACEPORT_MAX_DOWNLOADS_PER_CLIENT": 4,
    "SPACEPORT_MAX_SPACES_PER_USER": 3,
}


@pytest.fixture(scope="module", params=STACKS)
def limited(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[Platform]:
    """A Spaceport (`spaceport up`) per stack, with the small LIMITS above."""
    stack = request.param
    home = Path(tempfile.mkdtemp(prefix=f"spaceport-limits-{stack}-"))
    port = services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
    env |= {k: str(v) for k, v in LIMITS.items()}
    env |= {
        "SPACEPORT_HOME": str(home),
        "SPACEPORT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SPACEPORT_SPACES_DOMAIN": f"localhost:{port}",
        "SPACEPORT_IMAGE_PREFIX": f"spaceport-test-{stack}",
        "SPACEPORT_INSTANCE": f"spaceport-test-limits-{uuid.uuid4().hex[:6]}",
    }
    stops = []
    if stack == "postgres-redis":
        services.require_postgres()
        services.require_redis()
        database_url, stop_pg = services.start_postgres(home / "pg")
        stops.append(stop_pg)
        broker_url, stop_redis = services.start_redis(home / "redis")
        stops.append(stop_redis)
        env |= {"SPACEPORT_DATABASE_URL": database_url, "SPACEPORT_BROKER_URL": broker_url}
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        for stop in reversed(stops):
            stop()
        shutil.rmtree(home, ignore_errors=True)


def hub(platform: Platform, token: str) -> HfApi:
    return HfApi(endpoint=platform.url, token=token)


def branch_space(platform: Platform, owner: str, name: str, token: str, workdir: Path) -> Path:
    """A Space whose files sit on branch `setup` (main stays empty: nothing builds)."""
    checkout = sample_checkout("hello", workdir)
    push(checkout, platform.git_url(owner, name, token), "main:setup")
    return checkout


def refs(platform: Platform, owner: str, name: str, token: str) -> str:
    return git(Path("."), "ls-remote", platform.git_url(owner, name, token)).stdout


def space_rows(platform: Platform, owner: str) -> list[str]:
    response = httpx.get(f"{platform.url}/api/spaces", params={"author": owner}, timeout=30)
    response.raise_for_status()
    return sorted(s["id"] for s in response.json())


def assert_refused(response: httpx.Response, status: int, setting: str) -> None:
    assert response.status_code == status, response.text
    assert setting in response.json()["error"], response.text
    assert setting in response.headers["x-error-message"]


# -- request bodies -------------------------------------------------------------------


def test_request_bodies_over_their_limit_are_refused_unread(limited: Platform) -> None:
    url = f"{limited.url}/api/validate-yaml"
    readme = "---\ntitle: x\nsdk: gradio\n---\n"
    ok = httpx.post(url, json={"content": readme, "repoType": "space"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["errors"] == []
    # Within the body limit, but more YAML than it parses for anyone: refused unparsed.
    long = "---\nsdk: gradio\n" + "".join(f"k{i}: v\n" for i in range(1500)) + "---\n"
    refused = httpx.post(url, json={"content": long, "repoType": "space"}, timeout=30)
    assert refused.status_code == 413
    assert "SPACEPORT_MAX_README_FRONT_MATTER_BYTES" in refused.json()["errors"][0]["message"]

    huge = json.dumps({"content": "a: b\n" * (2 * MIB), "repoType": "space"}).encode()
    started = time.monotonic()
    declared = httpx.post(url, content=huge, headers={"content-type": "application/json"})
    assert_refused(declared, 413, "SPACEPORT_MAX_VALIDATE_YAML_BYTES")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(huge), 64 * KIB):
            yield huge[start : start + 64 * KIB]

    chunked = httpx.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert_refused(chunked, 413, "SPACEPORT_MAX_VALIDATE_YAML_BYTES")
    # Refused at once: 10 MB of YAML used to cost 18 s of CPU here.
    assert time.monotonic() - started < 30

    # Any other route: the general limit; nothing is created.
    token = limited.token("bodies")
    body = {"type": "space", "name": "big", "sdk": "static", "description": "x" * (100 * KIB)}
    response = httpx.post(
        f"{limited.url}/api/repos/create",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert_refused(response, 413, "SPACEPORT_MAX_REQUEST_BYTES")
    assert space_rows(limited, "bodies") == []


# -- commits, pushes, LFS -------------------------------------------------------------


def _files(count: int, size: int = 8) -> list[CommitOperationAdd]:
    return [
        CommitOperationAdd(f"data/{i % 40}/file{i}.txt", (f"{i:0{size}d}\n").encode())
        for i in range(count)
    ]


def test_commit_limits_refuse_and_change_nothing(limited: Platform, workdir: Path) -> None:
    token = limited.token("committer")
    api = hub(limited, token)
    branch_space(limited, "committer", "files", token, workdir)
    before = refs(limited, "committer", "files", token)

    with pytest.raises(HfHubHTTPError) as many:
        api.create_commit(
            "committer/files",
            _files(2501),
            commit_message="too many",
            repo_type="space",
            revision="setup",
        )
    assert many.value.response.status_code == 413
    assert "SPACEPORT_MAX_COMMIT_FILES" in str(many.value)

    blob = os.urandom(int(1.8 * MIB))  # base64 in the NDJSON: over 2 MiB
    with pytest.raises(HfHubHTTPError) as large:
        api.create_commit(
            "committer/files",
            [CommitOperationAdd("big.bin", blob)],
            commit_message="too big",
            repo_type="space",
            revision="setup",
        )
    assert large.value.response.status_code == 413
    assert "SPACEPORT_MAX_COMMIT_BYTES" in str(large.value)
    assert refs(limited, "committer", "files", token) == before

    # Within the limits, thousands of files in one commit: linear in the files (a 20k-file
    # commit took 311 s when each file was checked against every other one).
    info = api.create_commit(
        "committer/files",
        _files(2000),
        commit_message="2k files",
        repo_type="space",
        revision="setup",
    )
    assert info.oid in refs(limited, "committer", "files", token)
    listed = api.list_repo_files("committer/files", repo_type="space", revision="setup")
    assert sum(p.startswith("data/") for p in listed) == 2000


def test_tree_is_paginated_and_the_client_follows_every_page(
    limited: Platform, workdir: Path
) -> None:
    token = limited.token("lister")
    api = hub(limited, token)
    checkout = branch_space(limited, "lister", "many", token, workdir)
    api.create_commit(
        "lister/many", _files(1200), commit_message="files", repo_type="space", revision="setup"
    )
    expected = set(git(checkout, "ls-files").stdout.split()) | {
        f"data/{i % 40}/file{i}.txt" for i in range(1200)
    }
    files = api.list_repo_files("lister/many", repo_type="space", revision="setup")
    assert set(files) == expected and len(files) == len(expected)

    # One page is at most SPACEPORT_MAX_TREE_PAGE entries, and says where the next one is.
    page = httpx.get(
        f"{limited.url}/api/spaces/lister/many/tree/setup",
        params={"recursive": "true"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert len(page.json()) == 100 and 'rel="next"' in page.headers["link"]
    # With expand (a `git log` per entry) pages are a twentieth of that.
    expanded = list(
        api.list_repo_tree(
            "lister/many",
            path_in_repo="data/1",
            repo_type="space",
            revision="setup",
            expand=True,
        )
    )
    assert len(expanded) == 30 and all(e.last_commit for e in expanded)
    # A revision's whole file list is bounded: past SPACEPORT_MAX_TREE_ENTRIES, 413.
    response = httpx.get(
        f"{limited.url}/api/spaces/lister/many/revision/setup",
        headers={"authorization": f"Bearer {token}"},
    )
    assert_refused(response, 413, "SPACEPORT_MAX_TREE_ENTRIES")


def test_push_over_the_limit_is_refused_and_lands_nothing(limited: Platform, workdir: Path) -> None:
    token = limited.token("pusher")
    checkout = branch_space(limited, "pusher", "big", token, workdir)
    before = refs(limited, "pusher", "big", token)
    (checkout / "noise.bin").write_bytes(os.urandom(3 * MIB))  # incompressible
    git(checkout, "add", "noise.bin")
    git(checkout, "commit", "-q", "-m", "noise")
    result = push(checkout, limited.git_url("pusher", "big", token), "main:setup", check=False)
    assert result.returncode != 0
    assert refs(limited, "pusher", "big", token) == before


def test_lfs_object_and_repo_sizes_are_bounded(limited: Platform, workdir: Path) -> None:
    token = limited.token("lfsuser")
    branch_space(limited, "lfsuser", "weights", token, workdir)
    url = f"{limited.url}/spaces/lfsuser/weights.git/info/lfs/objects/batch"
    headers = {"authorization": f"Bearer {token}", "accept": "application/vnd.git-lfs+json"}

    def batch(*sizes: int) -> httpx.Response:
        objects = [{"oid": f"{i + 1:064x}", "size": size} for i, size in enumerate(sizes)]
        body = {"operation": "upload", "transfers": ["basic"], "objects": objects}
        return httpx.post(url, json=body, headers=headers, timeout=30)

    one = batch(5 * MIB).json()["objects"][0]
    assert one["error"]["code"] == 413 and "MAX_LFS_OBJECT_BYTES" in one["error"]["message"]
    assert "actions" not in one
    room = batch(3 * MIB, 3 * MIB, 3 * MIB)  # each fits, together over the Space's 8 MiB
    assert_refused(room, 413, "SPACEPORT_MAX_REPO_BYTES")
    fits = batch(3 * MIB).json()["objects"][0]
    assert "upload" in fits["actions"]


# -- log followers, builds --------------------------------------------------------------

CHATTY_DOCKERFILE = """FROM python:3.11-slim
RUN for i in $(seq 1 60); do echo "chatty line $i"; done && echo "slow step {marker}" && sleep 300
CMD ["python3", "-m", "http.server", "7860"]
"""


def _slow_space(workdir: Path) -> Path:
    repo = workdir / f"chatty-{time.monotonic_ns()}"
    repo.mkdir()
    (repo / "README.md").write_text("---\ntitle: Chatty\nsdk: docker\napp_port: 7860\n---\n")
    # A fresh marker: the layer cache of an earlier run would skip the slow step.
    (repo / "Dockerfile").write_text(CHATTY_DOCKERFILE.format(marker=time.time_ns()))
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "slow build")
    return repo


def _build_log(platform: Platform, token: str, owner: str, name: str) -> list[str]:
    builds = platform.api(f"/api/spaces/{owner}/{name}/builds", token)
    if builds.status_code != 200 or not builds.json():
        return []
    return platform.build_log(owner, name, builds.json()[0]["id"], token).splitlines()


class Follower:
    """A client following a build log over a plain socket, so that close() really leaves
    (the server sees the connection drop, as when a visitor closes the tab)."""

    def __init__(self, url: str, token: str) -> None:
        parsed = httpx.URL(url)
        self.sock = socket.create_connection((parsed.host, parsed.port), timeout=30)
        request = (
            f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ", 2)[1])
        self.body = head.partition(b"\r\n\r\n")[2]

    def read_body(self) -> str:
        while b"SPACEPORT_" not in self.body and (chunk := self.sock.recv(4096)):
            self.body += chunk
        return self.body.decode(errors="replace")

    def close(self) -> None:
        self.sock.close()


CHATTY = ("builder", "chatty")


def test_followers_builds_and_build_logs_are_bounded(limited: Platform, workdir: Path) -> None:
    token = limited.token("builder")
    # In the background: a push follows its build's log until the build ends.
    pushing = subprocess.Popen(
        ["git", "push", "--force", limited.git_url(*CHATTY, token), "main"],
        cwd=_slow_space(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(workdir)},
    )
    try:
        _bounded_while_building(limited, token, workdir)
    finally:
        pushing.kill()
        pushing.wait()


def _bounded_while_building(limited: Platform, token: str, workdir: Path) -> None:
    deadline = time.monotonic() + 300
    # Build log lines: past SPACEPORT_MAX_BUILD_LOG_LINES, one line says so, no more kept.
    while not any("log truncated" in line for line in _build_log(limited, token, *CHATTY)):
        assert time.monotonic() < deadline, limited.log_tail()
        time.sleep(0.5)
    time.sleep(1)  # lines printed meanwhile (chatty 60, the slow step) must not be kept
    log = _build_log(limited, token, *CHATTY)
    assert sum("log truncated" in line for line in log) == 1
    assert "log truncated" in log[-1] and "SPACEPORT_MAX_BUILD_LOG_LINES" in log[-1]
    assert not any(line.endswith("chatty line 60") for line in log)

    # Followers: two per Space here; the third gets a 429 that names the setting.
    url = f"{limited.url}/api/spaces/builder/chatty/logs/build"
    first, second = Follower(url, token), Follower(url, token)
    third = Follower(url, token)
    try:
        assert first.status == second.status == 200
        assert third.status == 429
        assert "SPACEPORT_MAX_LOG_FOLLOWERS_PER_SPACE" in third.read_body()
        # A follower that leaves frees its place (its stream stops; no slot is kept).
        first.close()
        deadline = time.monotonic() + 30
        while True:
            again = Follower(url, token)
            if again.status == 200:
                again.close()
                break
            again.close()
            assert time.monotonic() < deadline, "the closed follower kept its slot"
            time.sleep(0.3)
    finally:
        for follower in (first, second, third):
            follower.close()

    # One build at a time for this user: a push to another of their Spaces is refused
    # before it lands, and so is a commit to its main.
    other = sample_checkout("hello", workdir)
    push(other, limited.git_url("builder", "other", token), "main:setup")
    before = refs(limited, "builder", "other", token)
    result = push(other, limited.git_url("builder", "other", token), "main", check=False)
    assert result.returncode != 0 and "SPACEPORT_MAX_BUILDS_PER_USER" in result.stderr
    with pytest.raises(HfHubHTTPError) as refused:
        hub(limited, token).upload_file(
            path_or_fileobj=b"x",
            path_in_repo="x.txt",
            repo_id="builder/other",
            repo_type="space",
        )
    assert refused.value.response.status_code == 429
    assert refs(limited, "builder", "other", token) == before
    hub(limited, token).delete_repo("builder/chatty", repo_type="space")  # stops the build


# -- Spaces per user, atomic creation -------------------------------------------------


def test_spaces_per_user_and_atomic_creation(limited: Platform) -> None:
    token = limited.token("maker")
    api = hub(limited, token)
    repos_dir = limited.home / "repos" / "maker"

    # A create whose secrets are refused leaves no Space behind: no row, no repo folder.
    secrets = [{"key": "TOKEN", "value": "a"}, {"key": "TOKEN", "value": "b"}]
    with pytest.raises(HfHubHTTPError) as bad:
        api.create_repo("maker/half", repo_type="space", space_sdk="static", space_secrets=secrets)
    assert bad.value.response.status_code == 400
    with pytest.raises(RepositoryNotFoundError):
        api.space_info("maker/half")
    assert space_rows(limited, "maker") == []
    assert not (repos_dir / "half.git").exists()

    for name in ("one", "two", "three"):
        api.create_repo(f"maker/{name}", repo_type="space", space_sdk="static")
    with pytest.raises(HfHubHTTPError) as full:
        api.create_repo("maker/four", repo_type="space", space_sdk="static")
    assert full.value.response.status_code == 429
    assert "SPACEPORT_MAX_SPACES_PER_USER" in str(full.value)
    with pytest.raises(HfHubHTTPError) as copy:
        api.duplicate_repo("maker/one", to_id="maker/copy", repo_type="space")
    assert copy.value.response.status_code == 429
    assert space_rows(limited, "maker") == ["maker/one", "maker/three", "maker/two"]
    assert sorted(p.name for p in repos_dir.iterdir()) == ["one.git", "three.git", "two.git"]


# -- downloads ------------------------------------------------------------------------


def _server_rss(platform: Platform) -> int:
    """RSS in bytes of the `spaceport serve` process of this platform (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"serve" in argv and str(platform.port).encode() in argv:
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            continue
    raise AssertionError("no spaceport serve process found")


def test_downloads_are_streamed_not_buffered(limited: Platform, workdir: Path) -> None:
    token = limited.token("downloader")
    checkout = sample_checkout("hello", workdir)
    size = 150 * MIB
    with open(checkout / "zeros.bin", "wb") as handle:  # a regular blob; its pack is tiny
        handle.truncate(size)
    git(checkout, "add", "zeros.bin")
    git(checkout, "commit", "-q", "-m", "zeros")
    push(checkout, limited.git_url("downloader", "big", token), "main:setup")

    url = f"{limited.url}/spaces/downloader/big/resolve/setup/zeros.bin"
    baseline = _server_rss(limited)
    peak = baseline
    received: list[int] = []
    streaming = threading.Semaphore(0)
    finish = threading.Event()

    def download() -> None:
        total = 0
        with httpx.stream("GET", url, headers={"authorization": f"Bearer {token}"}) as response:
            assert response.headers["content-length"] == str(size)
            for chunk in response.iter_bytes(1 * MIB):
                if not total:
                    streaming.release()
                    finish.wait(60)  # all four hold their place until the fifth was asked
                total += len(chunk)
                time.sleep(0.001)  # a reader slower than the server
        received.append(total)

    threads = [threading.Thread(target=download) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert streaming.acquire(timeout=60)
    # A fifth at once from the same address: 429 (SPACEPORT_MAX_DOWNLOADS_PER_CLIENT is 4).
    fifth = httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=30)
    finish.set()
    assert_refused(fifth, 429, "SPACEPORT_MAX_DOWNLOADS_PER_CLIENT")
    while any(t.is_alive() for t in threads):
        peak = max(peak, _server_rss(limited))
        time.sleep(0.05)
    assert received == [size] * 4
    # Buffered, four downloads held 4 x 150 MB; streamed, the server barely grows.
    assert peak - baseline < 80 * MIB, f"server grew by {(peak - baseline) // MIB} MiB"


def test_commit_ndjson_is_spooled_not_parsed_in_memory(limited: Platform) -> None:
    """A commit body of garbage within the size limit is a 400, not a 500."""
    token = limited.token("garbage")
    httpx.post(
        f"{limited.url}/api/repos/create",
        json={"type": "space", "name": "g", "sdk": "static"},
        headers={"authorization": f"Bearer {token}"},
    ).raise_for_status()
    response = httpx.post(
        f"{limited.url}/api/spaces/garbage/g/commit/main",
        content=base64.b64encode(os.urandom(1000)),
        headers={"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 400
