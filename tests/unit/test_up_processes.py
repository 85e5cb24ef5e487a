"""The processes around the platform: `spaceport up` reaches the Docker Engine only through
sandbox/docker_engine.py (no module of orchestrator/ imports the docker SDK), and Celery's
per-tick housekeeping lines stay out of its output."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from orchestrator.processes import celery_logs
from sandbox import docker_engine

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SDKS = ("docker", "kubernetes")


def _engine_imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return sorted(name for name in names if name.split(".")[0] in ENGINE_SDKS)


def test_no_module_of_the_orchestrator_imports_an_engine_sdk() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "orchestrator").rglob("*.py"))
        if (found := _engine_imports(path))
    }
    assert offenders == {}, "Docker and Kubernetes calls belong in sandbox/ (or builder/)"


def test_an_engine_that_does_not_answer_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(timeout: float = 60) -> None:
        raise ConnectionError("no socket")

    monkeypatch.setattr(docker_engine, "engine_client", refuse)
    assert docker_engine.engine_answers() is False


def test_without_an_engine_or_root_up_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []
    monkeypatch.setattr(docker_engine, "engine_answers", lambda timeout=5: False)
    monkeypatch.setattr(docker_engine.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(docker_engine.shutil, "which", lambda name: None)
    with pytest.raises(docker_engine.EngineUnavailable, match="apt-get install docker.io"):
        docker_engine.ensure_engine(steps.append)
    monkeypatch.setattr(docker_engine.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(docker_engine.EngineUnavailable, match="not answering"):
        docker_engine.ensure_engine(steps.append)
    assert steps == []  # nothing was attempted


def test_an_engine_that_answers_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_engine, "engine_answers", lambda timeout=5: True)
    steps: list[str] = []
    docker_engine.ensure_engine(steps.append)
    assert steps == []


def _record(level: int, name: str) -> logging.LogRecord:
    # As celery logs them: one mapping as the arguments (celery/app/trace.py `info`).
    record = logging.LogRecord(
        "celery.app.trace", level, __file__, 1, "Task %(name)s[%(id)s] succeeded", None, None
    )
    record.args = {"name": name, "id": "1"}
    return record


def test_housekeeping_lines_are_dropped_and_builds_and_errors_kept() -> None:
    schedule = {"reap": {"task": "spaceport.reap_stale_builds", "schedule": 10.0}}
    quiet = celery_logs.HousekeepingFilter(celery_logs.periodic_task_names(schedule))
    assert not quiet.filter(_record(logging.INFO, "spaceport.reap_stale_builds"))
    assert quiet.filter(_record(logging.INFO, "spaceport.build"))
    assert quiet.filter(_record(logging.ERROR, "spaceport.reap_stale_builds"))
    plain = logging.LogRecord("celery", logging.INFO, __file__, 1, "ready", None, None)
    assert quiet.filter(plain)


def test_the_filter_covers_every_periodic_task() -> None:
    from orchestrator.builds.tasks import celery_app

    names = celery_logs.periodic_task_names(celery_app.conf.beat_schedule)
    assert names and all(name in celery_app.tasks for name in names)
