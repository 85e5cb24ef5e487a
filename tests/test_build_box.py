"""Builds in a box, through the real builder and a real Docker Engine: a hostile Dockerfile
reaches none of the host's services, no LAN or metadata address (a network namespace of the
test's own stands in for those), no host through pip's --index-url and no local URL through
ADD; memory and pids are bounded; Spaceport's own build steps run as uid 1000; the repo's
.dockerignore is honoured and nothing of Spaceport's lands in an image.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from builder.build import BuildFailed, BuildInput, build_image
from builder.recipe import RecipeError
from builder.spec import BuildOptions
from orchestrator.builds.options import build_options, build_spec
from orchestrator.core.settings import Settings
from orchestrator.spaces.config import parse_readme
from sandbox import build_network
from sandbox.backend import LABEL_INSTANCE
from tests.platform import Platform, git, push

INSTANCE = "spaceport-test-buildbox"
DOCKER_README = "---\nsdk: docker\n---\n"

# The probe a hostile build runs: every way out it can think of, one line per attempt.
PROBE = r"""
import json, os, socket, subprocess, sys, urllib.request
targets = json.load(open("/probe/targets.json"))
for host, port in targets["direct"]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("REACHED direct", host, port, flush=True)
    except OSError as exc:
        print("BLOCKED direct", host, port, exc, flush=True)
for url in targets["proxied"]:
    try:
        urllib.request.urlopen(url, timeout=10).read()
        print("REACHED proxied", url, flush=True)
    except Exception as exc:
        print("BLOCKED proxied", url, exc, flush=True)
for url in targets["index"]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--retries", "0",
         "--timeout", "5", "--index-url", url, "six"], capture_output=True, text=True)
    print(("REACHED" if done.returncode == 0 else "BLOCKED") + " index", url, flush=True)
"""


class Listener:
    """Counts TCP connections on one address: a service that must see nothing."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self.sock.close()


