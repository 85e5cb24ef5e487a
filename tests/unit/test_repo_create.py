"""A new Space's first commit (the Hub's README.md and .gitattributes), Space templates,
.gitignore matching for preupload, path checks, folder deletion by a plain path, and the
YAML-only check of validate-yaml."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from orchestrator.repos import commit as repo_commit
from orchestrator.repos import gitignore, initial_commit
from orchestrator.repos import store as repos
from orchestrator.spaces import templates
from orchestrator.spaces.config import (
    SpaceConfigError,
    app_file_problem,
    check_front_matter_yaml,
    parse_readme,
)

AUTHOR = ("alice", "alice@users.noreply.spaceport")


@pytest.mark.parametrize("sdk", ["gradio", "docker", "static", "streamlit"])
def test_the_readme_parses_and_leaves_the_space_without_its_app(sdk: str) -> None:
    text = initial_commit.readme("my-demo", sdk, gradio_version="6.31.0")
    config = parse_readme(text)
    assert config.title == "my-demo" and config.sdk == sdk and config.pinned is False
    assert config.emoji in initial_commit.EMOJIS
    assert config.color_from in initial_commit.COLORS and config.color_to in initial_commit.COLORS
    assert config.color_from != config.color_to
    assert config.sdk_version == ("6.31.0" if sdk == "gradio" else None)
    assert ("app_file" in config.model_fields_set) == (sdk in ("gradio", "streamlit"))
    assert text.rstrip().endswith("https://huggingface.co/docs/hub/spaces-config-reference")
    # NO_APP_FILE until the app arrives; then it builds.
    assert app_file_problem(config, {"README.md", ".gitattributes"})
    app = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile"}
    assert app_file_problem(config, {"README.md", app.get(sdk, "index.html")}) is None


def test_colours_and_emoji_are_random_and_names_stay_text() -> None:
    seen = {
        initial_commit.readme("x", "static", gradio_version="1", rng=random.Random(seed))
        for seed in range(20)
    }
    assert len(seen) > 5
    for name in ("2048", "true", "1e5", "null", "a-b_c.d"):
        assert parse_readme(initial_commit.readme(name, "static", gradio_version="1")).title == name


def test_the_fixed_lists_have_no_repeats() -> None:
    assert len(set(initial_commit.EMOJIS)) == len(initial_commit.EMOJIS)
    assert len(set(initial_commit.LFS_PATTERNS)) == len(initial_commit.LFS_PATTERNS)


def test_gitattributes_is_the_hubs_list() -> None:
    lines = initial_commit.GITATTRIBUTES.splitlines()
    assert len(lines) == 35
    assert lines[0] == "*.7z filter=lfs diff=lfs merge=lfs -text"
    assert lines[-1] == "*tfevents* filter=lfs diff=lfs merge=lfs -text"
    assert "saved_model/**/* filter=lfs diff=lfs merge=lfs -text" in lines


def test_the_first_commit_is_on_main_and_tracks_small_binaries(
    migrated_home: Path,
) -> None:
    repo = repos.init_bare("alice", "fresh")
    files = initial_commit.default_files("fresh", "gradio", gradio_version="6.31.0")
    sha = initial_commit.write(repo, files, AUTHOR)
    assert repos.resolve(repo, "main") == sha
    assert repos.list_files(repo, sha) == {"README.md", ".gitattributes"}
    log = repos.git(repo, "log", "--format=%an <%ae>|%P|%s", "main").decode()
    assert log == "alice <alice@users.noreply.spaceport>||initial commit\n"
    paths = ["w.bin", "m.safetensors", "p.pkl", "d/saved_model/a/b", "app.py", "t.tar.gz"]
    tracked = repo_commit.lfs_tracked(repo, sha, paths)
    assert tracked == {"w.bin", "m.safetensors", "p.pkl", "t.tar.gz"}
    assert repo_commit.lfs_tracked(repo, sha, ["saved_model/x/y"]) == {"saved_model/x/y"}


def test_templates_are_working_samples_found_by_id_or_name() -> None:
    offered = templates.available()
    assert {t.sdk for t in offered} >= {"gradio", "static", "docker"}
    hello = templates.find("spaceport/gradio-hello")
    assert templates.find("gradio") == hello == templates.find("GRADIO")
    files = templates.files(hello)
    assert set(files) == {"README.md", "app.py", "requirements.txt", ".gitattributes"}
    assert files[".gitattributes"] == initial_commit.GITATTRIBUTES.encode()
    for template in offered:
        config = parse_readme(templates.files(template)["README.md"].decode())
        assert config.sdk == template.sdk
        assert app_file_problem(config, set(templates.files(template))) is None
    with pytest.raises(templates.UnknownTemplate, match="spaceport/gradio-hello"):
        templates.find("SpacesExamples/jupyterlab")


def test_gitignore_is_read_as_git_reads_it() -> None:
    rules = "build/\n*.log\n!keep.log\n/secret.txt\ndata/**/*.bin\n"
    paths = [
        "build/out.txt",
        "build",
        "a/build/x",
        "x.log",
        "keep.log",
        "secret.txt",
        "sub/secret.txt",
        "data/a/b.bin",
        "app.py",
        "with space.log",
        "line\nbreak.log",
    ]
    assert gitignore.ignored(rules, paths) == {
        "build/out.txt",
        "a/build/x",
        "x.log",
        "secret.txt",
        "data/a/b.bin",
        "with space.log",
        "line\nbreak.log",
    }
    assert gitignore.ignored("", paths) == set()
    assert gitignore.ignored("# only a comment\n", paths) == set()


@pytest.mark.parametrize("bad", ["..\\x", "a\\..\\b", "a\\.\\b", ".git\\config", "x\\..\\"])
def test_backslash_paths_that_climb_are_refused_with_422(bad: str) -> None:
    with pytest.raises(repo_commit.CommitError) as caught:
        repo_commit.clean_path(bad)
    assert caught.value.status == 422


def test_other_backslashes_are_plain_characters() -> None:
    assert repo_commit.clean_path("a\\b.txt") == "a\\b.txt"
    assert repo_commit.clean_path("..x\\y..") == "..x\\y.."


def test_a_plain_path_deletes_a_folder(migrated_home: Path, tmp_path: Path) -> None:
    repo = repos.init_bare("alice", "folders")
    content = tmp_path / "content"
    content.write_bytes(b"x\n")
    adds = [repo_commit.AddFile(p, content) for p in ("dir/a", "dir/sub/b", "keep", "dirx")]
    first = repo_commit.create_commit(repo, "refs/heads/main", None, adds, "m\n", AUTHOR)
    second = repo_commit.create_commit(
        repo, "refs/heads/main", first, [repo_commit.Delete("dir", folder=False)], "m\n", AUTHOR
    )
    assert repos.list_files(repo, second) == {"keep", "dirx"}
    with pytest.raises(repo_commit.CommitError) as missing:
        repo_commit.create_commit(
            repo, "refs/heads/main", second, [repo_commit.Delete("dir", False)], "m\n", AUTHOR
        )
    assert missing.value.status == 404


@pytest.mark.parametrize(
    "readme",
    [
        "# no front matter at all\n",
        "---\nsdk: gradio\napp_port: seventy\n---\n",
        "---\nsdk: nope\ncolorFrom: brown\n---\n",
        "---\ntitle: x\n",  # never closed
        "---\n---\n",
        "",
    ],
)
def test_validate_yaml_takes_what_a_push_takes(readme: str) -> None:
    check_front_matter_yaml(readme)


@pytest.mark.parametrize(
    "readme",
    [
        "---\nsdk: gradio\ncolorFrom: red: orange\n---\n",
        "---\n- a\n- b\n---\n",
        "---\nsdk: gradio\nsdk: docker\n---\n",
    ],
)
def test_validate_yaml_refuses_what_is_not_yaml_settings(readme: str) -> None:
    with pytest.raises(SpaceConfigError):
        check_front_matter_yaml(readme)
