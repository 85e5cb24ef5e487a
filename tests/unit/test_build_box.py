"""The build box without Docker: Dockerfile checks, the filtered context, the egress proxy's
policy (and the proxy itself on loopback), the pids cgroup and the templates' users."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from builder import recipe
from builder.cgroup import build_cgroup, sweep_stale
from builder.context import SPACEPORT_DOCKERFILE, build_context
from builder.docker_build import BuildLimits
from builder.dockerfile_checks import DockerfileRefused, check_dockerfile, instructions
from orchestrator.core.settings import Settings
from sandbox import build_network
from sandbox.build_proxy_server import Policy, ProxyServer, Refused, policy_from_env

POLICY = build_network.egress_policy(Settings(home=Path("/nonexistent")))


def public(_host: str) -> list[str]:
    return ["203.0.113.80"]


def loopback(_host: str) -> list[str]:
    return ["127.0.0.1"]


# -- Dockerfile ADD / FROM checks ----------------------------------------------------------


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM x\nADD http://127.0.0.1:8080/x /x\n",
        "from x\nadd http://127.0.0.1:8080/x /x\n",  # lowercase instructions
        "FROM x\nADD --chown=1000:1000 http://localhost/x /x\n",
        "FROM x\nADD \\\n  http://169.254.169.254/latest/meta-data/ \\\n  /x\n",  # continuation
        "FROM x\nADD \\\n# a comment inside\n  http://10.0.0.1/x /x\n",
        "# escape=`\nFROM x\nADD `\n  http://[::1]/x /x\n",
        'FROM x\nADD ["http://127.0.0.1/x", "/x"]\n',  # JSON form
        "FROM x\nONBUILD ADD http://127.0.0.1/x /x\n",
        "FROM x\nARG URL=http://127.0.0.1/x\nADD $URL /x\n",  # variables: refused outright
        "FROM x\nADD ${URL} /x\n",
        "FROM x\nADD http://pypi.org@127.0.0.1/x /x\n",  # a user part: parse differentials
        "FROM x\nADD HTTP://127.0.0.1/x /x\n",
        "FROM x\nADD https://github.com/a/b.git /x\n",  # git
        "FROM x\nADD git@github.com:a/b.git /x\n",
        "FROM x\nADD https://evil.example/x /x\n",  # not an allowed host
    ],
)
def test_daemon_side_fetches_are_refused(dockerfile: str) -> None:
    with pytest.raises(DockerfileRefused, match=r"Dockerfile line \d+: ADD"):
        check_dockerfile(dockerfile, POLICY, resolve=public)


def test_an_allowed_host_that_resolves_locally_is_refused() -> None:
    # DNS rebinding: the name is allowed, its address is not.
    with pytest.raises(DockerfileRefused, match="local address"):
        check_dockerfile("FROM x\nADD https://pypi.org/x /x\n", POLICY, resolve=loopback)


def test_ordinary_adds_pass() -> None:
    check_dockerfile(
        "FROM x\nADD app.tar.gz /app/\nADD --chown=1:1 a b /c/\n"
        "ADD https://files.pythonhosted.org/packages/x.whl /tmp/\n",
        POLICY,
        resolve=public,
    )


@pytest.mark.parametrize(
    "image", ["127.0.0.1:5000/evil", "localhost:5000/x", "localhost/x", "10.1.2.3/x:1"]
)
def test_a_local_registry_in_from_is_refused(image: str) -> None:
    with pytest.raises(DockerfileRefused, match="local address"):
        check_dockerfile(f"FROM {image}\n", POLICY, resolve=lambda h: [h.strip("[]")])


def test_hub_images_and_stages_pass() -> None:
    check_dockerfile(
        "FROM python:3.11-slim AS a\nFROM ghcr.io/x/y:1\nFROM a\n", POLICY, resolve=public
    )


def test_instructions_follow_continuations_and_onbuild() -> None:
    found = list(instructions("FROM x\n\nRUN a \\\n  b\n# c\nonbuild add u v\n"))
    assert [(i.line, i.keyword) for i in found] == [(1, "FROM"), (3, "RUN"), (6, "ADD")]
    assert found[1].args.split() == ["a", "b"]


# -- The build context ---------------------------------------------------------------------


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def names_in(context: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_the_repos_dockerignore_is_honoured() -> None:
    repo = tar_of(
        {
            ".dockerignore": b"# secrets\n/secret.txt\nlogs/\n!logs/keep.txt\n**/*.pyc\n",
            "app.py": b"x",
            "secret.txt": b"s",
            "logs/a.log": b"l",
            "logs/keep.txt": b"k",
            "pkg/mod.pyc": b"c",
            ".spaceport/Dockerfile": b"FROM evil",
            SPACEPORT_DOCKERFILE: b"FROM evil",
        }
    )
    files = names_in(build_context(repo, SPACEPORT_DOCKERFILE, b"FROM good\n"))
    assert set(files) == {"app.py", "logs/keep.txt", ".dockerignore", SPACEPORT_DOCKERFILE}
    assert files[SPACEPORT_DOCKERFILE] == b"FROM good\n"
    # The daemon removes both before any COPY: nothing of Spaceport's lands in the image.
    assert files[".dockerignore"].split() == [b".dockerignore", SPACEPORT_DOCKERFILE.encode()]


def test_a_repo_dockerfile_stays_for_the_daemon_even_when_ignored() -> None:
    repo = tar_of({".dockerignore": b"Dockerfile\n*.md\n", "Dockerfile": b"FROM x", "a.md": b""})
    files = names_in(build_context(repo, "Dockerfile"))
    assert set(files) == {"Dockerfile", ".dockerignore"}
    assert b"Dockerfile" in files[".dockerignore"].split()


def test_no_dockerignore_keeps_everything_but_spaceports_files() -> None:
    files = names_in(build_context(tar_of({"./a": b"", "b/c": b""}), "Dockerfile"))
    assert set(files) == {"a", "b/c", ".dockerignore"}


# -- The egress proxy ----------------------------------------------------------------------


def test_the_policy_allows_only_package_hosts_at_public_addresses() -> None:
    policy = policy_from_env(build_network.proxy_env(Settings(home=Path("/x"))))
    assert policy.check("pypi.org", 443, ["203.0.113.80"]) == "203.0.113.80"
    assert policy.host_allowed("ftp.de.debian.org") and not policy.host_allowed("debian.org.evil")
    for host, address in [
        ("pypi.org", "127.0.0.1"),
        ("pypi.org", "169.254.169.254"),
        ("pypi.org", "10.0.0.5"),
        ("pypi.org", "172.17.0.1"),
        ("pypi.org", "::ffff:127.0.0.1"),
        ("pypi.org", "fe80::1"),
        ("evil.example", "203.0.113.80"),
    ]:
        with pytest.raises(Refused):
            policy.check(host, 443, [address])
    with pytest.raises(Refused, match="port"):
        policy.check("pypi.org", 22, ["203.0.113.80"])


def test_a_bad_blocked_network_setting_is_named() -> None:
    settings = Settings(home=Path("/x"), build_blocked_networks=["10.0.0.0/8", "nonsense"])
    with pytest.raises(build_network.BuildNetworkError, match="BUILD_BLOCKED_NETWORKS"):
        build_network.egress_policy(settings)


def test_the_debian_mirror_host_is_allowed() -> None:
    settings = Settings(home=Path("/x"), debian_mirror="http://mirror.example.net/debian")
    assert "mirror.example.net" in build_network.allowed_hosts(settings)


class Listener:
    """A TCP listener on loopback that counts connections: the target that must see none."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def ask_proxy(policy: Policy, request: bytes) -> bytes:
    async def run() -> bytes:
        server = ProxyServer(policy, log=lambda _line: None)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        listener.close()
        return answer

    return asyncio.run(run())


