"""Host labels: the one DNS label under which each Space is served ({label}.{spaces_domain}).

A label is stored with the Space and unique among Spaces (and among the old labels that
still redirect after a rename), so no Space can take another's host by picking a name that
lower-cases or dash-folds to the same string. Pure functions: the caller says which labels
are taken.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

MAX_LABEL = 63  # RFC 1035: one DNS label
HASH_CHARS = 6


def preferred_label(owner: str, name: str) -> str:
    """The Hub's spelling: 'Alice/My_Space.v2' -> 'alice-my-space-v2'."""
    label = re.sub(r"[^a-z0-9-]", "-", f"{owner}-{name}".lower())
    return label.strip("-") or "space"


def usable(label: str) -> bool:
    """Fits one DNS label, and is not read as an IDNA ('xn--') or other reserved
    '??--' label, which browsers would decode into a different name."""
    return 0 < len(label) <= MAX_LABEL and label[2:4] != "--"


def hashed_label(owner: str, name: str, salt: int = 0) -> str:
    """The preferred label cut short, with a short hash of the exact name (and a salt, for
    the astronomically unlikely case that the hash collides too)."""
    digest = hashlib.sha256(f"{owner}/{name}#{salt}".encode()).hexdigest()[:HASH_CHARS]
    stem = re.sub(r"-{2,}", "-", preferred_label(owner, name))
    stem = stem[: MAX_LABEL - HASH_CHARS - 1].rstrip("-")
    return f"{stem}-{digest}"


def choose_label(owner: str, name: str, is_taken: Callable[[str], bool]) -> str:
    label = preferred_label(owner, name)
    if usable(label) and not is_taken(label):
        return label
    salt = 0
    while is_taken(label := hashed_label(owner, name, salt)):
        salt += 1
    return label
