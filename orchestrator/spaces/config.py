"""The one typed model of a Space's configuration: README.md front matter.

A Space is configured the way Hugging Face configures it (hub-api.md §14.1): a YAML block
between a first ``---`` line and the next ``---`` line of README.md, with HF's keys and
defaults. ``parse_readme`` turns that text into a frozen ``SpaceConfig`` or raises
``SpaceConfigError`` naming the README line to fix; the runtime shows that message with
stage CONFIG_ERROR, so every message says what is wrong *and* what to write instead.

Unknown keys are kept in ``SpaceConfig.extra`` (HF keeps them in ``cardData`` too).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from sandbox.hardware import CATALOGUE

Sdk = Literal["gradio", "docker", "static", "streamlit"]
Color = Literal["red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"]
HeaderStyle = Literal["mini", "default"]
StorageTier = Literal["small", "medium", "large"]

SDKS: tuple[str, ...] = get_args(Sdk)
ALLOWED_CUSTOM_HEADERS: tuple[str, ...] = (
    "cross-origin-embedder-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
)
# Docker Spaces name no app file: the Dockerfile's CMD decides what runs.
DEFAULT_APP_FILES: dict[str, str | None] = {
    "gradio": "app.py",
    "streamlit": "app.py",
    "static": "index.html",
    "docker": None,
}
SHORT_DESCRIPTION_MAX = 60

_PYTHON_VERSION = re.compile(r"3\.\d+(\.\d+)?")
# Loose PEP 440 shape; also keeps the value safe to splice into "gradio==<version>".
_SDK_VERSION = re.compile(r"\d[0-9A-Za-z.+-]{0,63}")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A small README can still expand to millions of nodes through YAML aliases
# ("billion laughs"); nothing legitimate comes near this.
_MAX_NODES = 10_000
# Bounds of the numeric settings, for the "must be between" message.
_RANGES = {"app_port": (1, 65535), "hf_oauth_expiration_minutes": (1, 43200)}
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SpaceConfigError(Exception):
    """README.md cannot be used; ``line`` is the 1-based README line to fix, if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"README.md line {self.line}: {self.message}"

    @classmethod
    def missing_readme(cls) -> SpaceConfigError:
        return cls(
            "README.md is missing: add one with a YAML front matter block starting with --- "
            "and containing at least `sdk: gradio`"
        )


