"""What a build differs in from the Hub, as data: one sentence per base image that is
Spaceport's own equivalent (a `python:*` made from Debian packages, maybe with another
Python than the one asked for; a `node:*` made from the npm registry's Node.js).

The builder logs these as it resolves its bases (builder/base_image.py, node_base.py);
`BuildOutput.notes` carries them on, to the build record, the `build.ended` event and the
runtime API's `buildNotes` (docs/builder.md#what-differs-is-said)."""

from __future__ import annotations

from collections.abc import Iterable

import docker
import docker.errors

from builder import node_base
from builder.base_image import parse_official_python_ref


def python_note(ref: str, labels: dict[str, str]) -> str | None:
    """The note of a python:* base that is Spaceport's Debian-built stand-in, else None."""
    actual = labels.get("org.spaceport.python")
    if labels.get("org.spaceport.base") != "offline" or not actual:
        return None
    suite = labels.get("org.spaceport.suite", "?")
    note = f"{ref} is Spaceport's equivalent: Python {actual} from Debian {suite}"
    wanted = parse_official_python_ref(ref)
    if wanted and wanted != actual:
        note += (
            f", not Python {wanted} (no Debian suite Spaceport builds offline ships {wanted}: "
            f"set python_version {actual}, or load {ref} with `docker load`)"
        )
    return note


def note_for(ref: str, labels: dict[str, str]) -> str | None:
    if labels.get("org.spaceport.node"):
        return node_base.substitution_note(ref, labels)
    return python_note(ref, labels)


def substitution_notes(client: docker.DockerClient, refs: Iterable[str]) -> tuple[str, ...]:
    """One note per base in `refs` (each once, in order) that is Spaceport's equivalent."""
    notes: list[str] = []
    for ref in dict.fromkeys(refs):
        try:
            labels = client.images.get(ref).labels or {}
        except docker.errors.ImageNotFound:
            continue
        note = note_for(ref, labels)
        if note and note not in notes:
            notes.append(note)
    return tuple(notes)
