"""The post-receive hook of every Space repo: `python -m orchestrator.push.git_hook post-receive`.

git runs it after the refs are updated, with the pusher's connection still open, so what it
prints appears on the pusher's terminal as `remote:` lines. It queues the build first and
only then follows its log: if the pusher disconnects or presses Ctrl-C, the build goes on.
"""

from __future__ import annotations

import os
import sys
import time

from builder import logstyle
from orchestrator.builds.deploy import deploy_commit
from orchestrator.builds.logs import follow_log
from orchestrator.community import pull_requests as pr_pushes
from orchestrator.core import events
from orchestrator.core.db import session_scope
from orchestrator.core.models import Build, BuildStatus, Space
from orchestrator.core.settings import get_settings
from orchestrator.core.stages import Problem
from orchestrator.processes import lifeline
from orchestrator.repos import refs
from orchestrator.repos.store import DEPLOY_REF, ZERO_SHA
from orchestrator.spaces import registry as spaces


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def post_receive(lines: list[str]) -> int:
    space_id = int(os.environ["SPACEPORT_PUSH_SPACE_ID"])
    updates = [line.split() for line in lines if len(line.split()) == 3]
    deploy = [new for _old, new, ref in updates if ref == DEPLOY_REF and new != ZERO_SHA]
    with session_scope() as session:
        space = session.get(Space, space_id)
        if space is None:
            say(logstyle.error("This Space was deleted while you pushed."))
            return 1
        say(logstyle.step(f"Space {space.full_name}: {spaces.space_url(space)}"))
        others = [ref for _o, _n, ref in updates if ref != DEPLOY_REF]
        if others:
            say(logstyle.detail(f"stored {', '.join(others)} (only main is deployed)"))
        pusher = os.environ.get("SPACEPORT_PUSHER") or events.ACTOR_SYSTEM
        # Commits pushed to pull requests (refs/pr/N) join their timelines.
        pr_pushes.pushed(session, space, updates, pusher)
        # Branches and tags made or deleted by the push, as the API's ref changes record them.
        for change, ref, commit in refs.pushed_changes(updates):
            events.record(session, events.EventKind(change), pusher, space, ref=ref, commit=commit)
        if not deploy:
            session.commit()
            return 0
        sha = deploy[-1]
        say(logstyle.step(f"Deploying commit {sha[:7]}"))
        build = deploy_commit(session, space, sha, actor=pusher)
        if build is None:
            problem = Problem.load(space.head_problem)
            assert problem is not None
            say(logstyle.error(f"{problem.stage}: {problem.message}"))
            say(logstyle.error("Fix it and push again."))
            return 0
        build_id = build.id
    assert build_id is not None
    say(logstyle.detail(f"build {build_id} queued; follow it at {follow_url(space)}"))
    return follow(build_id, space)


def follow_url(space: Space) -> str:
    base = get_settings().public_url.rstrip("/")
    return f"{base}/api/spaces/{space.owner}/{space.name}/logs/build"


def follow(build_id: int, space: Space) -> int:
    deadline = time.monotonic() + get_settings().push_follow_seconds
    for line in follow_log(build_id, deadline=deadline):
        say(line)
    with session_scope() as session:
        build = session.get(Build, build_id)
        status = BuildStatus(build.status) if build else BuildStatus.CANCELLED
    if not status.finished:
        say(logstyle.step("Still building; the build goes on without you."))
        say(logstyle.detail(f"follow it at {follow_url(space)}"))
        return 0
    if status == BuildStatus.SUCCEEDED:
        say(logstyle.step(f"Done: {space.full_name} is built. App: {spaces.app_url(space)}"))
    elif status == BuildStatus.CANCELLED:
        say(logstyle.step("This build was superseded by a newer push."))
    else:
        say(logstyle.error("The build failed: BUILD_ERROR. The log above says why."))
    return 0


def main() -> int:
    hook = sys.argv[1] if len(sys.argv) > 1 else ""
    if hook != "post-receive":
        print(f"unknown hook {hook!r}", file=sys.stderr)
        return 2
    lifeline.watch_ancestor()  # stops following the build once `spaceport up` is gone
    try:
        return post_receive(sys.stdin.read().splitlines())
    except BrokenPipeError:
        return 0  # the pusher disconnected; the build was already queued


if __name__ == "__main__":
    sys.exit(main())
