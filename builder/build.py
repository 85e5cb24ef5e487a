"""Space repo -> image: picks the recipe for the Space's sdk, makes sure its base image exists
(pulled, or built offline from Debian packages), skips the build when an image for the same
content exists, and otherwise runs it, streaming every line to `log`."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

import docker

from builder import base_image, recipe
from builder.docker_build import BuildFailed, BuildRequest, BuildStopped, stream_build
from orchestrator.logstyle import LogSink, detail, step
from orchestrator.settings import Settings
from orchestrator.space_config import SpaceConfig

__all__ = ["BuildFailed", "BuildInput", "BuildStopped", "build_image"]


@dataclass(frozen=True)
class BuildInput:
    space_hint: str  # owner/name, for comments and logs only: never part of the image
    repo_tar: bytes
    files: frozenset[str]
    tree: str
    config: SpaceConfig
    variables: dict[str, str]
    no_cache: bool = False


@dataclass(frozen=True)
class BuildOutput:
    image: str
    reused: bool


def _recipe(
    client: docker.DockerClient, item: BuildInput, settings: Settings, log: LogSink
) -> recipe.Recipe:
    config = item.config
    if config.sdk == "docker":
        dockerfile = _read(item, "Dockerfile").decode(errors="replace")
        bases = [
            _image_id(client, base_image.ensure_image(client, image, log, settings))
            for image in recipe.dockerfile_base_images(dockerfile)
        ]
        # Variables are the build args of docker Spaces (secrets never are: see docs).
        args = dict(item.variables)
        tag = recipe.image_tag(
            settings.image_prefix, item.tree, config.build_key(), ",".join(bases), args
        )
        context = recipe.with_spaceport_files(item.repo_tar, {})
        return recipe.Recipe("Dockerfile", context, tag, args)

    base = base_image.ensure_python_base(client, config.python_version, log, settings)
    if config.sdk == "static":
        text = recipe.render_static(
            base_image=base, app_file=config.app_file or "index.html", space_hint=item.space_hint
        )
        extra = {
            "Dockerfile": text.encode(),
            "static_server.py": (recipe.TEMPLATES / "static_server.py").read_bytes(),
        }
    else:
        packages = (
            recipe.parse_packages_txt(_read(item, "packages.txt").decode(errors="replace"))
            if "packages.txt" in item.files
            else []
        )
        text = recipe.render_gradio(
            base_image=base,
            python_version=config.python_version,
            sdk_version=config.sdk_version or settings.default_gradio_version,
            app_file=config.app_file or "app.py",
            apt_packages=packages,
            has_pre_requirements=_has_requirements(item, "pre-requirements.txt"),
            has_requirements=_has_requirements(item, "requirements.txt"),
            space_hint=item.space_hint,
        )
        extra = {"Dockerfile": text.encode()}
    key = dict(
        config.build_key(), sdk_version=config.sdk_version or settings.default_gradio_version
    )
    tag = recipe.image_tag(settings.image_prefix, item.tree, key, _image_id(client, base), {})
    context = recipe.with_spaceport_files(item.repo_tar, extra)
    return recipe.Recipe(recipe.DOCKERFILE_PATH, context, tag, {}, text)


def _read(item: BuildInput, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(item.repo_tar)) as tar:
        member = tar.extractfile(path)
        return member.read() if member else b""


def _has_requirements(item: BuildInput, path: str) -> bool:
    """True when the file names at least one requirement (an empty file costs a pip run)."""
    if path not in item.files:
        return False
    lines = _read(item, path).decode(errors="replace").splitlines()
    return any(line.split("#", 1)[0].strip() for line in lines)


def _image_id(client: docker.DockerClient, ref: str) -> str:
    """The base's image ID, not its name, goes into a tag: a re-pulled or rebuilt base
    under the same name must not reuse images built on the old one."""
    return client.images.get(ref).id or ref


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_image(
    client: docker.DockerClient,
    item: BuildInput,
    settings: Settings,
    log: LogSink,
    stop_reason: Callable[[], str | None],
) -> BuildOutput:
    log(step(f"Preparing the {item.config.sdk} build"))
    plan = _recipe(client, item, settings, log)
    if not item.no_cache and _image_exists(client, plan.tag):
        log(step(f"Image {plan.tag} already exists for this content: nothing to build"))
        return BuildOutput(plan.tag, reused=True)
    log(step(f"Building image {plan.tag}" + (" from scratch (no cache)" if item.no_cache else "")))
    request = BuildRequest(
        context=plan.context,
        tag=plan.tag,
        dockerfile=plan.dockerfile,
        build_args=plan.build_args,
        # No labels: the build API appends them as steps after the last layer, and the tag
        # already names the content.
        labels={},
        no_cache=item.no_cache,
    )
    for line in stream_build(client.api, request, stop_reason):
        log(detail(line))
    log(step(f"Built {plan.tag}"))
    return BuildOutput(plan.tag, reused=False)
