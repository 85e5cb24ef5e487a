"""A real container registry for tests: Debian's `docker-registry` (Distribution 2.8), started
on a free 127.0.0.1 port with htpasswd auth and a throwaway storage folder, once per session.

The Docker Engine treats 127.0.0.0/8 registries as insecure (plain http) by default, so it
pushes to and pulls from this one as it is. Tests that push images (the build worker with
SPACEPORT_REGISTRY, the Helm chart, the Kubernetes backend) take the `local_registry` fixture
and read `.address`, `.username` and `.password`. Under CI=true a missing `docker-registry`
or `htpasswd` fails the test (scripts/bootstrap.sh --test installs both).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import services

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@dataclass(frozen=True)
class LocalRegistry:
    address: str  # 127.0.0.1:<port>, what SPACEPORT_REGISTRY and image names start with
    username: str
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def auth_config(self) -> dict[str, str]:
        """For the docker SDK's push/pull (auth_config=...)."""
        return {"username": self.username, "password": self.password}

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}{path}",
            auth=(self.username, self.password),
            headers=headers,
            timeout=10,
        )

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry serves `repository:reference` under (the
        Docker-Content-Digest of GET /v2/<repository>/manifests/<reference>); None if absent."""
        response = self.get(f"/v2/{repository}/manifests/{reference}", Accept=MANIFEST_TYPES)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]


def registry_installed() -> bool:
    return shutil.which("docker-registry") is not None and shutil.which("htpasswd") is not None


CONFIG = """\
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: spaceport-test
    path: {htpasswd}
"""


def start_registry(workdir: Path) -> tuple[LocalRegistry, subprocess.Popen[bytes]]:
    """Start `docker-registry serve` on a free loopback port with a fresh user and password;
    RuntimeError when it does not answer within services.START_TIMEOUT_SECONDS."""
    workdir.mkdir(parents=True, exist_ok=True)
    username, password = "spaceport-test", secrets.token_urlsafe(18)
    htpasswd = workdir / "htpasswd"
    made = subprocess.run(
        ["htpasswd", "-niB", username],  # the password on stdin, not on a command line
        input=password.encode(),
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        raise RuntimeError(f"htpasswd failed: {made.stderr.decode(errors='replace')}")
    htpasswd.write_bytes(made.stdout.strip() + b"\n")
    port = services.free_port()
    config = workdir / "config.yml"
    config.write_text(
        CONFIG.format(storage=workdir / "storage", port=port, htpasswd=htpasswd)
    )
    log_path = workdir / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    registry = LocalRegistry(f"127.0.0.1:{port}", username, password)
    deadline = time.monotonic() + services.START_TIMEOUT_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if registry.get("/v2/").status_code == 200:
                return registry, proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            services._stop_process(proc)  # noqa: SLF001 - the module's own helper
            raise RuntimeError(
                f"docker-registry did not answer on {registry.address}:\n"
                f"{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.1)


@pytest.fixture(scope="session")
def local_registry() -> Iterator[LocalRegistry]:
    services.require(
        "docker-registry",
        registry_installed(),
        "apt-get install docker-registry apache2-utils (scripts/bootstrap.sh --test)",
    )
    workdir = Path(tempfile.mkdtemp(prefix="spaceport-registry-"))
    registry, proc = start_registry(workdir)
    try:
        yield registry
    finally:
        services._stop_process(proc)  # noqa: SLF001
        shutil.rmtree(workdir, ignore_errors=True)
