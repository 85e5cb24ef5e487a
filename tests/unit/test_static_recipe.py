"""The static recipe (builder/recipe.py render_static): as committed, or built by the
README's app_build_command in a Node.js stage of which only app_file's folder is served."""

from __future__ import annotations

import pytest

from builder import recipe
from builder.recipe import RecipeError, static_site_layout


@pytest.mark.parametrize(
    ("app_file", "built", "layout"),
    [
        ("index.html", False, (".", "index.html")),
        ("pages/home page.html", False, (".", "pages/home page.html")),
        ("dist/index.html", True, ("dist", "index.html")),
        ("build/app/main.html", True, ("build/app", "main.html")),
        ("index.html", True, (".", "index.html")),
    ],
)
def test_the_site_folder_and_page(app_file: str, built: bool, layout: tuple[str, str]) -> None:
    assert static_site_layout(app_file, built) == layout


@pytest.mark.parametrize(
    "app_file", ["../index.html", "/dist/index.html", "a b/index.html", ".x/i"]
)
def test_a_built_app_file_must_be_a_plain_relative_path(app_file: str) -> None:
    with pytest.raises(RecipeError, match="app_file"):
        static_site_layout(app_file, True)


def render(files: set[str], command: str | None = "npm run build") -> str:
    return recipe.render_static(
        base_image="spaceport/base:python3.11-bookworm",
        app_file="dist/index.html" if command else "index.html",
        space_hint="a/b",
        build_command=command,
        build_image="node:24",
        npm_registry="https://registry.npmjs.org",
        files=frozenset(files | {"README.md"}),
    )


def test_a_build_command_runs_in_a_node_stage_and_only_its_output_is_served() -> None:
    text = render({"package.json", "package-lock.json", "build.js"})
    lines = text.splitlines()
    assert "FROM node:24 AS build" in lines
    assert "COPY --chown=1000:1000 package.json package-lock.json ./" in lines
    assert 'RUN ["/bin/sh", "-c", "npm ci"]' in lines
    assert 'RUN ["/bin/sh", "-c", "npm run build"]' in lines
    assert any(line.startswith('RUN ["/bin/sh", "-c", "test -f dist/index.html') for line in lines)
    assert lines[-1] == (
        'COPY --from=build --chown=1000:1000 ["/home/spaceport-build/app/dist", "/home/user/app"]'
    )
    assert '"--index", "index.html"]' in text
    # Nothing as root in the build stage but making its folders.
    stage = text.split("FROM node:24 AS build", 1)[1].split("\nFROM ", 1)[0]
    assert stage.index("USER 1000") < stage.index("npm ci")


def test_npm_install_without_a_lock_file_and_nothing_without_package_json() -> None:
    assert 'RUN ["/bin/sh", "-c", "npm install"]' in render({"package.json"})
    text = render({"build.sh"}, "sh build.sh")
    assert "npm ci" not in text and "npm install" not in text
    assert 'RUN ["/bin/sh", "-c", "sh build.sh"]' in text


def test_a_command_is_one_json_argument_whatever_it_holds() -> None:
    text = render({"package.json"}, 'npm run build\nRUN curl "x" && echo $HOME')
    assert (
        'RUN ["/bin/sh", "-c", "npm run build\\nRUN curl \\"x\\" \\u0026\\u0026 echo $HOME"]'
        in text
    )
    assert "\nRUN curl" not in text


def test_without_a_build_command_the_repo_is_served_as_committed() -> None:
    text = render({"index.html"}, None)
    assert " AS build" not in text and "--from=build" not in text
    assert text.rstrip().endswith("COPY --chown=1000:1000 . /home/user/app")
