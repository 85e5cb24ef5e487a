"""SPACEPORT_REGISTRY without servers: the setting's shape, what a failed push says, that the
password stays out of reprs and messages, and which pulls the Docker backend logs in for.
(tests/test_registry_images.py does it all against a real registry and Engine.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker.errors import ImageNotFound
from pydantic import ValidationError

from builder.registry_push import RegistryTarget, push_failure, repository
from builder.spec import BuildOptions
from orchestrator.core.settings import Settings
from sandbox.backend import BackendError, Revision
from sandbox.docker_backend import DockerBackend
from sandbox.hardware import sized_tier

PASSWORD = "hunter2-registry"


@pytest.mark.parametrize(
    "value", ["127.0.0.1:5000", "registry.example.org/spaceport", "r.example.org:443/a/b-c"]
)
def test_registry_setting_takes_host_port_and_prefix(value: str) -> None:
    assert Settings(registry=value + "/").registry == value


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:5000", "r.example.org/Upper", "r.example.org/a:tag", "a b"]
)
def test_registry_setting_refuses_what_is_not_a_registry(value: str) -> None:
    with pytest.raises(ValidationError, match="host\\[:port\\]\\[/prefix\\]"):
        Settings(registry=value)


def test_the_password_is_in_no_repr() -> None:
    settings = Settings(registry="127.0.0.1:5000", registry_password=PASSWORD)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.registry_password)
    options = BuildOptions(
        home=Path("/tmp"),
        instance="i",
        image_prefix="p",
        base_image="b",
        debian_mirror="m",
        default_gradio_version="1",
        build_memory_mb=1,
        build_cpus=1,
        build_pids_limit=0,
        build_timeout_seconds=1,
        registry_password=PASSWORD,
    )
    assert PASSWORD not in repr(options)
    assert PASSWORD not in repr(RegistryTarget("h", "u", PASSWORD))


def test_a_space_repository_is_named_by_its_uid() -> None:
    target = RegistryTarget("registry.example.org/spaceport")
    assert repository(target, "ABCDEF0123456789abcdef01") == (
        "registry.example.org/spaceport/abcdef0123456789abcdef01"
    )


def test_a_failed_push_says_what_to_fix() -> None:
    target = RegistryTarget("127.0.0.1:5000/x", "bob", PASSWORD)
    refused = push_failure(target, "unauthorized: authentication required")
    assert "refused the credentials" in refused and "SPACEPORT_REGISTRY_PASSWORD" in refused
    unreachable = push_failure(
        target, 'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connection refused'
    )
    assert "could not be reached" in unreachable and "SPACEPORT_REGISTRY" in unreachable
    other = push_failure(target, f"something odd about {PASSWORD}")
    assert "SPACEPORT_REGISTRY" in other and PASSWORD not in other and "***" in other


class _Images:
    def get(self, ref: str) -> Any:
        raise ImageNotFound(ref)


class _Api:
    def __init__(self, answer: list[dict[str, Any]]) -> None:
        self.answer = answer
        self.pulls: list[tuple[str, str, Any]] = []

    def pull(self, repository: str, tag: str, stream: bool, decode: bool, auth_config: Any):  # type: ignore[no-untyped-def]
        self.pulls.append((repository, tag, auth_config))
        return iter(self.answer)


class _Client:
    def __init__(self, answer: list[dict[str, Any]]) -> None:
        self.images = _Images()
        self.api = _Api(answer)


def _revision(image: str) -> Revision:
    return Revision(
        space_id="a" * 24, space="alice/x", sha="b" * 40, image=image, port=7860,
        hardware=sized_tier("cpu-basic", {}),
    )  # fmt: skip


DIGEST = "sha256:" + "c" * 64


def test_the_backend_pulls_a_missing_digest_with_the_registry_login_only() -> None:
    client = _Client([{"status": "Digest: " + DIGEST}])
    backend = DockerBackend(
        "i", client=client, registry="127.0.0.1:5000/x", registry_username="bob",  # type: ignore[arg-type]
        registry_password=PASSWORD,
    )  # fmt: skip
    backend._ensure_image(_revision(f"127.0.0.1:5000/x/{'a' * 24}@{DIGEST}"))
    backend._ensure_image(_revision("python:3.11-slim"))
    assert client.api.pulls == [
        (f"127.0.0.1:5000/x/{'a' * 24}", DIGEST, {"username": "bob", "password": PASSWORD}),
        ("python", "3.11-slim", None),  # another registry's image gets no login
    ]


def test_a_refused_pull_is_a_backend_error_without_the_password() -> None:
    client = _Client([{"error": "unauthorized", "errorDetail": {"message": "unauthorized"}}])
    backend = DockerBackend(
        "i", client=client, registry="127.0.0.1:5000", registry_username="bob",  # type: ignore[arg-type]
        registry_password=PASSWORD,
    )  # fmt: skip
    with pytest.raises(BackendError) as failed:
        backend._ensure_image(_revision(f"127.0.0.1:5000/{'a' * 24}@{DIGEST}"))
    assert "SPACEPORT_REGISTRY_PASSWORD" in str(failed.value)
    assert PASSWORD not in str(failed.value)