def test_the_proxy_refuses_local_targets_and_the_listener_sees_nothing() -> None:
    target = Listener()
    # "localhost" is allowed here on purpose: an allowed name resolving to loopback must
    # still be refused (the DNS rebinding case).
    policy = Policy(
        ("localhost", "pypi.org"),
        POLICY.blocked_networks,
        frozenset({80, 443, target.port}),
    )
    for request in [
        f"CONNECT localhost:{target.port} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"CONNECT 127.0.0.1:{target.port} HTTP/1.1\r\n\r\n",
        f"GET http://localhost:{target.port}/simple/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\n\r\n",
        f"GET http://pypi.org@127.0.0.1:{target.port}/ HTTP/1.1\r\n\r\n",
        "GET /relative HTTP/1.1\r\n\r\n",
    ]:
        answer = ask_proxy(policy, request.encode())
        assert answer.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), (request, answer)
        assert b"Spaceport build proxy" in answer
    assert target.connections == 0


# -- Limits and users ----------------------------------------------------------------------


def test_limits_become_build_api_parameters() -> None:
    params = BuildLimits(512 << 20, 1.5, "/spaceport-builds/x").params()
    assert params == {
        "memory": 512 << 20,
        "memswap": 512 << 20,
        "cpuperiod": 100_000,
        "cpuquota": 150_000,
        "cgroupparent": "/spaceport-builds/x",
    }


