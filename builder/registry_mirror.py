"""Base images from the operator's registry mirror (SPACEPORT_REGISTRY_MIRROR).

A site whose Engine reaches no public registry can still serve images from a registry of its
own: a Docker Hub image `python:3.11-slim` (or `someone/app:1`) is pulled as
`<mirror>/library/python:3.11-slim` (`<mirror>/someone/app:1`), the path layout of a Docker Hub
pull-through cache, and tagged under the name the Dockerfile uses. Images of other registries
(`ghcr.io/...`) are not mirrored, as with the Engine's own `registry-mirrors`. The Engine pulls
it, from the host: the mirror is the operator's, so it may be on a local address (an http
one must be in the Engine's `insecure-registries`).
"""

from __future__ import annotations

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from builder.logstyle import LogSink, detail

_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


def mirror_ref(mirror: str, ref: str) -> str | None:
    """`ref` on the mirror, or None for an image of another registry than Docker Hub."""
    host = mirror.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not host:
        return None
    name = ref
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if first not in _HUB_HOSTS:
            return None
        name = rest
    if "/" not in name.split(":", 1)[0].split("@", 1)[0]:
        name = f"library/{name}"
    return f"{host}/{name}"


def pull(client: docker.DockerClient, ref: str, mirror: str, log: LogSink) -> bool:
    """Pull `ref` from the mirror and tag it as `ref`; False (said in the log) if it can't."""
    mirrored = mirror_ref(mirror, ref)
    if mirrored is None:
        return False
    repository, tag = parse_repository_tag(mirrored)
    try:
        image = client.images.pull(repository, tag=tag or "latest")
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0][:200]
        log(detail(f"pull of {mirrored} from the registry mirror failed: {reason}"))
        return False
    wanted_repo, wanted_tag = parse_repository_tag(ref)
    image.tag(wanted_repo, wanted_tag or "latest")
    log(detail(f"{ref} pulled from the registry mirror as {mirrored}"))
    return True
