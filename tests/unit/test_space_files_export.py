"""A `space` volume's files for a Kubernetes pod (orchestrator/volumes/exports.py, the
API's /api/volumes/space-files, sandbox/kubernetes/fetch_export.py): the real API app
served by uvicorn on 127.0.0.1 serves the tar of exactly what the controller signed, and
nothing without a valid signature; the fetcher, run as the init container runs it,
unpacks it, and refuses a hostile tar (names out of its folder, links out, devices, too
large, too many files) leaving its folder empty."""

from __future__ import annotations

import http.server
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlmodel import Session

from orchestrator.core import auth, db
from orchestrator.core.models import Space, Visibility
from orchestrator.core.redaction import Redactor
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from orchestrator.volumes import exports
from orchestrator.volumes import lifecycle as volume_lifecycle
from orchestrator.volumes import mounts as volume_mounts
from orchestrator.volumes import spec as volume_spec
from sandbox.backend import SpaceFiles
from sandbox.kubernetes import fetch_export
from sandbox.kubernetes.fetch_export import FetchError

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "top.txt": b"top\n",
    "w/model.txt": b"weights v1\n",
    "w/sub/config.json": b'{"layers": 2}\n',
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _commit(space: Space, files: dict[str, bytes], tmp: Path) -> str:
    adds = []
    for index, (path, content) in enumerate(files.items()):
        source = tmp / f"content-{index}"
        source.write_bytes(content)
        adds.append(repo_commit.AddFile(path=path, source=source))
    return repo_commit.create_commit(
        repos.repo_path(space.owner, space.name),
        "refs/heads/main",
        None,
        adds,
        "add",
        ("bob", "bob@x"),
    )


@dataclass
class Served:
    base: str
    demo: Space  # alice's, mounting bob's files
    files: SpaceFiles  # its `space` volume: bob/weights' folder w at `sha`
    whole: SpaceFiles  # the same commit, whole

    def url(self, files: SpaceFiles | None = None) -> str:
        return exports.signed_url(self.base, files or self.files, self.demo.uid, 3600)