def parse_duration(text: str) -> int:
    """Seconds in a duration such as "90s", "30m", "1h" or "1h30m"; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower().replace(" ", ""))
    if not text.strip() or match is None:
        raise ValueError('must be a duration like "30m", "1h", "90s" or "1h30m"')
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError("must be longer than 0 seconds")
    return total


def _header_name(name: str) -> str:
    if name in ALLOWED_CUSTOM_HEADERS:
        return name
    if name.lower() in ALLOWED_CUSTOM_HEADERS:
        raise ValueError(f"names must be lower-case: write {name.lower()!r}")
    raise ValueError(f"may only set {', '.join(ALLOWED_CUSTOM_HEADERS)}")


def _default_app_file(data: dict[str, Any]) -> str | None:
    return DEFAULT_APP_FILES.get(data.get("sdk", ""))


Names = tuple[str, ...]


class SpaceConfig(BaseModel):
    """A Space's configuration. Field aliases are the README keys (``colorFrom``...)."""

    # extra="forbid": parse_readme moves unknown keys into ``extra`` itself, so anything
    # unknown arriving here is a programming mistake. Numbers are accepted where text is
    # expected because YAML turns `title: 2048` into an int.
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, coerce_numbers_to_str=True
    )

    title: str | None = None
    emoji: str | None = None
    color_from: Color | None = Field(default=None, alias="colorFrom")
    color_to: Color | None = Field(default=None, alias="colorTo")
    sdk: Sdk  # must precede app_file: its default depends on the sdk
    sdk_version: str | None = None
    python_version: str = "3.10"
    app_file: str | None = Field(default_factory=_default_app_file)
    app_port: int = Field(default=7860, ge=1, le=_RANGES["app_port"][1])
    app_build_command: str | None = None
    base_path: str | None = None
    full_width: bool = Field(default=True, alias="fullWidth")
    header: HeaderStyle = "default"
    short_description: str | None = Field(default=None, max_length=SHORT_DESCRIPTION_MAX)
    thumbnail: str | None = None
    suggested_hardware: str | None = None
    suggested_storage: StorageTier | None = None
    startup_duration_timeout: str = "30m"
    custom_headers: dict[Annotated[str, AfterValidator(_header_name)], str] = Field(
        default_factory=dict
    )
    models: Names = ()
    datasets: Names = ()
    tags: Names = ()
    pinned: bool = False
    license: str | None = None
    duplicated_from: str | None = None
    disable_embedding: bool = False
    hf_oauth: bool = False
    hf_oauth_scopes: Names = ()
    hf_oauth_expiration_minutes: int = Field(
        default=480, ge=1, le=_RANGES["hf_oauth_expiration_minutes"][1]
    )
    hf_oauth_authorized_org: str | Names | None = None
    preload_from_hub: Names = ()
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("app_port", "hf_oauth_expiration_minutes", mode="before")
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        # pydantic would read `app_port: true` as 1.
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        return value

    @field_validator(
        "models", "datasets", "tags", "hf_oauth_scopes", "preload_from_hub", mode="before"
    )
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        # `tags: gradio` is a common shorthand for a one-item list.
        return (value,) if isinstance(value, str) else value

    @field_validator("hf_oauth_authorized_org", mode="before")
    @classmethod
    def _org_or_orgs(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list | tuple) and all(isinstance(org, str) for org in value):
            return tuple(value)
        raise ValueError("must be an organization name or a list of them")

    @field_validator("python_version")
    @classmethod
    def _python_version(cls, value: str) -> str:
        if not _PYTHON_VERSION.fullmatch(value):
            raise ValueError('must look like 3.x or 3.x.y, e.g. "3.10"')
        return value

    @field_validator("sdk_version")
    @classmethod
    def _sdk_version(cls, value: str | None) -> str | None:
        if value is not None and not _SDK_VERSION.fullmatch(value):
            raise ValueError('must be a version number like "5.9.1"')
        return value

    @field_validator("app_file")
    @classmethod
    def _app_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:  # `app_file:` left empty means "the default"
            return DEFAULT_APP_FILES.get(info.data.get("sdk", ""))
        path = value.strip().removeprefix("./")
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise ValueError("must be a path inside the repo, like app.py or src/app.py")
        return path

    @field_validator("base_path")
    @classmethod
    def _base_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError('must start with "/", e.g. "/docs"')
        return value

    @field_validator("suggested_hardware")
    @classmethod
    def _hardware(cls, value: str | None) -> str | None:
        if value is not None and value not in CATALOGUE:
            raise ValueError(f"must be one of {', '.join(CATALOGUE)}")
        return value

    @field_validator("startup_duration_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None:  # None is reported as "empty" by the type check
            parse_duration(str(value))
        return value

    @field_validator("duplicated_from")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and not _REPO_ID.fullmatch(value):
            raise ValueError('must look like "owner/name"')
        return value

    @property
    def startup_timeout_seconds(self) -> int:
        return parse_duration(self.startup_duration_timeout)

    def build_key(self) -> dict[str, Any]:
        """The fields that change the built image; the builder hashes this dict."""
        return {
            "sdk": self.sdk,
            "sdk_version": self.sdk_version,
            "python_version": self.python_version,
            "app_file": self.app_file,
            "app_port": self.app_port,
        }

    def to_json(self) -> str:
        """The config as stored with a build (Build.config): only the keys the README set,
        so `from_json` gives back the same config, down to which keys were set (what
        `to_card_data` and `app_file_problem` read)."""
        return self.model_dump_json(exclude_unset=True)

    @classmethod
    def from_json(cls, text: str) -> SpaceConfig:
        return cls.model_validate_json(text)

    def to_card_data(self) -> dict[str, Any]:
        """``cardData`` for the Hub API: the README keys that were set (plus ``sdk``),
        under their README names, with normalised JSON values; then the unknown keys."""
        present = (self.model_fields_set | {"sdk"}) - {"extra"}
        data = self.model_dump(mode="json", by_alias=True, include=present)
        data.update(self.model_dump(mode="json", include={"extra"})["extra"])
        return data


# README keys that hold text: a plain YAML scalar there keeps its source text, so that
# `python_version: 3.10` means "3.10" (not the float 3.1) and `title: yes` means "yes".
_TEXT_KEYS = frozenset(
    {
        "title",
        "emoji",
        "colorFrom",
        "colorTo",
        "sdk",
        "sdk_version",
        "python_version",
        "app_file",
        "app_build_command",
        "base_path",
        "header",
        "short_description",
        "thumbnail",
        "suggested_hardware",
        "suggested_storage",
        "startup_duration_timeout",
        "license",
        "duplicated_from",
        "hf_oauth_authorized_org",
    }
)
_KNOWN_KEYS = frozenset(
    field.alias or name for name, field in SpaceConfig.model_fields.items() if name != "extra"
)


def parse_readme(text: str) -> SpaceConfig:
    """Parse README.md text into a SpaceConfig; raise SpaceConfigError saying what to fix."""
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    # Like huggingface_hub, tolerate blank lines before the opening ---.
    start = next((i for i, line in enumerate(lines) if line.strip()), 0)
    if lines[start].rstrip() != "---":
        raise SpaceConfigError(
            "README.md has no YAML front matter: start it with a line `---`, then your "
            "settings (at least `sdk: gradio`), then a closing `---` line",
            start + 1,
        )
    end = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        raise SpaceConfigError(
            "the front matter opened here is never closed: add a line `---` after the last setting",
            start + 1,
        )
    # README line of the front matter's first YAML line (1-based).
    first = start + 2
    root, data, key_lines = _load_front_matter("\n".join(lines[start + 1 : end]), first)

    missing_line = start + 1  # a missing key is reported at the opening ---
    known = {key: value for key, value in data.items() if key in _KNOWN_KEYS}
    unknown = {key: value for key, value in data.items() if key not in _KNOWN_KEYS}
    try:
        return SpaceConfig.model_validate({**known, "extra": unknown})
    except ValidationError as exc:
        raise _first_problem(exc, root, first, key_lines, missing_line) from None


def check_front_matter_yaml(text: str) -> None:
    """SpaceConfigError when README.md's front matter is not YAML `key: value` settings
    (what validate-yaml refuses). Whatever else a git push takes passes: no front matter,
    an unclosed one, unknown or invalid settings make the Space's CONFIG_ERROR, which
    deploy_commit reports, not a reason to refuse the file."""
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    start = next((i for i, line in enumerate(lines) if line.strip()), 0)
    if lines[start].rstrip() != "---":
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None or not any(line.strip() for line in lines[start + 1 : end]):
        return
    _load_front_matter("\n".join(lines[start + 1 : end]), start + 2)


def _load_front_matter(
    source: str, first: int
) -> tuple[yaml.MappingNode, dict[str, Any], dict[str, int]]:
    """YAML -> (root node, top-level settings, README line of each key).

    Composes the node graph first so that duplicate keys, alias bombs and key lines are
    read off it before anything is constructed; SafeLoader only ever constructs plain data
    (str, int, float, bool, None, dates, lists, dicts), never arbitrary Python objects.
    """
    try:
        # The reader checks for control characters as soon as the loader is made.
        loader = yaml.SafeLoader(source)
    except yaml.YAMLError as exc:
        raise _reader_error(exc, source, first) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpaceConfigError(
                "the front matter is empty: add at least `sdk: gradio`", first - 1
            )
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise SpaceConfigError(
                f"the front matter must be `key: value` settings, one per line (got {kind})",
                root.start_mark.line + first,
            )
        _check_graph(root, first)
        data: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + first
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                raise SpaceConfigError("setting names must be plain words like `title`", line)
            # The source text is the name: `on:` is the key "on", not the boolean True.
            name = key_node.value
            value = loader.construct_object(value_node, deep=True)
            if (
                name in _TEXT_KEYS
                and isinstance(value_node, yaml.ScalarNode)
                and value_node.style is None
                and value is not None
                and not isinstance(value, str)
            ):
                value = value_node.value
            data[name] = value
            key_lines[name] = line
        return root, data, key_lines
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, first) from None
    except yaml.YAMLError as exc:
        raise _reader_error(exc, source, first) from None
    except RecursionError:
        raise SpaceConfigError("the front matter is nested too deeply", first - 1) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.YAMLError, source: str, first: int) -> SpaceConfigError:
    """A ReaderError (a control character in the text) carries a position, not a mark."""
    position = getattr(exc, "position", None)
    line = source.count("\n", 0, position) + first if position is not None else None
    character = getattr(exc, "character", None)
    if character is None:
        return SpaceConfigError(f"invalid YAML: {exc}", line)
    return SpaceConfigError(
        f"invalid YAML: the control character {character!r} is not allowed; remove it", line
    )


