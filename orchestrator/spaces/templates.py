"""Space templates: the starting points `create_repo(space_template=...)` seeds a new Space
from, and `list_space_templates()` lists (Hub: GET /api/spaces/templates).

On the Hub a template is a Space of its own (`SpacesExamples/...`) that the new Space is
seeded from. Spaceport's templates are the working samples shipped in `sample_spaces/`:
each is a complete Space that builds and runs as it is. The list is declared here, not
read from the folder, so that the broken and hostile samples the tests use are never
offered; a template whose folder is absent (an installation without the checkout's
sample_spaces/) is left out of the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.repos.initial_commit import GITATTRIBUTES

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "sample_spaces"
# Never part of a template's commit: what a local run of a sample may leave behind.
_SKIPPED_PARTS = frozenset({".git", "__pycache__", "node_modules", ".venv"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Template:
    name: str  # what `space_template=` may name, case-insensitively
    repo_id: str  # the other spelling `space_template=` takes, and what the client sends
    sdk: str
    folder: str  # under sample_spaces/
    preferred_private: bool = False

    @property
    def path(self) -> Path:
        return SAMPLES_DIR / self.folder


TEMPLATES: tuple[Template, ...] = (
    Template("Gradio", "spaceport/gradio-hello", "gradio", "hello"),
    Template("Chatbot", "spaceport/gradio-chatbot", "gradio", "streaming_chatbot"),
    Template("Static HTML", "spaceport/static-html", "static", "static_site"),
    Template("Docker FastAPI", "spaceport/docker-fastapi", "docker", "docker_fastapi"),
)


class UnknownTemplate(LookupError):
    """No template of that name; the message lists the ones there are."""


def available() -> list[Template]:
    return [t for t in TEMPLATES if t.path.is_dir()]


def find(wanted: str) -> Template:
    """The template `wanted` names: its repo id, or its name in any case (as the client
    resolves it)."""
    offered = available()
    for template in offered:
        if wanted == template.repo_id or wanted.lower() == template.name.lower():
            return template
    names = ", ".join(f"{t.repo_id} ({t.name})" for t in offered) or "none"
    raise UnknownTemplate(
        f"Unknown Space template {wanted!r}: the templates are {names} "
        "(list_space_templates() lists them)"
    )


def files(template: Template) -> dict[str, bytes]:
    """The template's files, repo path -> content, with the Hub's default .gitattributes
    where the sample brings none (so LFS rules are those of any new Space)."""
    found: dict[str, bytes] = {}
    for path in sorted(template.path.rglob("*")):
        relative = path.relative_to(template.path)
        if not path.is_file() or path.is_symlink():
            continue
        if _SKIPPED_PARTS & set(relative.parts) or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        found[relative.as_posix()] = path.read_bytes()
    found.setdefault(".gitattributes", GITATTRIBUTES.encode())
    return found
