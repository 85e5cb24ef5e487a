"""README.md front matter -> SpaceConfig, and the messages authors see when it is wrong."""

from __future__ import annotations

import datetime

import pytest
import yaml
from pydantic import ValidationError

from orchestrator.spaces.config import (
    ALLOWED_CUSTOM_HEADERS,
    SpaceConfig,
    SpaceConfigError,
    app_file_problem,
    parse_duration,
    parse_readme,
)
from sandbox.hardware import CATALOGUE


def readme(*lines: str, body: str = "# My Space\n\nSome text.\n") -> str:
    """A README whose front matter holds ``lines``; front matter line 1 is README line 2."""
    return "---\n" + "".join(f"{line}\n" for line in lines) + "---\n" + body


def error_of(text: str) -> SpaceConfigError:
    with pytest.raises(SpaceConfigError) as caught:
        parse_readme(text)
    return caught.value


# --- valid READMEs -------------------------------------------------------------------------


def test_minimal_gradio_space_gets_hugging_face_defaults() -> None:
    config = parse_readme(readme("sdk: gradio"))
    assert config.sdk == "gradio"
    assert config.sdk_version is None
    assert config.python_version == "3.10"
    assert config.app_file == "app.py"
    assert config.app_port == 7860
    assert config.startup_duration_timeout == "30m"
    assert config.startup_timeout_seconds == 1800
    assert config.pinned is False
    assert config.full_width is True
    assert config.header == "default"
    assert config.disable_embedding is False
    assert config.hf_oauth is False
    assert config.hf_oauth_expiration_minutes == 480
    assert config.title is None and config.emoji is None
    assert config.color_from is None and config.color_to is None
    assert config.suggested_hardware is None
    assert config.custom_headers == {}
    assert config.tags == () and config.models == () and config.datasets == ()
    assert config.extra == {}


@pytest.mark.parametrize(
    ("sdk", "app_file"),
    [("gradio", "app.py"), ("streamlit", "app.py"), ("static", "index.html"), ("docker", None)],
)
def test_default_app_file_depends_on_sdk(sdk: str, app_file: str | None) -> None:
    assert parse_readme(readme(f"sdk: {sdk}")).app_file == app_file


FULL = readme(
    "title: Image Captioner",
    "emoji: 🖼️",
    "colorFrom: indigo",
    "colorTo: pink",
    "sdk: gradio",
    "sdk_version: 5.9.1",
    "python_version: 3.11",
    "app_file: src/main.py",
    "app_port: 8080",
    "app_build_command: npm run build",
    "base_path: /demo",
    "fullWidth: false",
    "header: mini",
    "short_description: Captions your images",
    "thumbnail: https://example.com/t.png",
    "suggested_hardware: t4-small",
    "suggested_storage: small",
    "startup_duration_timeout: 1h",
    "custom_headers:",
    "  cross-origin-embedder-policy: require-corp",
    "  cross-origin-opener-policy: same-origin",
    "  cross-origin-resource-policy: cross-origin",
    "models:",
    "  - openai/clip-vit-base-patch32",
    "datasets: [coco]",
    "tags: [vision, captioning]",
    "pinned: true",
    "license: apache-2.0",
    "duplicated_from: alice/captioner",
    "disable_embedding: true",
    "hf_oauth: true",
    "hf_oauth_scopes: [email, read-repos]",
    "hf_oauth_expiration_minutes: 60",
    "hf_oauth_authorized_org: my-org",
    "preload_from_hub:",
    "  - openai/clip-vit-base-patch32 config.json,model.safetensors",
    "metaTitle: Captioner",
)


