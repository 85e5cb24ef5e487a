"""BuildKit builds of docker Spaces, without Docker: the heredoc-aware Dockerfile parse (a
heredoc's lines are no instructions, and nothing BuildKit reads as an instruction is skipped),
the features refused with the line to change, buildctl's command line (secret values only
in its environment), named contexts, the daemon's container settings, the registry mirror."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from builder import buildkit_build, buildkit_checks, recipe
from builder.buildkit_build import BuildKitRequest, buildctl_argv, familiar_name
from builder.dockerfile_checks import DockerfileRefused, check_dockerfile, instructions
from builder.registry_mirror import mirror_ref
from sandbox import buildkit
from sandbox.build_proxy_server import policy_from_env

ROOT = Path(__file__).resolve().parents[2]
POLICY = policy_from_env({"SPACEPORT_PROXY_ALLOW": "pypi.org", "SPACEPORT_PROXY_BLOCK": ""})


def resolve(host: str) -> list[str]:
    return {"pypi.org": ["151.101.0.223"]}.get(host, ["127.0.0.1"])


def test_the_script_builds_the_version_the_builder_expects() -> None:
    script = (ROOT / "scripts" / "build_buildkit.sh").read_text()
    match = re.search(r'VERSION="\$\{BUILDKIT_VERSION:-(v[0-9.]+)\}"', script)
    assert match and match.group(1) == buildkit_build.BUILDKIT_VERSION
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "build_buildkit.sh" in bootstrap and "skopeo" in bootstrap


def test_heredoc_lines_are_not_instructions() -> None:
    text = (
        "FROM python:3.11-slim\n"
        "RUN <<EOF\n"
        "from os import path\n"
        "ADD http://127.0.0.1/x /y\n"
        "EOF\n"
        'COPY <<-"A" /a <<B /b\n'
        "\thi\n"
        "\tA\n"
        "bee\n"
        "B\n"
        'CMD ["python"]\n'
    )
    items = list(instructions(text))
    assert [i.keyword for i in items] == ["FROM", "RUN", "COPY", "CMD"]
    assert items[1].heredocs == ("from os import path\nADD http://127.0.0.1/x /y\n",)
    assert items[2].heredocs == ("\thi\n", "bee\n")
    check_dockerfile(text, POLICY, resolve)  # the ADD is a line of a script: not refused
    assert recipe.dockerfile_base_images(text) == ["python:3.11-slim"]


@pytest.mark.parametrize(
    "opener",
    [
        'RUN echo "a <<EOF b"',  # quoted: BuildKit sees no heredoc
        "RUN echo a<<EOF",  # not a word of its own
        'RUN ["sh", "-c", "cat <<EOF"]',  # the JSON form has none
        "CMD cat <<EOF",  # only RUN, COPY and ADD have heredocs
    ],
)
def test_what_buildkit_reads_as_an_instruction_is_never_skipped(opener: str) -> None:
    text = f"FROM python:3.11-slim\n{opener}\nADD http://127.0.0.1/x /y\nEOF\n"
    with pytest.raises(DockerfileRefused, match="line 3: ADD"):
        check_dockerfile(text, POLICY, resolve)


def test_an_onbuild_heredoc_and_an_unclosed_one() -> None:
    items = list(instructions("FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN true\n"))
    assert [(i.keyword, i.heredocs) for i in items] == [
        ("FROM", ()),
        ("RUN", ("echo hi\n",)),
        ("RUN", ()),
    ]
    with pytest.raises(DockerfileRefused, match="never closed"):
        list(instructions("FROM x\nRUN <<EOF\necho hi\n"))
    with pytest.raises(DockerfileRefused, match="quote the whole name"):
        list(instructions("FROM x\nRUN <<E'O'F\necho hi\nEOF\n"))


@pytest.mark.parametrize(
    ("step", "named"),
    [
        ("RUN --mount=type=ssh git clone git@github.com:x/y", "--mount=type=ssh"),
        ("RUN --network=host curl http://127.0.0.1", "--network=host"),
        ("RUN --security=insecure mount -t tmpfs x /mnt", "--security=insecure"),
    ],
)
def test_features_spaceport_cannot_give_are_refused_with_the_line(step: str, named: str) -> None:
    with pytest.raises(DockerfileRefused, match=rf"Dockerfile line 2: RUN {re.escape(named)}"):
        buildkit_checks.plan(f"FROM python:3.11-slim\n{step}\n")


def test_the_plan_lists_secrets_and_the_syntax_line() -> None:
    plan = buildkit_checks.plan(
        "# syntax=docker/dockerfile:1.7\n"
        "FROM python:3.11-slim\n"
        "RUN --mount=type=secret,id=TOKEN,mode=0444,required=true cat /run/secrets/TOKEN\n"
        "RUN --mount=type=secret,target=/run/secrets/OTHER --mount=type=cache,target=/c true\n"
        "RUN --network=none true\n"
    )
    assert plan.syntax == "docker/dockerfile:1.7"
    assert plan.secret_ids == ["TOKEN", "OTHER"]
    assert plan.required_secrets == {"TOKEN": 3}
    assert buildkit_checks.plan("FROM x\n# syntax=late\n").syntax is None


def test_secret_values_go_to_buildctls_environment_only(tmp_path: Path) -> None:
    request = BuildKitRequest(
        context=b"",
        dockerfile="Dockerfile",
        tag="p/space:abc",
        build_args={"GREETING": "hi", "HTTP_PROXY": "http://10.0.0.2:3128"},
        base_images={"docker.io/library/python:3.11-slim": "python:3.11-slim"},
        secrets={"TOKEN": "value-of-the-secret"},
        no_cache=True,
    )
    argv, env = buildctl_argv(
        Path("/bin/buildctl"),
        "unix:///s",
        tmp_path / "context",
        tmp_path / "dockerfile",
        "Dockerfile",
        tmp_path / "image.tar",
        request,
        {"docker.io/library/python:3.11-slim": "oci-layout://engine@sha256:aa"},
        tmp_path / "layout",
    )
    assert not [word for word in argv if "value-of-the-secret" in word]
    assert ["--secret", "id=TOKEN,env=SPACEPORT_BUILD_SECRET_0"] == argv[
        argv.index("--secret") : argv.index("--secret") + 2
    ]
    assert env["SPACEPORT_BUILD_SECRET_0"] == "value-of-the-secret"
    assert "context:python:3.11-slim=oci-layout://engine@sha256:aa" in argv
    assert f"engine={tmp_path / 'layout'}" in argv
    assert "build-arg:GREETING=hi" in argv and "cmdline=" in argv and "--no-cache" in argv
    output = argv[argv.index("--output") + 1]
    assert output.startswith("type=docker,name=p/space:abc,dest=")


def test_familiar_names_match_the_frontends_lookup() -> None:
    assert familiar_name("docker.io/library/python:3.11-slim") == "python:3.11-slim"
    assert familiar_name("python:latest") == "python"
    assert familiar_name("docker.io/someone/app:1") == "someone/app:1"
    assert familiar_name("ghcr.io/x/y:2") == "ghcr.io/x/y:2"


def test_buildctls_last_error_line_is_the_message() -> None:
    lines = ["#5 [2/2] RUN exit 3", "#5 ERROR: process did not complete", "error: failed: code 3"]
    assert buildkit_build.error_message(lines) == "failed: code 3"
    assert buildkit_build.error_message([]).startswith("BuildKit failed")


def test_the_secrets_in_a_tag_are_keyed_not_plainly_hashed(tmp_path: Path) -> None:
    first = buildkit_build.secrets_digest(tmp_path, {"TOKEN": "one"})
    assert first == buildkit_build.secrets_digest(tmp_path, {"TOKEN": "one"})
    assert first != buildkit_build.secrets_digest(tmp_path, {"TOKEN": "two"})
    assert hashlib.sha256(b"one").hexdigest()[:32] != first
    assert (tmp_path / "buildkit" / "tag-key").stat().st_mode & 0o077 == 0
    assert buildkit_build.secrets_digest(tmp_path, {}) == ""


def test_the_daemon_shares_the_build_networks_namespace_within_limits(tmp_path: Path) -> None:
    command = buildkit.daemon_command(1000)
    assert "--oci-worker-net=host" in command and "--group" in command
    config = buildkit.DaemonConfig("inst", "p", tmp_path, tmp_path, 1024, 1.5, 64)
    assert buildkit.limits(config) == {
        "mem_limit": (1024 + buildkit.DAEMON_MEMORY_MB) << 20,
        "memswap_limit": (1024 + buildkit.DAEMON_MEMORY_MB) << 20,
        "nano_cpus": 1_500_000_000,
        "pids_limit": 64 + buildkit.DAEMON_PIDS,
    }
    long_home = Path("/" + "h" * 60)
    socket = buildkit.socket_dir(long_home, "spaceport-test-sqlite-embedded-abcdef")
    assert len(str(socket / buildkit.SOCKET_NAME)) < buildkit.UNIX_PATH_MAX
    assert "runc" in buildkit.daemon_dockerfile("base:1")


def test_missing_binaries_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(buildkit.BuildKitError, match="scripts/build_buildkit.sh"):
        buildkit.binaries(tmp_path)


def test_the_registry_mirror_serves_docker_hub_names() -> None:
    assert mirror_ref("m:5000", "python:3.11-slim") == "m:5000/library/python:3.11-slim"
    assert mirror_ref("https://m/", "someone/app:1") == "m/someone/app:1"
    assert mirror_ref("m", "docker.io/library/node:20") == "m/library/node:20"
    assert mirror_ref("m", "ghcr.io/x/y:1") is None
    assert mirror_ref("", "python:3.11") is None


def test_a_builds_cgroup_is_placed_in_the_daemons_and_limited_like_classic_steps(
    tmp_path: Path,
) -> None:
    dirs = buildkit._daemon_cgroups(os.getpid(), tmp_path)  # noqa: SLF001
    assert dirs and all(str(path).startswith(str(tmp_path)) for path in dirs.values())
    files = buildkit._limit_files(cpus=1.5, memory_bytes=512 << 20, pids_max=64)  # noqa: SLF001
    assert ("memory", "memory.limit_in_bytes", str(512 << 20)) in files
    assert ("memory", "memory.memsw.limit_in_bytes", str(512 << 20)) in files  # no swap
    assert ("cpu", "cpu.cfs_quota_us", "150000") in files
    assert ("pids", "pids.max", "64") in files
    assert not [f for f in buildkit._limit_files(1, 1, 0) if f[0] == "pids"]  # noqa: SLF001
    # The limit comes before the swap limit: the kernel refuses memsw below memory.
    names = [name for _, name, _ in files]
    assert names.index("memory.limit_in_bytes") < names.index("memory.memsw.limit_in_bytes")
