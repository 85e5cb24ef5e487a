"""Backends are behind sandbox/: the controller, the API and the gateway speak only the
`sandbox.backend.Backend` interface. Outside sandbox/, only orchestrator/core/backends.py
(which picks the backend from SPACEPORT_BACKEND) may name a backend or its client library;
the builder's image builds (builder/) are the one other user of the Docker Engine."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHOOSER = ROOT / "orchestrator" / "core" / "backends.py"
# Client libraries and backend modules that only sandbox/ (and the chooser) may import.
FORBIDDEN = ("docker", "kubernetes", "sandbox.docker_backend", "sandbox.kubernetes")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_no_backend_call_outside_sandbox() -> None:
    offenders = {}
    for path in sorted((ROOT / "orchestrator").rglob("*.py")):
        if path == CHOOSER:
            continue
        bad = sorted(n for n in imported_modules(path) if forbidden(n))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}, f"backend code outside sandbox/: {offenders}"


def test_the_chooser_names_both_backends() -> None:
    """The check above would pass vacuously if the chooser were bypassed."""
    names = imported_modules(CHOOSER)
    assert "sandbox.docker_backend" in names
    assert "sandbox.kubernetes.backend" in names