def test_every_key_is_read() -> None:
    config = parse_readme(FULL)
    assert config.title == "Image Captioner"
    assert config.emoji == "🖼️"
    assert (config.color_from, config.color_to) == ("indigo", "pink")
    assert config.sdk == "gradio"
    assert config.sdk_version == "5.9.1"
    assert config.python_version == "3.11"
    assert config.app_file == "src/main.py"
    assert config.app_port == 8080
    assert config.app_build_command == "npm run build"
    assert config.base_path == "/demo"
    assert config.full_width is False
    assert config.header == "mini"
    assert config.short_description == "Captions your images"
    assert config.thumbnail == "https://example.com/t.png"
    assert config.suggested_hardware == "t4-small"
    assert config.suggested_storage == "small"
    assert config.startup_timeout_seconds == 3600
    assert config.custom_headers == {
        "cross-origin-embedder-policy": "require-corp",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "cross-origin",
    }
    assert config.models == ("openai/clip-vit-base-patch32",)
    assert config.datasets == ("coco",)
    assert config.tags == ("vision", "captioning")
    assert config.pinned is True
    assert config.license == "apache-2.0"
    assert config.duplicated_from == "alice/captioner"
    assert config.disable_embedding is True
    assert config.hf_oauth is True
    assert config.hf_oauth_scopes == ("email", "read-repos")
    assert config.hf_oauth_expiration_minutes == 60
    assert config.hf_oauth_authorized_org == "my-org"
    assert config.preload_from_hub == (
        "openai/clip-vit-base-patch32 config.json,model.safetensors",
    )
    assert config.extra == {"metaTitle": "Captioner"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("3.10", "3.10"),  # YAML reads this as the float 3.1: the source text must win
        ("3.9", "3.9"),
        ("3.12.1", "3.12.1"),
        ('"3.10"', "3.10"),
        ("'3.8'", "3.8"),
    ],
)
def test_python_version_keeps_its_source_text(written: str, expected: str) -> None:
    assert parse_readme(readme("sdk: gradio", f"python_version: {written}")).python_version == (
        expected
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [("4.40", "4.40"), ("5", "5"), ("5.9.1", "5.9.1"), ("5.0.0b3", "5.0.0b3")],
)
def test_sdk_version_keeps_its_source_text(written: str, expected: str) -> None:
    assert parse_readme(readme("sdk: gradio", f"sdk_version: {written}")).sdk_version == expected


def test_text_keys_keep_numbers_and_booleans_as_written() -> None:
    config = parse_readme(readme("title: 2048", "emoji: yes", "license: 1.0", "sdk: gradio"))
    assert (config.title, config.emoji, config.license) == ("2048", "yes", "1.0")


def test_unknown_keys_are_kept_in_extra() -> None:
    config = parse_readme(
        readme("sdk: static", "metaTitle: Hi", "description: words", "extra: 1", "on: x")
    )
    # "extra" is an ordinary unknown key; `on:` stays the text "on", not True.
    assert config.extra == {"metaTitle": "Hi", "description": "words", "extra": 1, "on": "x"}


def test_a_single_string_is_a_one_item_list() -> None:
    config = parse_readme(readme("sdk: gradio", "tags: gradio", "models: a/b"))
    assert config.tags == ("gradio",)
    assert config.models == ("a/b",)


def test_numbers_in_lists_become_text() -> None:
    assert parse_readme(readme("sdk: gradio", "tags: [2024, nlp]")).tags == ("2024", "nlp")


def test_app_file_is_normalised_and_empty_means_default() -> None:
    assert parse_readme(readme("sdk: gradio", "app_file: ./src/app.py")).app_file == "src/app.py"
    assert parse_readme(readme("sdk: static", "app_file:")).app_file == "index.html"


def test_app_port_accepts_a_quoted_number() -> None:
    assert parse_readme(readme("sdk: docker", 'app_port: "8080"')).app_port == 8080


def test_oauth_org_may_be_a_list() -> None:
    config = parse_readme(readme("sdk: gradio", "hf_oauth_authorized_org: [a, b]"))
    assert config.hf_oauth_authorized_org == ("a", "b")


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_catalogue_tier_is_a_valid_suggestion(name: str) -> None:
    assert parse_readme(readme("sdk: gradio", f"suggested_hardware: {name}")).suggested_hardware


def test_body_after_the_front_matter_is_ignored() -> None:
    text = readme("sdk: gradio", body="# Title\n\n---\n\nsdk: [not yaml\n---\n")
    assert parse_readme(text).sdk == "gradio"


