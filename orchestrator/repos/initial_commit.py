"""The first commit of a Space made with `create_repo`, as the Hub writes it.

The Hub never hands out an empty Space repo: creating one commits a README.md whose front
matter names the sdk (with a title, a random emoji and colours) and the Hub's default
.gitattributes, whose LFS rules decide which small files (`*.bin`, `*.safetensors`, ...)
are stored with LFS. So `create_repo` then `upload_file("app.py")` builds, `main` exists
for `create_commit(parent_commit=...)`, `metadata_update` and `RepoCard.push_to_hub`, and
the upload helpers see the same LFS rules as on the Hub.

The commit is written without a checkout (`orchestrator.repos.commit.create_commit`).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from orchestrator.repos import commit as repo_commit
from orchestrator.repos import lfs

MESSAGE = "initial commit"

# The .gitattributes the Hub commits into every new repo (the same list in every public
# Space and model created since 2022), one LFS rule a line, in the Hub's order.
LFS_PATTERNS: tuple[str, ...] = (
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.lfs.*",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "saved_model/**/*",
    "*.tar.*",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
)
GITATTRIBUTES = "".join(f"{p} {repo_commit.LFS_ATTRIBUTES}\n" for p in LFS_PATTERNS)

# The Hub picks the card's emoji and gradient at random from fixed lists; the colours are
# the ones the config reference allows (orchestrator.spaces.config.Color).
EMOJIS: tuple[str, ...] = (
    "🚀", "🔥", "🐢", "🏃", "🐨", "🌍", "👀", "🐠", "💻", "🌖", "😻", "🦀", "🏢", "⚡",
    "📈", "📊", "👁", "🏆", "💬", "📉", "📚", "🌈", "🐳", "🦙", "🎨", "🌳", "🏅",
)  # fmt: skip
COLORS: tuple[str, ...] = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
BODY = (
    "Check out the configuration reference at "
    "https://huggingface.co/docs/hub/spaces-config-reference\n"
)
APP_FILES = {"gradio": "app.py", "streamlit": "app.py"}


def _scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as that very string (a name such as
    `2048`, `true` or `1e5` is quoted, or YAML would make it a number or a boolean)."""
    plain = yaml.safe_load(value) if value else None
    if isinstance(plain, str) and plain == value and ":" not in value and "#" not in value:
        return value
    return yaml.safe_dump(value, default_style='"', width=1_000).strip()


def readme(name: str, sdk: str, *, gradio_version: str, rng: random.Random | None = None) -> str:
    """README.md of a new Space called `name` with `sdk`: the Hub's front matter (title,
    emoji, colorFrom, colorTo, sdk, for gradio its sdk_version, app_file, pinned) and
    the Hub's line pointing at the configuration reference."""
    pick = rng or random.SystemRandom()
    color_from, color_to = pick.sample(COLORS, 2)
    lines = [
        "---",
        f"title: {_scalar(name)}",
        f"emoji: {pick.choice(EMOJIS)}",
        f"colorFrom: {color_from}",
        f"colorTo: {color_to}",
        f"sdk: {sdk}",
    ]
    if sdk == "gradio":
        lines.append(f"sdk_version: {gradio_version}")
    if sdk in APP_FILES:
        lines.append(f"app_file: {APP_FILES[sdk]}")
    lines += ["pinned: false", "---", "", BODY]
    return "\n".join(lines)


def default_files(name: str, sdk: str, *, gradio_version: str) -> dict[str, bytes]:
    """What the Hub puts in a Space created without a template."""
    return {
        ".gitattributes": GITATTRIBUTES.encode(),
        "README.md": readme(name, sdk, gradio_version=gradio_version).encode(),
    }


def write(repo: Path, files: Mapping[str, bytes], author: tuple[str, str]) -> str:
    """Commit `files` as the first commit of `repo`'s main branch; returns its sha."""
    lfs.disable_repo_filters(repo)
    with tempfile.TemporaryDirectory(prefix="spaceport-initial-") as scratch:
        operations: list[repo_commit.Operation] = []
        for index, (path, content) in enumerate(sorted(files.items())):
            source = Path(scratch) / str(index)
            source.write_bytes(content)
            operations.append(repo_commit.AddFile(repo_commit.clean_path(path), source))
        return repo_commit.create_commit(
            repo, "refs/heads/main", None, operations, MESSAGE + "\n", author
        )