def test_the_pids_cgroup_is_made_and_removed(tmp_path: Path) -> None:
    for controller in ("pids", "memory"):
        (tmp_path / controller).mkdir()
    with build_cgroup("b1", 321, root=tmp_path) as parent:
        assert parent == "/spaceport-builds/b1"
        assert (tmp_path / "pids/spaceport-builds/b1/pids.max").read_text() == "321"
        (tmp_path / "memory/spaceport-builds/b1/step").mkdir(parents=True)  # as runc would
        (tmp_path / "pids/spaceport-builds/b1/pids.max").unlink()  # cgroupfs files go with rmdir
    assert not (tmp_path / "pids/spaceport-builds/b1").exists()
    assert not (tmp_path / "memory/spaceport-builds/b1").exists()
    with build_cgroup("b2", 0, root=tmp_path) as parent:
        assert parent is None


def test_only_old_cgroups_of_this_installation_are_swept(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    for name in ("mine-old", "mine-new", "theirs-old"):
        (tmp_path / "pids/spaceport-builds" / name).mkdir(parents=True)
    for name in ("mine-old", "theirs-old"):
        os.utime(tmp_path / "pids/spaceport-builds" / name, (1, 1))
    sweep_stale("mine-", 3600, root=tmp_path)
    left = sorted(p.name for p in (tmp_path / "pids/spaceport-builds").iterdir())
    assert left == ["mine-new", "theirs-old"]


def _users(dockerfile: str) -> list[tuple[str, str]]:
    """(user, instruction) for each RUN/COPY, the way the builder would run them."""
    user = "root"
    out = []
    for item in instructions(dockerfile):
        if item.keyword == "USER":
            user = item.args
        elif item.keyword in ("RUN", "COPY"):
            out.append((user, item.args))
    return out


def test_gradio_builds_run_pip_as_the_user_and_only_apt_as_root() -> None:
    text = recipe.render_gradio(
        base_image="python:3.11-slim",
        python_version="3.11",
        sdk_version="5.0.0",
        app_file="app.py",
        apt_packages=["ffmpeg"],
        has_pre_requirements=True,
        has_requirements=True,
        space_hint="a/b",
    )
    steps = _users(text)
    as_root = [args for user, args in steps if user == "root" and not args.startswith("--")]
    # The Hub's Debian packages, the user, packages.txt: nothing else runs as root.
    assert len(as_root) == 3 and "useradd" in as_root[1]
    assert "apt-get" in as_root[0] and "apt-get" in as_root[2] and "ffmpeg" in as_root[2]
    assert all(user == "1000" for user, args in steps if "pip install" in args or ".py " in args)
    assert "Acquire::http::Proxy" in text


def test_static_builds_bring_no_helper_file_in_the_context() -> None:
    text = recipe.render_static(base_image="python:3.11-slim", app_file="index.html", space_hint="")
    assert ".spaceport/" not in text and "base64 -d" in text