def test_leading_blank_lines_bom_crlf_and_trailing_spaces_are_tolerated() -> None:
    text = "\ufeff\n\n---  \r\nsdk: docker\r\ncolorFrom: teal\r\n---\r\nbody\r\n"
    error = error_of(text)
    assert error.line == 5  # the blank lines count, the BOM does not add one
    assert parse_readme(text.replace("teal", "red")).sdk == "docker"


def test_front_matter_closed_at_end_of_file() -> None:
    assert parse_readme("---\nsdk: gradio\n---").sdk == "gradio"


def test_yaml_merge_keys_work_inside_values() -> None:
    text = readme(
        "sdk: gradio",
        "base: &base",
        "  cross-origin-opener-policy: same-origin",
        "custom_headers:",
        "  <<: *base",
    )
    config = parse_readme(text)
    assert config.custom_headers == {"cross-origin-opener-policy": "same-origin"}


def test_dates_in_unknown_keys_are_kept_and_serialised() -> None:
    config = parse_readme(readme("sdk: gradio", "released: 2024-05-01"))
    assert config.extra == {"released": datetime.date(2024, 5, 1)}
    assert config.to_card_data()["released"] == "2024-05-01"


# --- startup_duration_timeout --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("90s", 90), ("1h30m", 5400), ("2h5m10s", 7510), ("1H", 3600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    config = parse_readme(readme("sdk: gradio", f"startup_duration_timeout: {text}"))
    assert config.startup_timeout_seconds == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "1.5h", "30 minutes", "0m", "1d", "h1", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_duration_in_readme_names_the_line_and_the_format() -> None:
    error = error_of(readme("sdk: gradio", "startup_duration_timeout: 3600"))
    assert error.line == 3
    assert 'startup_duration_timeout must be a duration like "30m"' in error.message
    assert "(got '3600')" in error.message


# --- errors: structure of the front matter -------------------------------------------------


def test_missing_readme_message() -> None:
    error = SpaceConfigError.missing_readme()
    assert error.line is None
    assert str(error) == (
        "README.md is missing: add one with a YAML front matter block starting with --- "
        "and containing at least `sdk: gradio`"
    )


def test_error_str_names_the_readme_line() -> None:
    error = error_of(readme("title: x", "sdk: gradio", "colorFrom: teal"))
    assert error.line == 4
    assert str(error) == (
        "README.md line 4: colorFrom must be one of red, yellow, green, blue, indigo, purple, "
        "pink, gray (got 'teal')"
    )


@pytest.mark.parametrize(
    "text", ["# Just a title\n", "", "sdk: gradio\n---\n", "---sdk: gradio\n---\n"]
)
def test_no_front_matter(text: str) -> None:
    error = error_of(text)
    assert error.line == 1
    assert "no YAML front matter" in error.message
    assert "sdk: gradio" in error.message


def test_unterminated_front_matter() -> None:
    error = error_of("---\nsdk: gradio\n# body\n")
    assert error.line == 1
    assert "never closed" in error.message
    assert "---" in error.message


def test_empty_front_matter() -> None:
    error = error_of("---\n---\n")
    assert error.line == 1
    assert "empty" in error.message


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        (("sdk: gradio", "title: 'unclosed"), 3, "unexpected end of stream"),
        (("sdk: gradio", "title: a: b"), 3, "put the value in quotes"),
        (("sdk: gradio", "tags:", "  - a", " - b"), 5, "invalid YAML"),
        (("sdk: gradio", "custom_headers:", "\tx: y"), 4, "spaces, not tabs"),
        (("sdk: gradio", "title: [a, b"), 3, "invalid YAML"),
        (("sdk: gradio", 'title: "a', "emoji: b"), 4, "quoted scalar on line 3"),
    ],
)
def test_invalid_yaml_reports_the_readme_line(
    lines: tuple[str, ...], line: int, fragment: str
) -> None:
    error = error_of(readme(*lines))
    assert error.line == line
    assert fragment in error.message
    assert error.message.startswith("invalid YAML")


