"""Space repo -> image: picks the recipe for the Space's sdk, makes sure its base image exists
(pulled, or built offline from Debian packages), skips the build when an image for the same
content exists, and otherwise runs it, streaming every line to `log`."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import docker

from builder import base_image, buildkit_build, buildkit_checks, recipe, registry_push
from builder.cgroup import CgroupUnavailable, build_cgroup, sweep_stale
from builder.context import build_context
from builder.docker_build import (
    BuildFailed,
    BuildLimits,
    BuildRequest,
    BuildStopped,
    stream_build,
)
from builder.dockerfile_checks import DockerfileRefused, check_dockerfile
from builder.logstyle import LogSink, detail, step
from builder.notes import substitution_notes
from builder.spec import BuildOptions, BuildSpec
from sandbox import build_network

__all__ = [
    "BuildFailed",
    "BuildInput",
    "BuildOptions",
    "BuildSpec",
    "BuildStopped",
    "build_image",
    "engine_client",
]
ENGINE_TIMEOUT_SECONDS = 600  # one Engine call (a base image's pull, a build's start)


def engine_client() -> docker.DockerClient:
    """The builder's own client of the Docker Engine (DOCKER_HOST and friends apply)."""
    return docker.from_env(timeout=ENGINE_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class BuildInput:
    space_hint: str  # owner/name, for comments and logs only: never part of the image
    repo_tar: bytes  # the commit's files, read once (context.scan gives `files` and `tree`)
    files: frozenset[str]
    tree: str  # names the content in the image tag: same files, same tag
    spec: BuildSpec
    variables: dict[str, str]
    no_cache: bool = False
    # The Space's secrets (name -> value): build secrets of docker Spaces
    # (RUN --mount=type=secret,id=NAME), never build args, never logged.
    secrets: dict[str, str] = field(default_factory=dict)
    # Name the image in the registry (SPACEPORT_REGISTRY): <registry>/<space_uid>:<commit_sha>.
    space_uid: str = ""
    commit_sha: str = ""


@dataclass(frozen=True)
class BuildOutput:
    image: str  # the Engine's tag, or with a registry <registry>/<uid>@sha256:<digest>
    reused: bool
    # What differs from the Hub (a base that is Spaceport's equivalent): builder/notes.py
    notes: tuple[str, ...] = ()


def _recipe(
    client: docker.DockerClient, item: BuildInput, options: BuildOptions, log: LogSink
) -> recipe.Recipe:
    config = item.spec
    if config.sdk == "docker":
        dockerfile = _read(item, "Dockerfile").decode(errors="replace")
        try:  # before any pull: a FROM naming a local registry is refused too
            check_dockerfile(dockerfile, build_network.egress_policy(options))
            checks = buildkit_checks.plan(dockerfile)
        except DockerfileRefused as exc:
            raise recipe.RecipeError(str(exc)) from exc
        except build_network.BuildNetworkError as exc:
            raise BuildFailed(str(exc)) from exc
        images = recipe.dockerfile_base_images(dockerfile)
        refs = [base_image.ensure_image(client, image, log, options) for image in images]
        for ref in refs:
            _check_onbuild(client, ref, options)
        bases = [_image_id(client, ref) for ref in refs]
        # Variables are the build args of docker Spaces; secrets are build secrets, handed
        # to BuildKit only when a step mounts one. The proxy args are Spaceport's: a variable
        # may not point the build elsewhere.
        reserved = set(build_network.PROXY_ARGS + build_network.NO_PROXY_ARGS)
        args = {k: v for k, v in item.variables.items() if k not in reserved}
        for name in checks.required_secrets:
            if name not in item.secrets:
                raise recipe.RecipeError(
                    f"Dockerfile line {checks.required_secrets[name]}: the step mounts the "
                    f"secret {name} with required=true, and the Space has no secret {name}: "
                    "add it in the Space's settings"
                )
        secrets = dict(item.secrets) if checks.secret_ids else {}
        bases_key = ",".join(bases) + "|" + buildkit_build.secrets_digest(options.home, secrets)
        tag = recipe.image_tag(options.image_prefix, item.tree, config.key(), bases_key, args)
        context = build_context(item.repo_tar, "Dockerfile")
        docker_plan = buildkit_build.DockerSpacePlan(
            checks,
            buildkit_build.BuildKitRequest(
                context=context,
                dockerfile="Dockerfile",
                tag=tag,
                build_args=args,
                base_images=dict(zip(images, refs, strict=True)),
                secrets=secrets,
                no_cache=item.no_cache,
            ),
        )
        return recipe.Recipe(
            "Dockerfile", context, tag, args, buildkit=docker_plan, bases=tuple(refs)
        )

    base = base_image.ensure_python_base(client, config.python_version, log, options)
    stages = [base]
    if config.sdk == "static":
        if config.app_build_command:  # a Node.js stage runs it first
            stages.append(base_image.ensure_image(client, options.static_build_image, log, options))
        text = recipe.render_static(
            base_image=base,
            app_file=config.app_file or "index.html",
            space_hint=item.space_hint,
            build_command=config.app_build_command,
            build_image=stages[-1],
            npm_registry=options.npm_registry,
            files=item.files,
        )
    else:
        packages = (
            recipe.parse_packages_txt(_read(item, "packages.txt").decode(errors="replace"))
            if "packages.txt" in item.files
            else []
        )
        text = recipe.render_gradio(
            base_image=base,
            python_version=config.python_version,
            sdk_version=config.sdk_version or options.default_gradio_version,
            app_file=config.app_file or "app.py",
            apt_packages=packages,
            has_pre_requirements=_has_requirements(item, "pre-requirements.txt"),
            has_requirements=_has_requirements(item, "requirements.txt"),
            space_hint=item.space_hint,
        )
    key = dict(config.key(), sdk_version=config.sdk_version or options.default_gradio_version)
    bases = ",".join(_image_id(client, ref) for ref in stages)
    tag = recipe.image_tag(options.image_prefix, item.tree, key, bases, {})
    context = build_context(item.repo_tar, recipe.DOCKERFILE_PATH, text.encode())
    return recipe.Recipe(recipe.DOCKERFILE_PATH, context, tag, {}, text, bases=tuple(stages))


def _check_onbuild(client: docker.DockerClient, ref: str, options: BuildOptions) -> None:
    """A base image's ONBUILD triggers run in this build as if written in its Dockerfile, so
    an `ONBUILD ADD http://127.0.0.1/...` baked into a pushed image gets the same check."""
    triggers = (client.images.get(ref).attrs.get("Config") or {}).get("OnBuild") or []
    if not triggers:
        return
    try:
        check_dockerfile("\n".join(triggers) + "\n", build_network.egress_policy(options))
    except DockerfileRefused as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise recipe.RecipeError(f"the base image {ref} has an ONBUILD trigger: {reason}") from exc


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


def _build_network(
    client: docker.DockerClient, options: BuildOptions, log: LogSink
) -> build_network.BuildNetwork:
    # The proxy runs on Spaceport's own Python base (3.11), made like any Space's base.
    base = base_image.ensure_python_base(client, "3.11", log, options)
    try:
        return build_network.ensure_build_network(client, options, base, lambda m: log(detail(m)))
    except build_network.BuildNetworkError as exc:
        raise BuildFailed(f"the build network is not available: {exc}") from exc


def build_image(
    client: docker.DockerClient,
    item: BuildInput,
    options: BuildOptions,
    log: LogSink,
    stop_reason: Callable[[], str | None],
) -> BuildOutput:
    """Build (or reuse) the image; with a registry, push it and name it by its digest."""
    output = _build_in_engine(client, item, options, log, stop_reason)
    if not options.registry:
        return output
    if reason := stop_reason():
        raise BuildStopped(reason)
    target = registry_push.RegistryTarget(
        options.registry, options.registry_username, options.registry_password
    )
    image = registry_push.push_image(
        client, output.image, target, item.space_uid, item.commit_sha, log
    )
    return replace(output, image=image)


def _build_in_engine(
    client: docker.DockerClient,
    item: BuildInput,
    options: BuildOptions,
    log: LogSink,
    stop_reason: Callable[[], str | None],
) -> BuildOutput:
    log(step(f"Preparing the {item.spec.sdk} build"))
    plan = _recipe(client, item, options, log)
    notes = substitution_notes(client, plan.bases)
    if not item.no_cache and _image_exists(client, plan.tag):
        log(step(f"Image {plan.tag} already exists for this content: nothing to build"))
        return BuildOutput(plan.tag, reused=True, notes=notes)
    network = _build_network(client, options, log)
    log(step(f"Building image {plan.tag}" + (" from scratch (no cache)" if item.no_cache else "")))
    if isinstance(plan.buildkit, buildkit_build.DockerSpacePlan):
        # docker Spaces build with BuildKit (heredocs, secret and cache mounts, as on the Hub);
        # Spaceport's own recipes stay on the classic builder (docs/builder.md#buildkit).
        daemon_base = base_image.ensure_python_base(client, "3.11", log, options)
        buildkit_build.build_docker_space(
            client, plan.buildkit, options, network, daemon_base, log, stop_reason
        )
        log(step(f"Built {plan.tag}"))
        return BuildOutput(plan.tag, reused=False, notes=notes)
    log(
        detail(
            f"limits: {options.build_memory_mb} MiB memory, {options.build_cpus:g} CPUs, "
            f"{options.build_pids_limit or 'no'} pids limit; network: {network.name} "
            "(package hosts only, through the build proxy)"
        )
    )
    try:
        instance = options.instance
        sweep_stale(f"{instance}-", options.build_timeout_seconds + 600)
        name = f"{instance}-{uuid.uuid4().hex[:12]}"
        cgroup = build_cgroup(name, options.build_pids_limit)
        with cgroup as cgroup_parent:
            request = BuildRequest(
                context=plan.context,
                tag=plan.tag,
                dockerfile=plan.dockerfile,
                # Spaceport's proxy args last: they win over a variable of the same name.
                build_args={**plan.build_args, **network.build_args()},
                # No labels: the build API appends them as steps after the last layer, and
                # the tag already names the content.
                labels={},
                no_cache=item.no_cache,
                limits=BuildLimits(
                    memory_bytes=options.build_memory_mb << 20,
                    cpus=options.build_cpus,
                    cgroup_parent=cgroup_parent,
                ),
                network=network.name,
            )
            for line in stream_build(client.api, request, stop_reason):
                log(detail(line))
    except CgroupUnavailable as exc:
        raise BuildFailed(str(exc)) from exc
    log(step(f"Built {plan.tag}"))
    return BuildOutput(plan.tag, reused=False, notes=notes)
