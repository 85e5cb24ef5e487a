"""docs/events.md and the docstring of orchestrator/core/events.py list every event kind,
and nothing else: the event log's readers (billing, audits) build on that list."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.core import events
from orchestrator.core.events import EventKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_every_kind_is_documented_and_only_those() -> None:
    kinds = {kind.value for kind in EventKind}
    table = DOC.read_text().split("## Kinds", 1)[1]
    documented = set(re.findall(r"^\| ([^|]+) \|", table, re.M)) - {"Kind", "---"}
    listed = {k.strip("` ") for cell in documented for k in cell.split(",")}
    assert listed == kinds
    docstring = events.__doc__ or ""
    in_code = {k for k in re.findall(r"\b([a-z_]+(?:\.[a-z_]+)?)\b", docstring) if k in kinds}
    assert in_code == kinds