def test_invalid_yaml_line_counts_blank_lines_before_the_front_matter() -> None:
    error = error_of("\n\n" + readme("sdk: gradio", "title: a: b"))
    assert error.line == 5


def test_control_characters_are_reported() -> None:
    error = error_of(readme("sdk: gradio", "title: a\x07b"))
    assert error.line == 3
    assert "invalid YAML" in error.message


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [(("- sdk", "- gradio"), "got a list"), (("just some words",), "got a single value")],
)
def test_front_matter_must_be_a_mapping(lines: tuple[str, ...], fragment: str) -> None:
    error = error_of(readme(*lines))
    assert error.line == 2
    assert "`key: value`" in error.message
    assert fragment in error.message


def test_missing_sdk_points_at_the_front_matter() -> None:
    error = error_of(readme("title: x", "emoji: 🚀"))
    assert error.line == 1
    assert error.message.startswith("sdk is missing")
    assert "sdk: gradio" in error.message


def test_empty_sdk() -> None:
    error = error_of(readme("title: x", "sdk:"))
    assert error.line == 3
    assert "sdk is empty" in error.message
    assert "gradio, docker, static" in error.message


def test_misspelt_sdk() -> None:
    error = error_of(readme("title: x", "sdk: gradoi"))
    assert error.line == 3
    assert "sdk must be one of gradio, docker, static" in error.message
    assert "(got 'gradoi')" in error.message


def test_duplicate_top_level_key() -> None:
    error = error_of(readme("sdk: gradio", "title: a", "emoji: x", "title: b"))
    assert error.line == 5
    assert "duplicate key 'title'" in error.message
    assert "line 3" in error.message


def test_duplicate_nested_key() -> None:
    error = error_of(
        readme(
            "sdk: gradio",
            "custom_headers:",
            "  cross-origin-opener-policy: same-origin",
            "  cross-origin-opener-policy: unsafe-none",
        )
    )
    assert error.line == 5
    assert "duplicate key 'cross-origin-opener-policy'" in error.message


def test_python_tags_are_never_constructed() -> None:
    error = error_of(readme("sdk: gradio", "x: !!python/object/apply:os.system ['true']"))
    assert error.line == 3
    assert "invalid YAML" in error.message


def test_top_level_merge_key_is_rejected() -> None:
    error = error_of(readme("base: &b {sdk: gradio}", "<<: *b"))
    assert error.line == 3
    assert "plain words" in error.message


def test_self_referencing_alias_is_rejected() -> None:
    error = error_of(readme("sdk: gradio", "loop: &a [*a]"))
    assert error.line == 3
    assert "alias" in error.message


def test_alias_bomb_is_rejected() -> None:
    lines = ["sdk: gradio", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcde", "bcdef", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    error = error_of(readme(*lines))
    assert "too large" in error.message


def test_the_earliest_problem_is_reported() -> None:
    error = error_of(readme("sdk: gradio", "colorTo: teal", "app_port: 0", "colorFrom: mauve"))
    assert error.line == 3
    assert error.message.startswith("colorTo must be one of")


# --- errors: values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("colorTo: teal", "colorTo must be one of red, yellow, green"),
        ("python_version: 3", 'python_version must look like 3.x or 3.x.y, e.g. "3.10"'),
        ("python_version: 2.7", "python_version must look like 3.x"),
        ("python_version: '3.10; rm -rf /'", "python_version must look like 3.x"),
        ("sdk_version: latest", 'sdk_version must be a version number like "5.9.1"'),
        ("sdk_version: 5.0 && curl x", "sdk_version must be a version number"),
        ("app_port: 0", "app_port must be between 1 and 65535 (got 0)"),
        ("app_port: 70000", "app_port must be between 1 and 65535 (got 70000)"),
        ("app_port: web", "app_port must be a whole number (got 'web')"),
        ("app_port: true", "app_port must be a whole number (got True)"),
        ("app_file: /etc/passwd", "app_file must be a path inside the repo"),
        ("app_file: ../secret.py", "app_file must be a path inside the repo"),
        ("pinned: maybe", "pinned must be true or false (got 'maybe')"),
        ("fullWidth: sometimes", "fullWidth must be true or false"),
        ("header: huge", "header must be one of mini, default (got 'huge')"),
        ("suggested_hardware: h100", "suggested_hardware must be one of cpu-basic, cpu-upgrade"),
        ("suggested_storage: huge", "suggested_storage must be one of small, medium, large"),
        ("base_path: docs", 'base_path must start with "/"'),
        ("duplicated_from: captioner", 'duplicated_from must look like "owner/name"'),
        ("thumbnail: [a, b]", "thumbnail must be text (got ['a', 'b'])"),
        ("tags: {a: b}", "tags must be a list"),
        ("custom_headers: [a]", "custom_headers must be a mapping"),
        ("hf_oauth_expiration_minutes: 50000", "must be between 1 and 43200"),
        ("hf_oauth_authorized_org: {a: b}", "must be an organization name or a list of them"),
        ("python_version:", "python_version is empty"),
    ],
)
def test_bad_values_name_the_key_line_and_the_fix(line: str, fragment: str) -> None:
    error = error_of(readme("title: ok", "sdk: gradio", "emoji: 🚀", line))
    assert error.line == 5, error
    assert fragment in error.message


