"""The build pipeline against a real database on both stacks, with a fake builder (no
Docker): deploy writes the spec and a queued build carrying its config; the worker reads
the commit once; each move of a build is conditional, so a cancelled build never runs, a
redelivered task never runs a build twice, a cancel stops a running build, and a build
superseded while it finished records nothing. The pipeline never writes the stage."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from builder.build import BuildInput, BuildOutput, BuildStopped
from orchestrator.builds import deploy, runner, state, tasks
from orchestrator.core import auth, db, events
from orchestrator.core.models import Build, BuildLogLine, BuildStatus, Event, Space, Stage
from orchestrator.core.stages import Problem, shown_error, shown_stage
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from orchestrator.spaces.config import SpaceConfig

README = "---\ntitle: Demo\nsdk: gradio\npython_version: '3.11'\napp_file: main.py\n---\nhi\n"
WAIT = 10.0  # the longest a condition below may take to come true


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The build ids whose task was sent, instead of sending them."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.build_task, "delay", lambda build_id: ids.append(build_id))
    return ids


@pytest.fixture
def space(database: str, sent: list[int]) -> Iterator[Space]:
    with db.session_scope() as session:
        user = auth.get_or_create_user(session, "alice")
        made = spaces.create_space(session, user, "demo")
        session.commit()
        session.refresh(made)
        yield made


def commit(space: Space, files: dict[str, str], tmp: Path) -> str:
    """A commit on the Space's main branch, made next to its bare repo (no hook runs)."""
    work = tmp / f"work-{len(list(tmp.glob('work-*')))}"
    work.mkdir()
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@x", "HOME": str(tmp)}
    env |= {"GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@x", "PATH": "/usr/bin:/bin"}

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", work.name)  # each commit its own, even with the same files
    bare = repos.repo_path(space.owner, space.name)
    git("fetch", "-q", "--force", str(work), "main:main", cwd=bare)
    return git("rev-parse", "HEAD")


def reload(session: Session, model: type, ident: int) -> Any:
    session.expire_all()
    return session.get(model, ident)


def kinds(session: Session) -> list[str]:
    return [e.kind for e in session.exec(select(Event).order_by(col(Event.id)))]


def queue(space: Space, tmp: Path, files: dict[str, str] | None = None) -> Build:
    sha = commit(space, files or {"README.md": README, "main.py": "print(1)\n"}, tmp)
    with db.session_scope() as session:
        row = session.get(Space, space.id)
        build = deploy.deploy_commit(session, row, sha, actor="alice")
        assert build is not None
        return build


class FakeBuilder:
    """Stands in for builder.build.build_image: records what it was given, and lets a
    test hold it mid-build (`entered`, `release`)."""

    def __init__(self, body: Callable[[BuildInput, Callable[[], str | None]], None] | None = None):
        self.items: list[BuildInput] = []
        self.entered = threading.Event()
        self.body = body

    def __call__(self, client: Any, item: BuildInput, options: Any, log: Any, stop: Any):
        self.items.append(item)
        log("Step 1/1 : RUN true")
        self.entered.set()
        if self.body:
            self.body(item, stop)
        return BuildOutput(image=f"spaceport/space:{item.tree[:12]}", reused=False)


@pytest.fixture
def builder(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBuilder]:
    fake = FakeBuilder()
    monkeypatch.setattr(runner, "build_image", fake)
    monkeypatch.setattr(runner, "engine_client", lambda: None)
    yield fake


def test_deploy_writes_the_spec_and_a_build_that_carries_its_config(
    space: Space, tmp_path: Path, sent: list[int]
) -> None:
    build = queue(space, tmp_path)
    with db.session_scope() as session:
        row = reload(session, Space, space.id)
        assert row.head_sha == build.commit_sha and row.head_problem is None
        assert (row.sdk, row.app_port) == ("gradio", 7860)
        assert row.stage == Stage.NO_APP_FILE  # the stage is the controller's to write
        assert row.spec_version > space.spec_version
        # ...but the API shows the pipeline's verdict before the controller's pass: a
        # runtime read right after the push says BUILDING, not the stage from before.
        assert shown_stage(row) == Stage.BUILDING
        config = SpaceConfig.from_json(build.config or "")
        assert (config.app_file, config.python_version) == ("main.py", "3.11")
        assert "app_file" in config.model_fields_set
        queued = session.exec(select(Event).where(Event.kind == "build.queued")).one()
        assert queued.actor == "alice"
        assert json.loads(queued.data)["build_id"] == build.id
    assert sent == [build.id]