def _yaml_error(exc: yaml.MarkedYAMLError, first: int) -> SpaceConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "could not be read"
    message = f"invalid YAML: {problem}"
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} on line {exc.context_mark.line + first})"
    # The two mistakes README authors make most often.
    if "mapping values are not allowed" in problem:
        message += '; if a value contains ": ", put the value in quotes'
    elif "'\\t'" in problem:
        message += "; indent with spaces, not tabs"
    return SpaceConfigError(message, mark.line + first if mark is not None else None)


def _check_graph(root: yaml.Node, first: int) -> None:
    """Reject duplicate keys, self-referencing aliases and alias bombs, before construction."""
    sizes: dict[int, int] = {}  # memoised: an alias is the same node object, seen once
    active: set[int] = set()

    def visit(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise SpaceConfigError(
                "a YAML alias refers to the value that contains it", node.start_mark.line + first
            )
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    line = key_node.start_mark.line + first
                    if key_node.value in seen:
                        raise SpaceConfigError(
                            f"duplicate key {key_node.value!r}: it is already set on line "
                            f"{seen[key_node.value]}; keep only one",
                            line,
                        )
                    seen[key_node.value] = line
                total += visit(key_node) + visit(value_node)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(visit(item) for item in node.value)
        active.discard(id(node))
        if total > _MAX_NODES:
            raise SpaceConfigError(
                "the front matter is too large (too many values, or aliases that expand to "
                "too many)",
                node.start_mark.line + first,
            )
        sizes[id(node)] = total
        return total

    visit(root)


def _first_problem(
    exc: ValidationError,
    root: yaml.MappingNode,
    first: int,
    key_lines: dict[str, int],
    missing_line: int,
) -> SpaceConfigError:
    """The earliest problem in README order, as a sentence an author can act on."""
    problems: list[tuple[int, str]] = []
    for error in exc.errors():
        if error["type"] == "default_factory_not_called":
            continue  # a side effect of another field's error (app_file waits on sdk)
        loc = error["loc"]
        if error["type"] == "missing":
            # Only sdk is required; say which values it takes.
            problems.append(
                (
                    missing_line,
                    f"{loc[0]} is missing: add a line `sdk: gradio` (or {', '.join(SDKS[1:])}) "
                    "to the front matter",
                )
            )
            continue
        line = _loc_line(root, loc, first) if str(loc[0]) in key_lines else missing_line
        problems.append((line, _describe(error)))
    if not problems:  # cannot happen while app_file is the only default factory
        return SpaceConfigError(str(exc), missing_line)
    line, message = min(problems, key=lambda problem: problem[0])
    return SpaceConfigError(message, line)


def _loc_line(root: yaml.MappingNode, loc: tuple[int | str, ...], first: int) -> int:
    """Follow a pydantic error location into the node graph; the deepest line found."""
    node: yaml.Node = root
    line = root.start_mark.line + first
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((pair for pair in node.value if pair[0].value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + first, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + first
        else:
            break
    return line


def _describe(error: ErrorDetails) -> str:
    loc = list(error["loc"])
    value = error["input"]
    if loc[-1] == "[key]":  # a bad mapping key: the message names the key itself
        loc = loc[:-2]
    label = str(loc[0]) + "".join(f"[{part!r}]" for part in loc[1:])
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "literal_error":
        choices = ctx["expected"].replace("'", "").replace(" or ", ", ")
        if value is None:
            return f"{label} is empty: set it to one of {choices}"
        requirement = f"must be one of {choices}"
    elif value is None:
        return f"{label} is empty: give it a value or delete the line"
    elif kind == "value_error":
        requirement = str(ctx["error"])
    elif kind == "string_too_long":
        return (
            f"{label} must be at most {ctx['max_length']} characters (it has {len(value)}); "
            "shorten it"
        )
    elif kind == "string_type":
        requirement = "must be text"
    elif kind.startswith("int_"):
        requirement = "must be a whole number"
    elif kind.startswith("bool_"):
        requirement = "must be true or false"
    elif kind in ("list_type", "tuple_type"):
        requirement = "must be a list, e.g. [a, b]"
    elif kind == "dict_type":
        requirement = "must be a mapping of `name: value` lines"
    elif kind in ("greater_than_equal", "less_than_equal"):
        low, high = _RANGES[label]
        requirement = f"must be between {low} and {high}"
    else:
        requirement = error["msg"]
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{label} {requirement} (got {shown})"


def app_file_problem(config: SpaceConfig, files: set[str]) -> str | None:
    """Why the repo tree cannot run (stage NO_APP_FILE), or None when the entry point exists."""
    present = {path.removeprefix("/") for path in files}
    if config.sdk == "docker":
        if "Dockerfile" in present:
            return None
        return "Dockerfile not found: add a Dockerfile at the repo root (sdk: docker builds it)"
    if config.sdk == "static" and config.app_build_command:
        return None  # app_file is produced by the build command, not committed
    app_file = config.app_file or DEFAULT_APP_FILES[config.sdk] or "app.py"
    if app_file in present:
        return None
    if "app_file" in config.model_fields_set:
        return (
            f"{app_file} not found: README.md sets app_file to {app_file}; add that file or "
            "fix app_file"
        )
    return (
        f"{app_file} not found: add {app_file} at the repo root, or set app_file in README.md "
        "to your app's path"
    )
