"""Who keeps the build network's host firewall (SPACEPORT_BUILD_HOST_FIREWALL): the worker,
with iptables, on one machine; the Engine's host (the Helm chart's dind sidecar) in a
cluster, where the worker is unprivileged and calls no iptables at all."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from builder.spec import BuildOptions
from orchestrator.builds.options import build_options
from orchestrator.core.settings import Settings
from sandbox import build_network


def options(home: Path, **changes: Any) -> BuildOptions:
    values: dict[str, Any] = dict(
        home=home,
        instance="t",
        image_prefix="spaceport-test",
        base_image="python:{python_version}-slim",
        debian_mirror="http://deb.debian.org/debian",
        default_gradio_version="5.0.0",
        build_memory_mb=1024,
        build_cpus=1.0,
        build_pids_limit=0,
        build_timeout_seconds=60,
    )
    values.update(changes)
    return BuildOptions(**values)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """ensure_build_network with the Engine's part stubbed: what it runs is recorded."""
    ran: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(list(argv))
        return subprocess.CompletedProcess(argv, 1 if argv[1] == "-C" else 0)

    class Network:
        name = build_network.BUILD_NETWORK

    monkeypatch.setattr(build_network.subprocess, "run", run)
    monkeypatch.setattr(build_network.shutil, "which", lambda name: f"/sbin/{name}")
    monkeypatch.setattr(build_network, "_ensure_network", lambda client: Network())
    monkeypatch.setattr(build_network, "_ensure_proxy_image", lambda *a: "proxy:tag")
    monkeypatch.setattr(build_network, "_ensure_proxy", lambda *a: object())
    monkeypatch.setattr(build_network, "_address_on", lambda *a: "172.30.0.2")
    monkeypatch.setattr(build_network, "_external_firewall_noted", False)
    return ran


def test_by_default_the_worker_installs_the_host_rules(
    engine: list[list[str]], tmp_path: Path
) -> None:
    assert options(tmp_path).build_host_firewall == "manage"
    network = build_network.ensure_build_network(None, options(tmp_path), "base", print)  # type: ignore[arg-type]
    assert network.proxy_url == "http://172.30.0.2:3128"
    inserted = [argv[4:] for argv in engine if argv[:4] == ["/sbin/iptables", "-I", "INPUT", "1"]]
    assert list(reversed(inserted)) == build_network.host_firewall_rules()


def test_external_calls_no_iptables_and_says_so_once(
    engine: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Not even looked for: a worker pod has no iptables.
    monkeypatch.setattr(build_network.shutil, "which", lambda name: pytest.fail(name))
    external = options(tmp_path, build_host_firewall="external")
    with caplog.at_level(logging.INFO, logger=build_network.__name__):
        for _ in range(3):
            network = build_network.ensure_build_network(None, external, "base", print)  # type: ignore[arg-type]
            assert network.name == build_network.BUILD_NETWORK
    assert engine == []
    noted = [r for r in caplog.records if "build_host_firewall=external" in r.getMessage()]
    assert len(noted) == 1 and build_network.BUILD_BRIDGE in noted[0].getMessage()


def test_an_unknown_mode_installs_nothing_and_fails(
    engine: list[list[str]], tmp_path: Path
) -> None:
    wrong = options(tmp_path, build_host_firewall="off")
    with pytest.raises(build_network.BuildNetworkError, match="'manage' or 'external'"):
        build_network.ensure_build_network(None, wrong, "base", print)  # type: ignore[arg-type]
    assert engine == []


def test_the_setting_reaches_the_builder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings(home=tmp_path).build_host_firewall == "manage"
    monkeypatch.setenv("SPACEPORT_BUILD_HOST_FIREWALL", "external")
    settings = Settings(home=tmp_path)
    assert build_options(settings, instance="t").build_host_firewall == "external"
    monkeypatch.setenv("SPACEPORT_BUILD_HOST_FIREWALL", "off")
    with pytest.raises(ValidationError):
        Settings(home=tmp_path)