@pytest.mark.parametrize(
    ("files", "stage", "says"),
    [
        ({"app.py": "x"}, Stage.CONFIG_ERROR, "README.md is missing"),
        ({"README.md": README}, Stage.NO_APP_FILE, "main.py not found"),
    ],
)
def test_a_commit_that_cannot_be_built_records_why_and_queues_nothing(
    space: Space, tmp_path: Path, sent: list[int], files: dict[str, str], stage: Stage, says: str
) -> None:
    sha = commit(space, files, tmp_path)
    with db.session_scope() as session:
        row = session.get(Space, space.id)
        assert deploy.deploy_commit(session, row, sha) is None
        row = reload(session, Space, space.id)
        problem = Problem.load(row.head_problem)
        assert problem is not None and problem.stage == stage and says in problem.message
        assert row.head_sha == sha and row.stage == Stage.NO_APP_FILE  # not written here
        assert (shown_stage(row), shown_error(row)) == (stage, problem.message)
        assert not session.exec(select(Build)).all() and sent == []


def test_a_build_reads_its_commit_once_and_records_its_image_in_the_spec(
    space: Space, tmp_path: Path, builder: FakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = queue(space, tmp_path)
    calls: list[tuple[str, ...]] = []
    real_git = repos.git

    def counting_git(repo: Path, *args: str, **kwargs: Any) -> bytes:
        calls.append(args)
        return real_git(repo, *args, **kwargs)

    monkeypatch.setattr(repos, "git", counting_git)
    runner.run_build(build.id or 0)
    # One git process for the whole build: its archive (no README read, no ls-tree, no
    # rev-parse): the config came with the build, files and digest from the archive.
    assert [args[-2:] for args in calls] == [("--format=tar", build.commit_sha)]
    item = builder.items[0]
    assert item.files == {"README.md", "main.py"} and item.spec.app_file == "main.py"
    with db.session_scope() as session:
        done = reload(session, Build, build.id)
        row = reload(session, Space, space.id)
        assert done.status == BuildStatus.SUCCEEDED
        assert (row.built_sha, row.built_image) == (build.commit_sha, done.image)
        assert row.stage == Stage.NO_APP_FILE  # the controller's to move
        assert kinds(session)[-3:] == ["build.queued", "build.started", "build.ended"]
        lines = [b.line for b in session.exec(select(BuildLogLine))]
        assert any("Build succeeded" in line for line in lines)


def test_the_same_files_in_another_commit_make_the_same_digest(
    space: Space, tmp_path: Path, builder: FakeBuilder
) -> None:
    first = queue(space, tmp_path)
    runner.run_build(first.id or 0)
    second = queue(space, tmp_path)  # the same files, a new commit
    runner.run_build(second.id or 0)
    assert first.commit_sha != second.commit_sha
    assert builder.items[0].tree == builder.items[1].tree
    third = queue(space, tmp_path, {"README.md": README, "main.py": "print(2)\n"})
    runner.run_build(third.id or 0)
    assert builder.items[2].tree != builder.items[0].tree


def test_a_build_cancelled_before_it_is_claimed_never_runs(
    space: Space, tmp_path: Path, builder: FakeBuilder
) -> None:
    build = queue(space, tmp_path)
    with db.session_scope() as session:
        state.cancel_active_builds(session, space.id or 0, "cancelled: superseded", actor="bob")
        session.commit()
    runner.run_build(build.id or 0)  # its task arrives after all
    assert builder.items == []
    with db.session_scope() as session:
        assert reload(session, Build, build.id).status == BuildStatus.CANCELLED
        assert "build.started" not in kinds(session)
        cancelled = session.exec(select(Event).where(Event.kind == "build.cancelled")).one()
        assert cancelled.actor == "bob"


def test_a_redelivered_task_never_runs_the_build_twice(
    space: Space, tmp_path: Path, builder: FakeBuilder
) -> None:
    release = threading.Event()
    builder.body = lambda item, stop: release.wait(WAIT) or None
    build = queue(space, tmp_path)
    first = threading.Thread(target=runner.run_build, args=(build.id,))
    first.start()
    assert builder.entered.wait(WAIT)
    tasks.build_task.run(build.id)  # a second delivery while the first one builds
    release.set()
    first.join(WAIT)
    tasks.build_task.run(build.id)  # and one after it finished
    assert len(builder.items) == 1
    with db.session_scope() as session:
        assert kinds(session).count("build.started") == 1
        assert reload(session, Build, build.id).status == BuildStatus.SUCCEEDED


def stop_when_told(item: BuildInput, stop: Callable[[], str | None]) -> None:
    """What builder.docker_build.stream_build does: ask, and stop when told why."""
    stopped = threading.Event()
    while not stopped.wait(0.05):
        reason = stop()
        if reason:
            raise BuildStopped(reason)


def test_a_cancel_stops_a_running_build_and_records_no_image(
    space: Space, tmp_path: Path, builder: FakeBuilder
) -> None:
    builder.body = stop_when_told
    build = queue(space, tmp_path)
    worker = threading.Thread(target=runner.run_build, args=(build.id,))
    worker.start()
    assert builder.entered.wait(WAIT)
    with db.session_scope() as session:
        state.cancel_active_builds(session, space.id or 0, "cancelled: the owner asked")
        session.commit()
    worker.join(WAIT)
    assert not worker.is_alive()
    with db.session_scope() as session:
        done = reload(session, Build, build.id)
        assert (done.status, done.error_message) == (
            BuildStatus.CANCELLED,
            "cancelled: the owner asked",
        )
        assert reload(session, Space, space.id).built_image is None
        assert "build.ended" not in kinds(session)
        lines = [b.line for b in session.exec(select(BuildLogLine))]
        assert any("Build stopped: cancelled: the owner asked" in line for line in lines)


def test_a_build_superseded_as_it_finishes_records_no_image(
    space: Space, tmp_path: Path, builder: FakeBuilder
) -> None:
    newer: list[Build] = []
    # The newer push lands after the old build's last step, before it is recorded.
    builder.body = lambda item, stop: newer.append(
        queue(space, tmp_path, {"README.md": README, "main.py": "print(3)\n"})
    )
    build = queue(space, tmp_path)
    runner.run_build(build.id or 0)
    with db.session_scope() as session:
        assert reload(session, Build, build.id).status == BuildStatus.CANCELLED
        row = reload(session, Space, space.id)
        assert row.head_sha == newer[0].commit_sha and row.built_image is None
        assert "build.ended" not in kinds(session)


def test_a_success_of_an_old_commit_leaves_the_head_s_spec_alone(
    space: Space, tmp_path: Path, builder: FakeBuilder
) -> None:
    """The conditional spec write: a build that is not cancelled (a head set by another
    path than deploy) but whose commit is no longer the head records no image."""
    build = queue(space, tmp_path)
    with db.session_scope() as session:
        row = session.get(Space, space.id)
        row.head_sha = "f" * 40  # what a writer racing the finish could have done
        session.add(row)
        session.commit()
    runner.run_build(build.id or 0)
    with db.session_scope() as session:
        assert reload(session, Build, build.id).status == BuildStatus.SUCCEEDED
        assert reload(session, Space, space.id).built_image is None


def test_a_dead_worker_s_build_is_failed_once(
    space: Space, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = queue(space, tmp_path)
    with db.session_scope() as session:
        assert state.claim_build(session, build.id or 0)
    monkeypatch.setattr(state, "_worker_gone", lambda build: True)
    assert state.reap_stale_builds(only_dead_local_workers=True) == 1
    assert state.reap_stale_builds(only_dead_local_workers=True) == 0
    with db.session_scope() as session:
        assert reload(session, Build, build.id).status == BuildStatus.FAILED
        ended = session.exec(select(Event).where(Event.kind == "build.ended")).one()
        assert ended.actor == events.ACTOR_SYSTEM