@pytest.fixture
def served(migrated_home: Path, tmp_path: Path) -> Iterator[Served]:
    from orchestrator.app import create_api

    with Session(db.get_engine(), expire_on_commit=False) as session:
        alice = auth.get_or_create_user(session, "alice")
        bob = auth.get_or_create_user(session, "bob")
        demo = spaces.create_space(session, alice, "demo", sdk="gradio")
        weights = spaces.create_space(session, bob, "weights", sdk="gradio")
        session.commit()
    sha = _commit(weights, FILES, tmp_path)
    with Session(db.get_engine(), expire_on_commit=False) as session:
        demo = spaces.get_space(session, "alice", "demo")
        assert demo is not None
        raw = [
            {"type": "space", "source": "bob/weights", "mountPath": "/w", "path": "w"},
            {"type": "space", "source": "bob/weights", "mountPath": "/all"},
        ]
        volumes = volume_spec.parse(session, volume_spec.owner_reader(session, demo), demo, raw)
        volume_lifecycle.set_volumes(session, demo, volumes, actor="alice")
        # What the controller hands the backend: the export made, the files named.
        folder, whole = volume_mounts.space_mounts(session, demo)
    assert folder.files == SpaceFiles(weights.uid, sha, "w")
    assert whole.files == SpaceFiles(weights.uid, sha, "")
    port = _free_port()
    app = create_api(migrate=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", demo, folder.files, whole.files)
    finally:
        server.should_exit = True
        thread.join(10)


def _members(body: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_a_signed_url_serves_exactly_that_folder_of_the_commit(served: Served) -> None:
    answer = httpx.get(served.url(), timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-tar"
    # Named by their path in the repo: unpacked in one folder, w/ of it is the mount.
    assert _members(answer.content) == {
        "w/model.txt": b"weights v1\n",
        "w/sub": None,
        "w/sub/config.json": b'{"layers": 2}\n',
    }
    whole = httpx.get(served.url(served.whole), timeout=30)
    assert whole.status_code == 200, whole.text
    assert {k: v for k, v in _members(whole.content).items() if v is not None} == FILES


def _with(url: str, **query: str) -> str:
    parts = httpx.URL(url)
    return str(parts.copy_merge_params(query))


def test_no_bad_expired_or_other_signature_opens_anything(served: Served) -> None:
    good = served.url()
    sig = httpx.URL(good).params["sig"]
    other_sha = SpaceFiles(served.files.space_uid, "0" * 40, served.files.path)
    refused = {
        "no signature": good.split("&sig=")[0],
        "a bad signature": _with(good, sig=("0" if sig[0] != "0" else "1") + sig[1:]),
        "another folder": _with(good, path="w/sub"),
        "the whole repo": _with(good, path=""),
        "another mounting Space": _with(good, **{"for": "0" * 24}),
        "a later expiry": _with(good, expires=str(int(httpx.URL(good).params["expires"]) + 1)),
        "another commit": good.replace(served.files.sha, other_sha.sha),
        "a made-up signature": _with(good, sig="ab" * 32),
    }
    for what, url in refused.items():
        answer = httpx.get(url, timeout=30)
        assert answer.status_code == 403, (what, answer.text)
        assert "not signed for these files" in answer.json()["error"], what
    expired = exports.signed_url(
        served.base, served.files, served.demo.uid, 300, now=time.time() - 301
    )
    answer = httpx.get(expired, timeout=30)
    assert answer.status_code == 403
    assert "has expired" in answer.json()["error"]


def test_a_source_made_private_or_unmounted_is_not_served(served: Served) -> None:
    """A valid signature is not enough: the mounting Space must still mount the source and
    its owner still read it, as when the controller signed."""
    url = served.url()
    with Session(db.get_engine()) as session:
        weights = spaces.get_space(session, "bob", "weights")
        assert weights is not None
        weights.visibility = Visibility.PRIVATE
        session.add(weights)
        session.commit()
    hidden = httpx.get(url, timeout=30)
    assert hidden.status_code == 404
    assert hidden.json()["error"] == "the Space these files are from is gone"
    with Session(db.get_engine()) as session:
        weights = spaces.get_space(session, "bob", "weights")
        assert weights is not None
        weights.visibility = Visibility.PUBLIC
        session.add(weights)
        session.commit()
        assert httpx.get(url, timeout=30).status_code == 200
        demo = spaces.get_space(session, "alice", "demo")
        assert demo is not None
        volume_lifecycle.set_volumes(session, demo, [], actor="alice")
    unmounted = httpx.get(url, timeout=30)
    assert unmounted.status_code == 403
    assert "no longer mounts these files" in unmounted.json()["error"]


def _fetch(url: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """As the init container runs it: the module, the URL in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "sandbox.kubernetes.fetch_export", str(dest), *extra],
        env={**os.environ, "SPACEPORT_EXPORT_URL": url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def test_the_fetcher_unpacks_the_signed_files(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "files"
    dest.mkdir()
    (dest / "stale.txt").write_text("a previous try's\n")  # a retried init container's
    done = _fetch(served.url(), dest)
    assert done.returncode == 0, done.stderr
    found = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert found == {"w/model.txt": b"weights v1\n", "w/sub/config.json": b'{"layers": 2}\n'}
    sig = httpx.URL(served.url()).params["sig"]
    assert sig not in done.stdout + done.stderr  # the URL's permission is never printed

    everything = tmp_path / "all"
    assert _fetch(served.url(served.whole), everything).returncode == 0
    assert (everything / "top.txt").read_bytes() == b"top\n"


def test_the_fetcher_stops_at_a_refusal_and_says_why(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "files"
    url = _with(served.url(), path="w/sub")
    done = _fetch(url, dest)
    assert done.returncode == 1
    assert "refused: HTTP 403: this Space files URL is not signed" in done.stderr
    assert httpx.URL(url).params["sig"] not in done.stderr
    assert list(dest.iterdir()) == []
    unset = subprocess.run(
        [sys.executable, "-m", "sandbox.kubernetes.fetch_export", str(dest)],
        env={k: v for k, v in os.environ.items() if k != "SPACEPORT_EXPORT_URL"}
        | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unset.returncode == 2 and "set SPACEPORT_EXPORT_URL" in unset.stderr


# -- hostile tars: served by a bare HTTP server, fetched with the module's own code -------------


@pytest.fixture
def tar_server() -> Iterator[Callable[[bytes], str]]:
    """A URL serving the given bytes as a tar."""
    body = {"tar": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(len(body["tar"])))
            self.end_headers()
            self.wfile.write(body["tar"])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(tar: bytes) -> str:
        body["tar"] = tar
        return f"http://127.0.0.1:{server.server_address[1]}/files?sig=00"

    try:
        yield serve
    finally:
        server.shutdown()
        server.server_close()


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info, None


HOSTILE = {
    "a name with ..": (_tar(_file("ok.txt"), _file("a/../../escaped.txt")), "absolute path or"),
    "an absolute name": (_tar(_file("ok.txt"), _file("/tmp/absolute.txt")), "absolute path or"),
    "a symlink out": (_tar(_file("ok.txt"), _link("out", "../../etc/passwd")), "outside"),
    "an absolute symlink": (_tar(_link("out", "/etc/passwd")), "absolute path"),
    "a hard link out": (
        _tar(_file("ok.txt"), _link("hard", "../outside.txt", tarfile.LNKTYPE)),
        "outside",
    ),
    "a device": (_tar(_file("ok.txt"), _device("null")), "not a file, a folder or a link"),
    "too large": (_tar(_file("ok.txt"), _file("big.bin", b"0" * 5000)), "larger than the limit"),
    "too many files": (_tar(*(_file(f"f{i}.txt") for i in range(12))), "more than the limit"),
    "no tar at all": (b"<html>not a tar</html>" * 40, "not a tar file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_tar_is_refused_and_leaves_nothing(
    case: str, tar_server: Callable[[bytes], str], tmp_path: Path
) -> None:
    tar, reason = HOSTILE[case]
    dest = tmp_path / "files"
    with pytest.raises(FetchError, match=reason):
        fetch_export.fetch(tar_server(tar), dest, max_bytes=4096, max_files=10, attempts=1)
    assert list(dest.iterdir()) == []  # no half of the files for the app
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"]  # nothing outside either


def test_a_harmless_tar_within_the_limits_is_unpacked(
    tar_server: Callable[[bytes], str], tmp_path: Path
) -> None:
    """The same limits and server pass a tar that keeps to them (links inside too)."""
    tar = _tar(_file("a/ok.txt", b"fine"), _link("a/same", "ok.txt"), _file("b.txt"))
    dest = tmp_path / "files"
    assert fetch_export.fetch(tar_server(tar), dest, max_bytes=4096, max_files=10) == (3, 5)
    assert (dest / "a" / "same").read_text() == "fine"


def test_signatures_are_masked_in_logs() -> None:
    line = '"GET /api/volumes/space-files/u/s?path=&for=x&expires=1&sig=' + "ab" * 32 + '"'
    assert Redactor()(line) == '"GET /api/volumes/space-files/u/s?path=&for=x&expires=1&sig=***"'
