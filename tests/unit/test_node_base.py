"""Offline node:* bases (builder/node_base.py): which refs get one, which Node.js and npm
releases they get from the npm registry's metadata, how the context lays them out, and
what a build says about them. No Docker, no network."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from builder import node_base
from builder.base_image import BaseImageUnavailable
from builder.node_base import NodeRef, parse_official_node_ref, pick_release


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("node:20", NodeRef("20", "bookworm")),
        ("node:20-slim", NodeRef("20", "bookworm")),
        ("node:20.11", NodeRef("20.11", "bookworm")),
        ("node:20.11.1-bullseye", NodeRef("20.11.1", "bullseye")),
        ("node:22-slim-trixie", NodeRef("22", "trixie")),
        ("docker.io/library/node:18-bookworm", NodeRef("18", "bookworm")),
        ("node:20-alpine", None),  # apk, musl: not something Debian can stand in for
        ("node:lts", None),
        ("node:latest", None),
        ("node", None),
        ("python:3.11-slim", None),
        ("example.com/node:20", None),
    ],
)
def test_official_debian_node_refs(ref: str, expected: NodeRef | None) -> None:
    assert parse_official_node_ref(ref) == expected


def _meta(version: str, engines: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dist": {
            "tarball": f"https://registry.example/x/-/x-{version}.tgz",
            "integrity": "sha512-AAAA",
        }
    }
    if engines:
        meta["engines"] = {"node": engines}
    return meta


NODE = {v: _meta(v) for v in ("20.1.0", "20.19.5", "20.9.0", "20.20.0-rc.1", "22.3.0")}
NPM = {
    "9.9.4": _meta("9.9.4", "^14.17.0 || ^16.13.0 || >=18.0.0"),
    "10.9.3": _meta("10.9.3", "^18.17.0 || >=20.5.0"),
    "11.6.2": _meta("11.6.2", "^20.17.0 || >=22.9.0"),
    "12.0.0": _meta("12.0.0", ">=24"),
    "12.1.0-pre": _meta("12.1.0-pre", ">=18"),
    "8.0.0": _meta("8.0.0"),  # no engines: never picked
}


def test_the_newest_matching_node_and_the_newest_npm_that_accepts_it() -> None:
    release = pick_release(NODE, NPM, "20")
    assert (release.node.version, release.npm.version) == ("20.19.5", "11.6.2")
    assert release.node.tarball.endswith("x-20.19.5.tgz")
    release = pick_release(NODE, NPM, "20.1")
    assert (release.node.version, release.npm.version) == ("20.1.0", "9.9.4")
    assert pick_release(NODE, NPM, "20.9.0").node.version == "20.9.0"
    assert pick_release(NODE, NPM, "22").npm.version == "10.9.3"  # npm 11 wants >=22.9


def test_a_version_the_registry_lacks_fails_saying_so() -> None:
    with pytest.raises(BaseImageUnavailable, match="no Node.js 21 release"):
        pick_release(NODE, NPM, "21")
    with pytest.raises(BaseImageUnavailable, match="no npm release"):
        pick_release(NODE, {"12.0.0": NPM["12.0.0"]}, "20")


def _tgz(entries: list[tuple[str, bytes | None, int, str | None]]) -> io.BytesIO:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for name, content, mode, link in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(content or b"")
                tar.addfile(info, io.BytesIO(content or b""))
    data.seek(0)
    return data


def test_the_context_lays_node_and_npm_out_as_the_official_image() -> None:
    node = _tgz(
        [
            ("package/bin/node", b"ELF", 0o755, None),
            ("package/include/node/v8.h", b"h", 0o644, None),
            ("package/share/man/man1/node.1", b"m", 0o600, None),
            ("package/README.md", b"r", 0o644, None),
            ("package/package.json", b"{}", 0o644, None),
        ]
    )
    npm = _tgz(
        [
            ("package/bin/npm-cli.js", b"#!/usr/bin/env node", 0o644, None),
            ("package/bin/npx-cli.js", b"#!/usr/bin/env node", 0o644, None),
            ("package/lib/cli.js", b"x", 0o644, None),
            ("package/lib/evil", None, 0o777, "/etc/shadow"),
        ]
    )
    out = io.BytesIO()
    node_base._write_context(out, "FROM x\n", node, npm)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar}
    assert set(members) == {
        "Dockerfile",
        "rootfs/usr/local/bin/node",
        "rootfs/usr/local/include/node/v8.h",
        "rootfs/usr/local/share/man/man1/node.1",
        "rootfs/usr/local/lib/node_modules/npm/bin/npm-cli.js",
        "rootfs/usr/local/lib/node_modules/npm/bin/npx-cli.js",
        "rootfs/usr/local/lib/node_modules/npm/lib/cli.js",
        "rootfs/usr/local/bin/npm",
        "rootfs/usr/local/bin/npx",
    }
    assert members["rootfs/usr/local/bin/node"].mode == 0o755
    assert members["rootfs/usr/local/share/man/man1/node.1"].mode == 0o644  # world-readable
    assert members["rootfs/usr/local/lib/node_modules/npm/bin/npm-cli.js"].mode == 0o755
    assert members["rootfs/usr/local/bin/npm"].linkname == "../lib/node_modules/npm/bin/npm-cli.js"
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())


def test_a_stand_in_says_what_it_is_and_a_real_image_says_nothing() -> None:
    labels = {
        "org.spaceport.base": "offline",
        "org.spaceport.suite": "bookworm",
        "org.spaceport.node": "20.19.5",
        "org.spaceport.npm": "11.6.2",
    }
    assert node_base.substitution_note("node:20", labels) == (
        "node:20 is Spaceport's equivalent: Node.js 20.19.5 with npm 11.6.2 on Debian bookworm"
    )
    assert node_base.substitution_note("node:20", {}) is None


def test_the_stand_in_is_an_ordinary_image_with_the_official_user() -> None:
    release = pick_release(NODE, NPM, "20")
    text = node_base._dockerfile("spaceport/base:python3.11-bookworm", release, "bookworm")
    assert text.startswith("FROM spaceport/base:python3.11-bookworm\n")
    assert "useradd --uid 1000 --gid node" in text
    assert "org.spaceport.node=20.19.5" in text and "ENV NODE_VERSION=20.19.5" in text