def test_short_description_is_limited_to_60_characters() -> None:
    assert parse_readme(readme("sdk: gradio", f"short_description: {'x' * 60}"))
    error = error_of(readme("sdk: gradio", f"short_description: {'x' * 61}"))
    assert error.line == 3
    assert "short_description must be at most 60 characters (it has 61)" in error.message


def test_bad_list_item_points_at_the_item() -> None:
    error = error_of(readme("sdk: gradio", "tags:", "  - ok", "  - [nested]"))
    assert error.line == 5
    assert "tags[1] must be text" in error.message


def test_custom_headers_accepts_only_the_three_cross_origin_headers() -> None:
    error = error_of(
        readme(
            "sdk: gradio",
            "custom_headers:",
            "  cross-origin-opener-policy: same-origin",
            "  x-frame-options: deny",
        )
    )
    assert error.line == 5  # the offending header, not just custom_headers
    assert "custom_headers may only set" in error.message
    for name in ALLOWED_CUSTOM_HEADERS:
        assert name in error.message
    assert "(got 'x-frame-options')" in error.message


def test_custom_headers_must_be_lower_case() -> None:
    error = error_of(
        readme("sdk: gradio", "custom_headers:", "  Cross-Origin-Opener-Policy: same-origin")
    )
    assert error.line == 4
    assert "lower-case: write 'cross-origin-opener-policy'" in error.message


def test_long_values_are_shortened_in_messages() -> None:
    error = error_of(readme("sdk: gradio", f"colorFrom: {'z' * 200}"))
    assert "..." in error.message
    assert len(error.message) < 200


# --- the model -----------------------------------------------------------------------------


def test_config_is_frozen() -> None:
    config = parse_readme(readme("sdk: gradio"))
    with pytest.raises(ValidationError):
        config.sdk = "docker"  # type: ignore[misc]


def test_config_can_be_built_in_code_by_field_name_or_alias() -> None:
    by_name = SpaceConfig(sdk="static", color_from="red", full_width=False)
    by_alias = SpaceConfig.model_validate({"sdk": "static", "colorFrom": "red", "fullWidth": False})
    assert by_name == by_alias
    assert by_name.app_file == "index.html"


def test_unknown_fields_are_refused_in_code() -> None:
    with pytest.raises(ValidationError):
        SpaceConfig.model_validate({"sdk": "gradio", "metaTitle": "x"})


def test_dump_uses_readme_keys() -> None:
    dumped = parse_readme(readme("sdk: gradio", "colorFrom: red")).model_dump(by_alias=True)
    assert dumped["colorFrom"] == "red"
    assert dumped["fullWidth"] is True
    assert "color_from" not in dumped


