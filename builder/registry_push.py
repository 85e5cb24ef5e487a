"""Built images into the installation's registry (SPACEPORT_REGISTRY), so that every backend
runs exactly the content that was built: the image is tagged `<registry>/<space uid>:<commit>`,
pushed through the Engine with the registry's credentials, and named from then on by the
digest the registry answered, `<registry>/<space uid>@sha256:...`.

The Engine pushes (it holds the image), so a registry on a loopback address works as the
Engine allows it: 127.0.0.0/8 is an insecure (plain http) registry by default, any other http
one must be in the Engine's `insecure-registries`. The password goes to the Engine in the
X-Registry-Auth header of the one call and is never logged: callers mask it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import docker
import docker.errors
import requests

from builder.docker_build import BuildFailed
from builder.logstyle import LogSink, detail, step

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What the Engine says when the registry does not answer, and when it refuses the login.
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "no route to host",
                "dial tcp", "server gave http response to https client", "tls:")  # fmt: skip
_REFUSED = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


@dataclass(frozen=True)
class RegistryTarget:
    """Where built images go: SPACEPORT_REGISTRY and its credentials."""

    registry: str  # host[:port][/prefix]
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def host(self) -> str:
        return self.registry.split("/", 1)[0]

    def auth_config(self) -> dict[str, str] | None:
        if not self.username and not self.password:
            return None
        return {"username": self.username, "password": self.password}


def repository(target: RegistryTarget, space_uid: str) -> str:
    """A Space's repository in the registry: by uid, which no rename or new Space reuses."""
    return f"{target.registry.rstrip('/')}/{space_uid.lower()}"


def push_image(
    client: docker.DockerClient,
    image: str,
    target: RegistryTarget,
    space_uid: str,
    commit_sha: str,
    log: LogSink,
) -> str:
    """Push the Engine's `image` as `<registry>/<space_uid>:<commit_sha>`; the digest
    reference the registry answered. BuildFailed says what to fix when it can't."""
    repo = repository(target, space_uid)
    tag = commit_sha or "latest"
    try:
        client.images.get(image).tag(repo, tag)
    except docker.errors.DockerException as exc:
        raise BuildFailed(f"could not tag {image} as {repo}:{tag}: {exc}") from exc
    log(step(f"Pushing {repo}:{tag} to the registry {target.host}"))
    digest: str | None = None
    problem: str | None = None
    try:
        for chunk in client.api.push(
            repo, tag=tag, stream=True, decode=True, auth_config=target.auth_config()
        ):
            if "error" in chunk or "errorDetail" in chunk:
                problem = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
            aux = chunk.get("aux") or {}
            if isinstance(aux, dict) and DIGEST.fullmatch(str(aux.get("Digest", ""))):
                digest = str(aux["Digest"])
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        problem = str(getattr(exc, "explanation", None) or exc)
    if problem is not None or digest is None:
        try:  # the tag named nothing that the registry holds
            client.images.remove(f"{repo}:{tag}", noprune=True)
        except docker.errors.DockerException:
            pass
        raise BuildFailed(push_failure(target, str(problem or "the Engine reported no digest")))
    reference = f"{repo}@{digest}"
    log(detail(f"pushed: {reference}"))
    return reference


def push_failure(target: RegistryTarget, reason: str) -> str:
    """The build's error when the push failed: what went wrong, and what to fix."""
    if target.password:
        reason = reason.replace(target.password, "***")
    reason = " ".join(reason.split())
    lowered = reason.lower()
    if any(marker in lowered for marker in _REFUSED):
        fix = (
            f"the registry {target.host} refused the credentials: check "
            "SPACEPORT_REGISTRY_USERNAME and SPACEPORT_REGISTRY_PASSWORD"
        )
    elif any(marker in lowered for marker in _UNREACHABLE):
        fix = (
            f"the registry {target.host} could not be reached: check SPACEPORT_REGISTRY and "
            "that the registry is running (a plain-http registry outside 127.0.0.0/8 must be "
            "in the Docker Engine's insecure-registries)"
        )
    else:
        fix = f"check SPACEPORT_REGISTRY ({target.registry}) and the registry's own log"
    return f"could not push the image to the registry: {fix} ({reason[:300]})"
