"""The layers a build crosses keep to themselves: builder/ and sandbox/ import nothing of the
control plane (they take what they need as arguments), and the control plane's build
modules make no Docker call of their own (the builder's engine client does)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, wherever the import statement is (inside functions
    too: a late import is still a dependency)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["builder", "sandbox"])
def test_builder_and_sandbox_import_nothing_of_the_orchestrator(folder: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "orchestrator"
        )
        for path in modules_under(folder)
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_the_build_pipeline_makes_no_docker_call_of_its_own() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "docker"
        )
        for path in [*modules_under("orchestrator/builds"), ROOT / "orchestrator/push/git_hook.py"]
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_the_checks_see_a_late_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from orchestrator.core.installation import installation_id\n")
    assert "orchestrator.core.installation" in imported_modules(probe)
