"""What to build for a commit: the Dockerfile, the build context and the image's tag.

Everything here is a pure function of the commit's files and the Space's config, so it is
tested without Docker, and the image tag can be trusted as a content address: the same
tree with the same build-relevant config always gets the same tag, whatever Space it is in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from builder import gradio_env
from builder.context import SPACEPORT_DOCKERFILE

TEMPLATES = Path(__file__).parent / "templates"
DOCKERFILE_PATH = SPACEPORT_DOCKERFILE  # where Spaceport's own Dockerfile goes in the context
# Debian package names (policy 5.6.7), optionally pinned with =version; checked because
# they are pasted into a shell command line.
APT_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
)


class RecipeError(Exception):
    """The repo asks for something that can't be built; the message says what to fix."""


@dataclass(frozen=True)
class Recipe:
    dockerfile: str  # path of the Dockerfile inside the context
    context: bytes  # uncompressed tar
    tag: str
    build_args: dict[str, str] = field(default_factory=dict)
    generated_dockerfile: str | None = None  # the text, when Spaceport wrote it
    # docker Spaces: what BuildKit is handed (a builder.buildkit_build.DockerSpacePlan)
    buildkit: object | None = None
    bases: tuple[str, ...] = ()  # the base images it builds on (FROM refs), for the notes


def parse_packages_txt(text: str) -> list[str]:
    packages: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        for word in line.split():
            if not APT_PACKAGE.match(word):
                raise RecipeError(
                    f"packages.txt line {number}: {word!r} is not a Debian package name "
                    "(one package per line, like `ffmpeg` or `libsm6=2:1.2.3-1`)"
                )
            packages.append(word)
    return packages


def template_digest() -> str:
    """Part of every tag, so that changing a template rebuilds instead of reusing."""
    digest = hashlib.sha256()
    for path in [*sorted(TEMPLATES.iterdir()), Path(gradio_env.__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def image_tag(
    image_prefix: str,
    tree: str,
    build_key: dict[str, object],
    base_image_ids: str,
    build_args: dict[str, str],
) -> str:
    material = json.dumps(
        {
            "tree": tree,
            "config": build_key,
            "base": base_image_ids,
            "args": build_args,
            "templates": template_digest(),
        },
        sort_keys=True,
    )
    return f"{image_prefix}/space:{hashlib.sha256(material.encode()).hexdigest()[:40]}"


def render_gradio(
    *,
    base_image: str,
    python_version: str,
    sdk_version: str,
    app_file: str,
    apt_packages: list[str],
    has_pre_requirements: bool,
    has_requirements: bool,
    space_hint: str,
) -> str:
    return _env.get_template("gradio.Dockerfile.j2").render(
        hub_apt_packages=gradio_env.HUB_APT_PACKAGES,
        uv_version=gradio_env.UV_VERSION,
        tools_dir=gradio_env.TOOLS_DIR,
        # Written into the image by a RUN step, like the static server: not in the context.
        gradio_env_b64=base64.b64encode(Path(gradio_env.__file__).read_bytes()).decode(),
        base_image=base_image,
        python_version=python_version,
        sdk_version=sdk_version,
        app_file=app_file,
        apt_packages=apt_packages,
        has_pre_requirements=has_pre_requirements,
        has_requirements=has_requirements,
        space_hint=space_hint,
    )


def render_static(
    *,
    base_image: str,
    app_file: str,
    space_hint: str,
    build_command: str | None = None,
    build_image: str = "",
    npm_registry: str = "https://registry.npmjs.org",
    files: frozenset[str] = frozenset(),
) -> str:
    """A static Space's Dockerfile. With `build_command` (README app_build_command) a first
    stage runs it in `build_image` (Node.js and npm), after `npm ci` (with a lock file) or
    `npm install` when package.json is committed, and only app_file's folder is served."""
    server = base64.b64encode((TEMPLATES / "static_server.py").read_bytes()).decode()
    site_dir, index = static_site_layout(app_file, bool(build_command))
    manifests = [
        name
        for name in ("package.json", "package-lock.json", "npm-shrinkwrap.json")
        if name in files
    ]
    if "package.json" not in manifests:
        manifests = []
    locked = {"package-lock.json", "npm-shrinkwrap.json"} & set(manifests)
    missing = (
        f"app_build_command ran, but it wrote no {app_file} (app_file in README.md): make the "
        "command write it, or set app_file to the page it writes"
    )
    return _env.get_template("static.Dockerfile.j2").render(
        base_image=base_image,
        space_hint=space_hint,
        static_server_b64=server,
        index=index,
        site_dir=site_dir,
        build_command=build_command,
        build_image=build_image,
        npm_registry=npm_registry,
        npm_manifests=manifests,
        npm_install="npm ci" if locked else "npm install",
        check_output=f"test -f {shlex.quote(app_file)} || {{ echo {shlex.quote(missing)} >&2; "
        "exit 1; }",
    )


# A served path: relative, plain characters (it is written into the Dockerfile), no `..`.
_SITE_PATH = re.compile(r"^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)*$")


def static_site_layout(app_file: str, built: bool) -> tuple[str, str]:
    """(site folder, page for "/") of a static Space. As committed, the site is the repo and
    app_file the page; with app_build_command the site is app_file's folder (`dist/` for
    `dist/index.html`), so a bundle's absolute `/assets/...` links resolve as on the Hub."""
    if not built:
        return ".", app_file
    if not _SITE_PATH.match(app_file):
        raise RecipeError(
            f"app_file {app_file!r} is not a plain relative path: use letters, digits and "
            "`._@+-` separated by `/`, like `dist/index.html`, with no `..` or leading dot"
        )
    folder, _, page = app_file.rpartition("/")
    return folder or ".", page


def dockerfile_base_images(dockerfile: str) -> list[str]:
    """Images named in FROM lines that are not earlier build stages or ARG-templated. Lines
    are read as the Dockerfile parser reads them: a heredoc's `from x import y` is a line of
    the step's script, not a FROM."""
    from builder.dockerfile_checks import instructions

    stages: set[str] = set()
    images: list[str] = []
    for item in instructions(dockerfile):
        words = item.args.split()
        if item.keyword != "FROM" or not words:
            continue
        args = [w for w in words if not w.startswith("--")]
        if not args:
            continue
        image = args[0]
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2].lower())
        if image.lower() in stages or "$" in image or image.lower() == "scratch":
            continue
        images.append(image)
    return images
