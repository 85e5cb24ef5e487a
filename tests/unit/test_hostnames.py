"""Host labels: unique, DNS-safe, and kept apart where names fold to the same string."""

from __future__ import annotations

import re

from orchestrator.core.hostnames import MAX_LABEL, choose_label, hashed_label, preferred_label

DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def test_the_hub_spelling_when_free() -> None:
    assert choose_label("Alice", "My_Space.v2", lambda _label: False) == "alice-my-space-v2"


def test_names_that_fold_together_get_different_labels() -> None:
    taken: set[str] = set()
    first = choose_label("alice", "x-y", taken.__contains__)
    taken.add(first)
    second = choose_label("alice-x", "y", taken.__contains__)
    assert first == "alice-x-y"
    assert second != first and second.startswith("alice-x-y-") and DNS_LABEL.match(second)


def test_long_names_fit_one_dns_label() -> None:
    owner, name = "o" * 48, "n" * 48  # 96 characters together
    label = choose_label(owner, name, lambda _label: False)
    assert len(label) <= MAX_LABEL and DNS_LABEL.match(label)
    # ... and two long names with the same first 56 characters still differ.
    other = choose_label(owner, name[:-1] + "x", lambda _label: False)
    assert other != label and len(other) <= MAX_LABEL


def test_a_hash_collision_is_salted_away() -> None:
    taken = {preferred_label("a", "b"), hashed_label("a", "b")}
    label = choose_label("a", "b", taken.__contains__)
    assert label == hashed_label("a", "b", salt=1)


def test_no_idna_lookalike_labels() -> None:
    # 'xn--' would be decoded by browsers as punycode; no '??--' label is handed out.
    label = choose_label("xn_-c", "app", lambda _label: False)
    assert label[2:4] != "--" and DNS_LABEL.match(label)