def test_build_key_holds_only_build_fields() -> None:
    config = parse_readme(readme("sdk: gradio", "sdk_version: 5.9.1", "title: a"))
    assert config.build_key() == {
        "sdk": "gradio",
        "sdk_version": "5.9.1",
        "python_version": "3.10",
        "app_file": "app.py",
        "app_port": 7860,
    }
    retitled = parse_readme(readme("sdk: gradio", "sdk_version: 5.9.1", "title: b", "pinned: true"))
    assert retitled.build_key() == config.build_key()
    newer = parse_readme(readme("sdk: gradio", "sdk_version: 5.9.1", "python_version: 3.12"))
    assert newer.build_key() != config.build_key()


def test_card_data_holds_only_keys_present_plus_sdk() -> None:
    assert parse_readme(readme("sdk: gradio")).to_card_data() == {"sdk": "gradio"}
    data = parse_readme(
        readme("title: T", "colorFrom: red", "sdk: docker", "python_version: 3.10", "x-y: 1")
    ).to_card_data()
    assert data == {
        "title": "T",
        "colorFrom": "red",
        "sdk": "docker",
        "python_version": "3.10",
        "x-y": 1,
    }


def test_card_data_for_a_config_built_in_code_always_has_sdk() -> None:
    assert SpaceConfig(sdk="gradio", pinned=True).to_card_data() == {
        "sdk": "gradio",
        "pinned": True,
    }


def test_card_data_round_trips_through_yaml() -> None:
    config = parse_readme(FULL)
    card = config.to_card_data()
    assert set(card) == {
        line.split(":")[0]
        for line in FULL.split("---")[1].split("\n")
        if line and not line.startswith(" ")
    }
    assert card["colorFrom"] == "indigo"
    assert card["fullWidth"] is False
    assert card["tags"] == ["vision", "captioning"]
    assert card["python_version"] == "3.11"
    again = parse_readme("---\n" + yaml.safe_dump(card, allow_unicode=True) + "---\n")
    assert again == config
    assert again.to_card_data() == card


def test_python_version_survives_a_round_trip_as_text() -> None:
    card = parse_readme(readme("sdk: gradio", "python_version: 3.10")).to_card_data()
    assert parse_readme("---\n" + yaml.safe_dump(card) + "---\n").python_version == "3.10"


# --- app_file_problem ----------------------------------------------------------------------


def test_gradio_app_present() -> None:
    config = parse_readme(readme("sdk: gradio"))
    assert app_file_problem(config, {"README.md", "app.py", "requirements.txt"}) is None


def test_gradio_app_missing() -> None:
    config = parse_readme(readme("sdk: gradio"))
    assert app_file_problem(config, {"README.md", "main.py"}) == (
        "app.py not found: add app.py at the repo root, or set app_file in README.md to your "
        "app's path"
    )


def test_static_index_missing() -> None:
    problem = app_file_problem(parse_readme(readme("sdk: static")), {"README.md"})
    assert problem is not None
    assert problem.startswith("index.html not found")


def test_explicit_app_file_present_in_a_folder() -> None:
    config = parse_readme(readme("sdk: streamlit", "app_file: src/ui.py"))
    assert app_file_problem(config, {"README.md", "src/ui.py"}) is None


def test_explicit_app_file_missing_says_readme_set_it() -> None:
    config = parse_readme(readme("sdk: gradio", "app_file: src/ui.py"))
    problem = app_file_problem(config, {"README.md", "app.py"})
    assert problem is not None
    assert problem.startswith("src/ui.py not found")
    assert "app_file" in problem


def test_docker_needs_a_root_dockerfile() -> None:
    config = parse_readme(readme("sdk: docker"))
    assert app_file_problem(config, {"README.md", "Dockerfile"}) is None
    problem = app_file_problem(config, {"README.md", "docker/Dockerfile", "app.py"})
    assert problem is not None
    assert "Dockerfile not found" in problem
    assert "repo root" in problem


def test_static_with_build_command_skips_the_check() -> None:
    config = parse_readme(
        readme("sdk: static", "app_build_command: npm run build", "app_file: dist/index.html")
    )
    assert app_file_problem(config, {"README.md", "package.json"}) is None


def test_leading_slashes_in_tree_paths_are_tolerated() -> None:
    assert app_file_problem(parse_readme(readme("sdk: gradio")), {"/app.py"}) is None
