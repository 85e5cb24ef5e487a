"""The Hub's Gradio environment and the old-versions rule (builder/gradio_env.py), and the
Gradio Dockerfile that uses them: pure functions, no Docker."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest

from builder import gradio_env, recipe
from builder.gradio_env import (
    EnvError,
    caps_for,
    extras_for,
    filter_requirements,
    is_conflict,
    is_gradio_requirement,
    make_plan,
    release_uploaded,
    resolution_cutoff,
)

GRADIO_3 = datetime(2023, 10, 19, 18, 29, 31, tzinfo=UTC)  # 3.50.2's upload time on PyPI


def project(version: str, *times: str) -> dict[str, object]:
    files = [{"filename": f"gradio-{version}.x", "upload_time_iso_8601": t} for t in times]
    return {"info": {"version": "6.31.0"}, "releases": {version: files, "6.31.0": []}}


def test_the_release_date_is_its_newest_file_from_the_project_json() -> None:
    data = project("3.50.2", "2023-10-19T18:29:28.124877Z", "2023-10-19T18:29:31.893922Z")
    assert release_uploaded(data, "3.50.2") == datetime(2023, 10, 19, 18, 29, 31, 893922, UTC)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2023-10-19T18:29:31Z", datetime(2023, 10, 19, 18, 29, 31, tzinfo=UTC)),
        ("2023-10-19T18:29:31.5Z", datetime(2023, 10, 19, 18, 29, 31, 500000, UTC)),
        ("2023-10-19T18:29:31.1234567", datetime(2023, 10, 19, 18, 29, 31, 123456, UTC)),
    ],
)
def test_upload_times_of_any_precision_are_read(stamp: str, expected: datetime) -> None:
    assert release_uploaded(project("1.0", stamp), "1.0") == expected


@pytest.mark.parametrize("version", ["9.9.9", "6.31.0"])  # unknown; listed without files
def test_a_version_pypi_does_not_have_says_to_fix_sdk_version(version: str) -> None:
    with pytest.raises(EnvError, match="sdk_version in README.md"):
        release_uploaded(project("3.50.2", "2023-10-19T18:29:28Z"), version)


def test_the_layer_resolves_as_of_a_day_after_the_release() -> None:
    cutoff, note = resolution_cutoff(GRADIO_3, "3.11")
    assert cutoff == datetime(2023, 10, 20, 18, 29, 31, tzinfo=UTC) and note is None


def test_a_python_newer_than_the_release_moves_the_date_to_its_wheels() -> None:
    cutoff, note = resolution_cutoff(GRADIO_3, "3.13")
    assert cutoff == datetime(2025, 1, 5, tzinfo=UTC)  # 3.13.0 (2024-10-07) + 90 days
    assert note and "Python 3.13 came out after this Gradio release" in note


def test_a_python_newer_than_the_table_resolves_without_a_date() -> None:
    cutoff, note = resolution_cutoff(GRADIO_3, "3.19")
    assert cutoff is None and note and "without a date" in note


def test_an_old_python_keeps_the_release_date() -> None:
    assert resolution_cutoff(GRADIO_3, "3.7")[0] == datetime(2023, 10, 20, 18, 29, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("version", "caps"),
    [
        ("3.50.2", ["starlette<1.0", "huggingface_hub<1.0"]),
        ("4.44.1", ["starlette<1.0", "huggingface_hub<1.0"]),
        ("5.0.0b3", []),
        ("5.49.1", []),
        ("6.31.0", []),
    ],
)
def test_known_breaks_are_capped_for_the_releases_they_break(version: str, caps: list[str]) -> None:
    assert [known.cap for known in caps_for(version)] == caps
    plan = make_plan(version, "3.11", GRADIO_3)
    assert plan.constraints().splitlines() == [f"gradio=={version}", *caps]


def test_extras_are_the_hubs_ones_the_release_has() -> None:
    assert extras_for(["mcp", "oauth", "other"], None) == ["oauth", "mcp"]
    assert extras_for(None, ['authlib; extra == "oauth"', "httpx"]) == ["oauth"]
    assert extras_for([], []) == []
    plan = make_plan("4.44.1", "3.11", GRADIO_3)
    assert plan.gradio_requirement() == "gradio[oauth,mcp]==4.44.1"
    assert gradio_env.Plan(**{**plan.__dict__, "extras": []}).gradio_requirement() == (
        "gradio==4.44.1"
    )


@pytest.mark.parametrize(
    ("line", "names_gradio"),
    [
        ("gradio", True),
        ("gradio==4.0.0", True),
        ("Gradio[oauth]>=4 ; python_version > '3.8'", True),
        ("gradio  # the UI", True),
        ("gradio_client==1.3.0", False),
        ("gradio-pdf", False),
        ("# gradio", False),
        ("-r other.txt", False),
        ("requests", False),
        ("", False),
    ],
)
def test_a_requirements_line_naming_gradio_is_recognised(line: str, names_gradio: bool) -> None:
    assert is_gradio_requirement(line) is names_gradio


def test_gradio_lines_are_left_out_with_their_line_numbers() -> None:
    kept, dropped = filter_requirements("numpy\ngradio==4.0\n# c\ngradio_client\n")
    assert kept == "numpy\n# c\ngradio_client\n"
    assert dropped == [(2, "gradio==4.0")]


def test_requirements_are_resolved_together_with_the_gradio_pin() -> None:
    """With constraints alone pip would downgrade a dependency of the installed Gradio
    (gradio_client==1.0.1 beside Gradio 6) without a conflict: Gradio is named too."""
    plan = make_plan("6.31.0", "3.11", GRADIO_3)
    args = gradio_env.requirements_args(plan, "/tmp/r.txt")
    assert args == ["-r", "/tmp/r.txt", "gradio[oauth,mcp]==6.31.0", "-c", gradio_env.CONSTRAINTS]


def test_a_conflict_is_told_from_a_missing_package() -> None:
    assert is_conflict("ERROR: ResolutionImpossible: for help visit ...")
    assert not is_conflict("ERROR: No matching distribution found for nope==1")


def render(**changes: object) -> str:
    arguments: dict[str, object] = {
        "base_image": "python:3.11-slim",
        "python_version": "3.11",
        "sdk_version": "4.44.1",
        "app_file": "app.py",
        "apt_packages": [],
        "has_pre_requirements": False,
        "has_requirements": True,
        "space_hint": "a/b",
        **changes,
    }
    return recipe.render_gradio(**arguments)  # type: ignore[arg-type]


def test_the_hubs_debian_packages_come_before_anything_of_the_space() -> None:
    text = render(apt_packages=["libsndfile1"])
    hub_apt = text.index(" ".join(gradio_env.HUB_APT_PACKAGES))
    for package in ("git-lfs", "ffmpeg", "libsm6", "libxext6", "cmake", "rsync", "libgl1"):
        assert package in gradio_env.HUB_APT_PACKAGES
    assert "libgomp1" in gradio_env.HUB_APT_PACKAGES  # LightGBM / XGBoost at run time
    assert hub_apt < text.index("useradd") < text.index("gradio_env.py install")
    assert text.index("gradio_env.py install") < text.index("libsndfile1")


def test_the_shared_layers_do_not_depend_on_the_space() -> None:
    """Layers up to the Gradio install are the same text for every Space on the same
    (Python, Gradio): the Engine's cache shares them."""

    def shared(text: str) -> str:
        return text[: text.index("\n", text.index("gradio_env.py install"))].split("\n", 1)[1]

    one = render(space_hint="a/one", apt_packages=["ffmpeg"], has_requirements=False)
    two = render(space_hint="b/two", app_file="main.py", has_pre_requirements=True)
    assert shared(one) == shared(two)
    assert shared(one) != shared(render(sdk_version="3.50.2"))


def test_the_layer_script_is_the_module_and_requirements_go_through_it() -> None:
    text = render()
    encoded = re.search(r'RUN echo "([A-Za-z0-9+/=]+)" \| base64 -d', text)
    assert encoded is not None
    assert base64.b64decode(encoded[1]) == open(gradio_env.__file__, "rb").read()
    assert f"uv=={gradio_env.UV_VERSION}" in text
    assert "gradio_env.py requirements /tmp/spaceport/requirements.txt" in text
    # The install that can fail is a short step of its own: its error names that command.
    assert '\nRUN python3 /opt/spaceport/gradio_env.py install "4.44.1"\n' in text
    # The app's files are still the last layer.
    assert text.rstrip().splitlines()[-1].startswith("COPY --chown=1000:1000 . ")


def test_a_changed_environment_module_changes_every_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    before = recipe.template_digest()
    original = open(gradio_env.__file__, "rb").read()
    real_read = recipe.Path.read_bytes

    def read_bytes(path: recipe.Path) -> bytes:
        data = real_read(path)
        return data + b"# changed\n" if data == original else data

    monkeypatch.setattr(recipe.Path, "read_bytes", read_bytes)
    assert recipe.template_digest() != before
