"""What a build differs in from the Hub is said where people look: the builder reports it as
data (BuildOutput.notes, from the labels of Spaceport's own base images), and the worker
records it on the build, on the Space with its image, in `build.ended`, and the runtime API
shows it as `buildNotes`; on both stacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from builder import notes
from builder.build import BuildInput, BuildOutput
from orchestrator.api.spaces import build_json, runtime_json
from orchestrator.builds import runner
from orchestrator.core import db
from orchestrator.core.models import Build, Event, Space
from tests.unit.test_build_states import queue, reload, sent, space  # noqa: F401 - fixtures

OFFLINE_311 = {
    "org.spaceport.base": "offline",
    "org.spaceport.suite": "bookworm",
    "org.spaceport.python": "3.11",
}
NODE_20 = {**OFFLINE_311, "org.spaceport.node": "20.20.2", "org.spaceport.npm": "11.21.2"}
NOTE_310 = (
    "python:3.10-slim is Spaceport's equivalent: Python 3.11 from Debian bookworm, not Python "
    "3.10 (no Debian suite Spaceport builds offline ships 3.10: set python_version 3.11, or "
    "load python:3.10-slim with `docker load`)"
)


def test_a_python_stand_in_says_which_python_it_is() -> None:
    assert notes.note_for("python:3.10-slim", OFFLINE_311) == NOTE_310
    assert notes.note_for("python:3.11-slim", OFFLINE_311) == (
        "python:3.11-slim is Spaceport's equivalent: Python 3.11 from Debian bookworm"
    )
    assert notes.note_for("python:3.10-slim", {}) is None  # the real image: nothing to say


def test_a_node_stand_in_says_which_node_it_is() -> None:
    assert notes.note_for("node:20", NODE_20) == (
        "node:20 is Spaceport's equivalent: Node.js 20.20.2 with npm 11.21.2 on Debian bookworm"
    )


class Images:
    def __init__(self, labels: dict[str, dict[str, str]]) -> None:
        self.labels = labels

    def get(self, ref: str) -> Any:
        import docker.errors

        if ref not in self.labels:
            raise docker.errors.ImageNotFound(ref)
        return type("Image", (), {"labels": self.labels[ref]})()


def test_each_base_is_noted_once_and_missing_or_real_ones_not() -> None:
    client = type("Client", (), {"images": Images({"python:3.10-slim": OFFLINE_311, "x": {}})})()
    refs = ["python:3.10-slim", "x", "python:3.10-slim", "gone:1"]
    assert notes.substitution_notes(client, refs) == (NOTE_310,)  # type: ignore[arg-type]


def test_the_notes_reach_the_build_the_space_the_event_and_the_runtime(
    space: Space,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(client: Any, item: BuildInput, options: Any, log: Any, stop: Any) -> BuildOutput:
        return BuildOutput(image="spaceport/space:abc", reused=False, notes=(NOTE_310,))

    monkeypatch.setattr(runner, "build_image", fake)
    monkeypatch.setattr(runner, "engine_client", lambda: None)
    build = queue(space, tmp_path)
    assert build.id is not None
    runner.run_build(build.id)
    with db.session_scope() as session:
        row = reload(session, Build, build.id)
        assert json.loads(row.notes) == [NOTE_310]
        assert json.loads(reload(session, Space, space.id).built_notes) == [NOTE_310]
        ended = session.exec(select(Event).where(Event.kind == "build.ended")).one()
        assert json.loads(ended.data)["notes"] == [NOTE_310]

        # The API's shapes: the runtime (Spaceport's own field after the Hub's) and the build.
        runtime = runtime_json(reload(session, Space, space.id)).model_dump(mode="json")
        assert runtime["buildNotes"] == [NOTE_310]
        assert runtime["errorMessage"] is None  # the Hub's fields keep their meaning
        assert build_json(row).model_dump(mode="json")["notes"] == [NOTE_310]