def tar_of(files: dict[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return out.getvalue()


@pytest.fixture(scope="module")
def home(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("buildbox-home")
    client = docker.from_env()  # the build proxy of this test installation
    for container in client.containers.list(
        ignore_removed=True, all=True, filters={"label": f"{LABEL_INSTANCE}={INSTANCE}"}
    ):
        container.remove(force=True)


def settings_for(home: Path, **changes: object) -> BuildOptions:
    """What the worker gives the builder for an installation with these settings."""
    values: dict[str, object] = dict(home=home, instance=INSTANCE, image_prefix="spaceport-test")
    values.update(changes)
    return build_options(Settings(**values))  # type: ignore[arg-type]


def build(
    settings: BuildOptions, files: dict[str, str | bytes], variables: dict[str, str] | None = None
) -> tuple[str | Exception, list[str]]:
    files = {"README.md": DOCKER_README, **files}
    lines: list[str] = []
    item = BuildInput(
        space_hint="test/buildbox",
        repo_tar=tar_of(files),
        files=frozenset(files),
        tree=uuid.uuid4().hex,  # never reuse an image: every test builds
        spec=build_spec(parse_readme(str(files["README.md"]))),
        variables=variables or {},
        no_cache=True,
    )
    try:
        output = build_image(
            docker.from_env(timeout=600), item, settings, lines.append, lambda: None
        )
    except (BuildFailed, RecipeError) as exc:
        return exc, lines
    return output.image, lines


def run_in(image: str, *command: str) -> str:
    output = docker.from_env().containers.run(
        image, list(command), remove=True, network_disabled=True, user="0"
    )
    return output.decode()


def build_gateway() -> str:
    network = docker.from_env().networks.get(build_network.BUILD_NETWORK)
    return str(network.attrs["IPAM"]["Config"][0]["Gateway"])


# -- A LAN host and a metadata-like address, both in a namespace of the test's own ------------

NETNS = "spbx-lan"
LAN_ADDRESS = "10.213.77.9"
LINK_LOCAL_ADDRESS = "169.254.77.9"
NS_HOST_SIDE = "10.213.77.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def lan_host(home: Path) -> Iterator[Path]:
    """A listener at LAN_ADDRESS and LINK_LOCAL_ADDRESS port 80, reached only through a veth
    into our own namespace (/32 routes): even a failed block reaches nothing real. Yields the
    file the listener writes one line to per connection."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is needed for the LAN stand-in")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", "spbx-h"], capture_output=True)
    _ip("netns", "add", NETNS)
    _ip("link", "add", "spbx-h", "type", "veth", "peer", "name", "spbx-n")
    _ip("link", "set", "spbx-n", "netns", NETNS)
    _ip("addr", "add", f"{NS_HOST_SIDE}/32", "dev", "spbx-h")
    _ip("link", "set", "spbx-h", "up")
    _ip("-n", NETNS, "link", "set", "lo", "up")
    _ip("-n", NETNS, "link", "set", "spbx-n", "up")
    for address in (LAN_ADDRESS, LINK_LOCAL_ADDRESS):
        _ip("-n", NETNS, "addr", "add", f"{address}/32", "dev", "spbx-n")
        _ip("route", "add", f"{address}/32", "dev", "spbx-h")
    _ip("-n", NETNS, "route", "add", f"{NS_HOST_SIDE}/32", "dev", "spbx-n")
    _ip("-n", NETNS, "route", "add", "default", "via", NS_HOST_SIDE, "dev", "spbx-n")
    seen = home / "lan-connections.log"
    seen.write_text("")
    listener = subprocess.Popen(
        [
            "ip", "netns", "exec", NETNS, "python3", "-c",
            "import socket,sys\ns=socket.socket();s.setsockopt(1,2,1);s.bind(('0.0.0.0',80));"
            "s.listen()\nwhile True:\n c,a=s.accept();open(sys.argv[1],'a').write(str(a)+'\\n')"
            ";c.close()",
            str(seen),
        ]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not seen.read_text():
            # Connect from the host until the listener has logged one: then it is up.
            try:
                socket.create_connection((LAN_ADDRESS, 80), timeout=1).close()
            except OSError:
                pass
            time.sleep(0.2)
        assert seen.read_text(), "the LAN stand-in did not come up"
        seen.write_text("")
        yield seen
    finally:
        listener.kill()
        listener.wait()
        for address in (LAN_ADDRESS, LINK_LOCAL_ADDRESS):
            subprocess.run(["ip", "route", "del", f"{address}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", "spbx-h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


# -- The tests ------------------------------------------------------------------------------


def test_a_hostile_build_reaches_no_host_lan_or_metadata_address(
    home: Path, lan_host: Path
) -> None:
    settings = settings_for(home)
    # Set the network up first, so its gateway (a host address too) can be a target.
    build(settings, {"Dockerfile": "FROM python:3.11-slim\n"})
    listeners = [Listener("127.0.0.1"), Listener("172.17.0.1"), Listener(build_gateway())]
    try:
        direct = [[lst.host, lst.port] for lst in listeners] + [
            [LAN_ADDRESS, 80],
            [LINK_LOCAL_ADDRESS, 80],
        ]
        proxied = [f"http://{lst.host}:{lst.port}/" for lst in listeners] + [
            f"http://localhost:{listeners[0].port}/",
            f"http://{LAN_ADDRESS}/",
            f"http://{LINK_LOCAL_ADDRESS}/",
            "http://169.254.169.254/latest/meta-data/",
            "https://evil.example/",
        ]
        index = [f"http://{lst.host}:{lst.port}/simple" for lst in listeners[1:]]
        targets = {"direct": direct, "proxied": proxied, "index": index}
        result, lines = build(
            settings,
            {
                "Dockerfile": "FROM python:3.11-slim\nCOPY probe /probe\n"
                "RUN python3 /probe/probe.py\n",
                "probe/probe.py": PROBE,
                "probe/targets.json": json.dumps(targets),
            },
            # A variable can't turn the proxy off or point it elsewhere.
            variables={"HTTP_PROXY": "", "NO_PROXY": "*"},
        )
        assert isinstance(result, str), lines
        attempts = [line for line in lines if "REACHED" in line or "BLOCKED" in line]
        assert len(attempts) == len(direct) + len(proxied) + len(index), lines
        assert not [line for line in attempts if "REACHED" in line], attempts
        assert any("is not an allowed package host" in line for line in attempts), attempts
        assert [lst.connections for lst in listeners] == [0, 0, 0]
        assert lan_host.read_text() == ""
    finally:
        for listener in listeners:
            listener.close()


def test_an_allowed_name_that_resolves_locally_is_refused_by_the_proxy(home: Path) -> None:
    # DNS rebinding, as the running proxy sees it: the operator allowed "localhost" (a name
    # an attacker's DNS could equally point at 127.0.0.1); its address is still refused.
    result, lines = build(
        settings_for(home, build_egress_allow=["localhost", "pypi.org"]),
        {
            "Dockerfile": "FROM python:3.11-slim\nRUN python3 -c 'import urllib.request as u; "
            'u.urlopen("http://localhost/", timeout=10)\' || true\n'
        },
    )
    assert isinstance(result, str), lines
    assert any("localhost resolves to a local address" in line for line in lines), lines


def test_pip_install_from_pypi_works_through_the_proxy(home: Path) -> None:
    result, lines = build(
        settings_for(home),
        {
            "Dockerfile": "FROM python:3.11-slim\n"
            "RUN pip install --no-cache-dir six && python3 -c 'import six; print(\"six ok\")'\n"
        },
    )
    assert isinstance(result, str), lines
    assert any("six ok" in line for line in lines)


def test_add_of_a_local_url_is_refused_before_the_daemon_fetches_it(home: Path) -> None:
    listener = Listener("127.0.0.1")
    try:
        for dockerfile in (
            f"FROM python:3.11-slim\nADD http://127.0.0.1:{listener.port}/x /x\n",
            f"from python:3.11-slim\nadd --chown=1 \\\n  http://localhost:{listener.port}/x /x\n",
            f"FROM python:3.11-slim\nARG U=http://127.0.0.1:{listener.port}/x\nADD $U /x\n",
        ):
            result, lines = build(settings_for(home), {"Dockerfile": dockerfile})
            assert isinstance(result, RecipeError), lines
            assert "ADD" in str(result) and "Dockerfile line" in str(result)
        assert listener.connections == 0
    finally:
        listener.close()


def test_an_onbuild_add_of_a_base_image_is_refused_too(home: Path) -> None:
    # An image anyone could push to a registry, with the fetch hidden in a trigger.
    listener = Listener("127.0.0.1")
    trap = f"spaceport-test/onbuild-trap:{listener.port}"
    try:
        dockerfile = f"FROM python:3.11-slim\nONBUILD ADD http://127.0.0.1:{listener.port}/x /x\n"
        docker.from_env().images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=trap, rm=True)
        result, lines = build(settings_for(home), {"Dockerfile": f"FROM {trap}\n"})
        assert isinstance(result, RecipeError), lines
        assert "ONBUILD trigger" in str(result) and "127.0.0.1" in str(result)
        assert listener.connections == 0
    finally:
        listener.close()
        docker.from_env().images.remove(trap, force=True)


def test_a_step_using_more_than_the_memory_limit_fails(home: Path) -> None:
    result, lines = build(
        settings_for(home, build_memory_mb=128),
        {
            "Dockerfile": "FROM python:3.11-slim\n"
            "RUN python3 -c 'b = bytearray(512 << 20); b[::4096] = b\"x\" * len(b[::4096])'\n"
        },
    )
    assert isinstance(result, BuildFailed), lines
    assert "137" in str(result)  # killed by the kernel's OOM killer


def test_a_fork_bomb_is_bounded_by_the_pids_limit(home: Path) -> None:
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "while n < 2000:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    n += 1\n"
        "print('forked', n, flush=True)\n"
        "os.killpg(0, 9) if False else None\n"
    )
    result, lines = build(
        settings_for(home, build_pids_limit=64),
        {
            "Dockerfile": "FROM python:3.11-slim\nCOPY bomb.py /bomb.py\n"
            "RUN python3 /bomb.py; pkill -9 -f 'python3 /bomb.py' || true\n",
            "bomb.py": bomb,
        },
    )
    forked = [int(line.split()[-1]) for line in lines if "forked" in line and "print" not in line]
    assert forked and forked[0] < 64, lines
    assert not list(Path("/sys/fs/cgroup/pids/spaceport-builds").glob(f"{INSTANCE}-*"))


def test_dockerignore_and_spaceports_files_stay_out_of_the_image(home: Path) -> None:
    result, lines = build(
        settings_for(home),
        {
            ".dockerignore": "secret.txt\nlogs/\n!logs/keep.txt\nDockerfile\n",
            "Dockerfile": "FROM python:3.11-slim\nCOPY . /app\n",
            "app.py": "print('hi')\n",
            "secret.txt": "do not ship\n",
            "logs/a.log": "x\n",
            "logs/keep.txt": "y\n",
            ".spaceport/evil": "x\n",
        },
    )
    assert isinstance(result, str), lines
    listing = sorted(run_in(result, "find", "/app").split())
    assert listing == ["/app", "/app/README.md", "/app/app.py", "/app/logs", "/app/logs/keep.txt"]


def test_a_static_space_serves_nothing_of_spaceports(home: Path) -> None:
    files: dict[str, str | bytes] = {
        "README.md": "---\nsdk: static\n---\n",
        "index.html": "<p>hi</p>",
        ".dockerignore": "draft.html\n",
        "draft.html": "x",
    }
    lines: list[str] = []
    item = BuildInput(
        space_hint="test/static",
        repo_tar=tar_of(files),
        files=frozenset(files),
        tree=uuid.uuid4().hex,
        spec=build_spec(parse_readme(str(files["README.md"]))),
        variables={},
        no_cache=True,
    )
    image = build_image(docker.from_env(), item, settings_for(home), lines.append, lambda: None)
    listing = sorted(run_in(image.image, "find", "/home/user/app").split())
    assert listing == ["/home/user/app", "/home/user/app/README.md", "/home/user/app/index.html"]


def test_the_gradio_recipe_runs_pip_as_uid_1000_and_apt_as_root(home: Path) -> None:
    files: dict[str, str | bytes] = {
        "README.md": "---\nsdk: gradio\npython_version: '3.11'\n---\n",
        "app.py": "print('hi')\n",
        "requirements.txt": "six\n",
        "packages.txt": "jq\n",  # the one root step, through the proxy too
    }
    lines: list[str] = []
    item = BuildInput(
        space_hint="test/gradio",
        repo_tar=tar_of(files),
        files=frozenset(files),
        tree=uuid.uuid4().hex,
        spec=build_spec(parse_readme(str(files["README.md"]))),
        variables={},
    )
    image = build_image(docker.from_env(), item, settings_for(home), lines.append, lambda: None)
    owners = run_in(
        image.image,
        "python",
        "-c",
        "import importlib.util as u, os; "
        "print(*(os.stat(u.find_spec(m).origin).st_uid for m in ('six', 'gradio')))",
    )
    assert owners.split() == ["1000", "1000"], lines[-20:]
    assert run_in(image.image, "find", "/opt/venv", "-user", "0").strip() == ""
    assert run_in(image.image, "jq", "--version").startswith("jq-")


# -- Through a running Spaceport: git push -> worker -> builder ------------------------------


def test_a_pushed_dockerfile_cannot_fetch_or_reach_the_host(
    platform: Platform, workdir: Path
) -> None:
    token = platform.token("mallory")
    listener = Listener("127.0.0.1")
    gateway = Listener("172.17.0.1")
    try:
        repo = workdir / "hostile"
        repo.mkdir()
        (repo / "README.md").write_text(DOCKER_README)
        (repo / "Dockerfile").write_text(
            f"FROM python:3.11-slim\nADD http://127.0.0.1:{listener.port}/x /x\n"
        )
        git(repo, "init", "-q", "--initial-branch=main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "fetch from the host")
        push(repo, platform.git_url("mallory", "hostile-add", token))
        runtime = platform.wait_for_stage("mallory", "hostile-add", token)
        assert runtime["stage"] == "BUILD_ERROR", runtime
        assert "Dockerfile line 2: ADD" in runtime["errorMessage"]
        assert "SPACEPORT_BUILD_EGRESS_ALLOW" in runtime["errorMessage"]

        probe = (
            "import socket\n"
            f"for port in ({gateway.port},):\n"
            "    try:\n"
            f"        socket.create_connection(('{gateway.host}', port), timeout=3)\n"
            "        print('REACHED', port)\n"
            "    except OSError as exc:\n"
            "        print('BLOCKED', exc)\n"
        )
        (repo / "probe.py").write_text(probe)
        (repo / "Dockerfile").write_text(
            "FROM python:3.11-slim\nCOPY probe.py /probe.py\nRUN python3 /probe.py\n"
            'CMD ["python3", "-m", "http.server", "7860"]\n'
        )
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "probe the host")
        result = push(repo, platform.git_url("mallory", "hostile-add", token))
        assert "BLOCKED" in result.stderr and "REACHED" not in result.stderr, result.stderr
        assert listener.connections == 0 and gateway.connections == 0
    finally:
        listener.close()
        gateway.close()


def test_a_static_space_serves_no_ignored_or_spaceport_file(
    platform: Platform, workdir: Path
) -> None:
    token = platform.token("sally")
    repo = workdir / "static"
    repo.mkdir()
    (repo / "README.md").write_text("---\nsdk: static\n---\n")
    (repo / "index.html").write_text("<p>public</p>")
    (repo / "draft.html").write_text("<p>not for the public</p>")
    (repo / ".dockerignore").write_text("draft.html\n")
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a static site with a draft")
    push(repo, platform.git_url("sally", "site", token))
    runtime = platform.wait_for_stage("sally", "site", token)
    assert runtime["stage"] == "RUNNING", runtime
    url = platform.api("/api/spaces/sally/site").json()["host"]
    assert "public" in httpx.get(url + "/", timeout=10).text
    for path in ("/draft.html", "/.dockerignore", "/.spaceport.Dockerfile", "/.spaceport/"):
        assert httpx.get(url + path, timeout=10).status_code == 404, path
