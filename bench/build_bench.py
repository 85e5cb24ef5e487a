"""Build time of sample_spaces/hello through Spaceport beside a hand-written `docker build`.

Run from the repository root (takes a few minutes; needs a Docker Engine and PyPI access
from builds):

    .venv/bin/python -m bench.build_bench [--cold-runs 1] [--code-runs 3]

Both sides run in this one process, interleaved, against the same Docker Engine and the
same local `python:3.11-slim`. What is timed, and how to read the ratios: bench/README.md.
Speed is measured here and never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    DOCKER,
    FAILED_STATUSES,
    NAME,
    OWNER,
    POLL_SECONDS,
    SAMPLE,
    BenchError,
    SpaceportPlatform,
    docker,
    docker_preflight,
    environment,
    fmt_list,
    fmt_seconds,
    hand_dockerfile,
    image_id,
    parse_hub_time,
    sample_gradio_version,
    say,
    tail,
)
from tests.platform import SAMPLES, commit_change

BUILD_TIMEOUT_SECONDS = 1500.0


def append_comment(path: Path, label: str) -> str:
    return path.read_text() + f"# bench: {label} {time.time_ns()}\n"


@dataclass
class Run:
    seconds: float  # what the table compares
    push_wall: float | None = None  # git push start -> git push exit (code-only pushes)
    worker: float | None = None  # the build's startedAt -> finishedAt, as Spaceport recorded it
    queued: float | None = None  # createdAt -> startedAt


@dataclass
class Results:
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def add(self, side: str, kind: str, run: Run) -> None:
        self.runs.setdefault((side, kind), []).append(run)

    def values(self, side: str, kind: str, pick: Callable[[Run], float | None]) -> list[float]:
        return [v for r in self.runs.get((side, kind), []) if (v := pick(r)) is not None]

    def median(self, side: str, kind: str) -> float | None:
        values = self.values(side, kind, lambda r: r.seconds)
        return statistics.median(values) if values else None


# --- Spaceport -----------------------------------------------------------------------------


class SpaceportSide(SpaceportPlatform):
    def __init__(self, workdir: Path, prefix: str) -> None:
        super().__init__(workdir, prefix)
        self.push_count = 0

    # what is measured

    def wait_succeeded(self, build_id: int, deadline: float) -> tuple[float, dict]:
        """Poll until the build succeeds; return (perf_counter when seen, build)."""
        while time.monotonic() < deadline:
            build = self.build(build_id)
            if build["status"] == "succeeded":
                return time.perf_counter(), build
            if build["status"] in FAILED_STATUSES:
                raise self.failure("the Spaceport build did not succeed", build)
            time.sleep(POLL_SECONDS)
        raise self.failure(f"build {build_id} not finished after {BUILD_TIMEOUT_SECONDS} s")

    def wait_new_build(self, after_id: int, deadline: float, push: subprocess.Popen) -> int:
        exited_at: float | None = None
        while time.monotonic() < deadline:
            newer = [b["id"] for b in self.builds() if b["id"] > after_id]
            if newer:
                return min(newer)
            if push.poll() is not None:
                if push.returncode != 0:
                    raise self.failure(f"git push failed ({push.returncode}):\n{self.push_log()}")
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > 5:
                    break
            time.sleep(POLL_SECONDS)
        raise self.failure("the push queued no build; its output:\n" + self.push_log())

    def finish(self, build: dict, seconds: float, push_wall: float | None = None) -> Run:
        self.settle(build["commit"])
        ident = image_id(build["image"]) if build.get("image") else None
        if ident:
            self.image_ids.add(ident)
        created, started, finished = (
            parse_hub_time(build.get(k)) for k in ("createdAt", "startedAt", "finishedAt")
        )
        worker = (finished - started).total_seconds() if started and finished else None
        queued = (started - created).total_seconds() if created and started else None
        return Run(seconds, push_wall=push_wall, worker=worker, queued=queued)

    def push_log_path(self) -> Path:
        return self.workdir / f"push-{self.push_count}.log"

    def push_log(self) -> str:
        return tail(self.push_log_path())

    def push(self) -> Run:
        """`git push` of the checkout's HEAD; timed from starting the push to the build's
        `succeeded`, polled while the push (whose hook follows the build log) still runs."""
        self.push_count += 1
        before = self.newest_build_id()
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        url = self.platform.git_url(OWNER, NAME, self.token)
        exited: list[float] = []
        deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
        with open(self.push_log_path(), "wb") as log:
            start = time.perf_counter()
            process = subprocess.Popen(
                ["git", "push", "--force", url, "main"],
                cwd=self.repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            waiter = threading.Thread(
                target=lambda: (process.wait(), exited.append(time.perf_counter())), daemon=True
            )
            waiter.start()
            try:
                build_id = self.wait_new_build(before, deadline, process)
                seen, build = self.wait_succeeded(build_id, deadline)
                waiter.join(max(1.0, deadline - time.monotonic()))
            finally:
                if process.poll() is None:
                    process.terminate()
                    process.wait(10)
        if process.returncode != 0:
            raise self.failure(f"git push failed ({process.returncode}):\n{self.push_log()}")
        push_wall = exited[0] - start if exited else None
        return self.finish(build, seen - start, push_wall)

    def warm_up(self) -> None:
        self.push()

    def cold(self) -> Run:
        deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
        start = time.perf_counter()
        output = self.cli("rebuild", f"{OWNER}/{NAME}", "--no-cache")
        build_id = int(output.split()[-1])
        seen, build = self.wait_succeeded(build_id, deadline)
        return self.finish(build, seen - start)

    def code_only(self, label: str) -> Run:
        commit_change(self.repo, "app.py", append_comment(self.repo / "app.py", label), label)
        return self.push()


# --- hand-written --------------------------------------------------------------------------


class HandSide:
    def __init__(self, workdir: Path, gradio_version: str, rand: str) -> None:
        self.logs = workdir
        self.context = workdir / "hand-written"
        self.context.mkdir()
        shutil.copyfile(SAMPLES / SAMPLE / "app.py", self.context / "app.py")
        (self.context / "Dockerfile").write_text(hand_dockerfile(gradio_version))
        self.rand = rand
        self.tags: list[str] = []

    def build(self, label: str, no_cache: bool) -> Run:
        tag = f"bench-hand:{self.rand}-{label}"
        log_path = self.logs / f"hand-{label}.log"
        command = [DOCKER, "build", *(["--no-cache"] if no_cache else []), "-t", tag, "."]
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        with open(log_path, "wb") as log:
            start = time.perf_counter()
            result = subprocess.run(
                command,
                cwd=self.context,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
            seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed ({result.returncode}):\n{tail(log_path)}")
        self.tags.append(tag)
        return Run(seconds)

    def cold(self, label: str) -> Run:
        return self.build(label, no_cache=True)

    def code_only(self, label: str) -> Run:
        app = self.context / "app.py"
        app.write_text(append_comment(app, label))
        return self.build(label, no_cache=False)

    def cleanup_images(self) -> list[str]:
        removed = []
        for tag in self.tags:
            if docker("rmi", tag, check=False).returncode == 0:
                removed.append(tag)
        return removed


# --- report --------------------------------------------------------------------------------


def table(results: Results, cold_runs: int, code_runs: int) -> list[str]:
    rows = [
        f"{'build of sample_spaces/' + SAMPLE:<40}{'spaceport':>10}{'hand-written':>15}{'ratio':>8}"
    ]
    for kind, label, n in (
        ("cold", "cold (no layer cache)", cold_runs),
        ("code", "code-only change", code_runs),
    ):
        if n == 0:
            continue
        ours, theirs = results.median("spaceport", kind), results.median("hand", kind)
        ratio = f"{ours / theirs:.2f}" if ours is not None and theirs else "-"
        rows.append(
            f"{f'{label}, median of {n}':<40}{fmt_seconds(ours):>10}"
            f"{fmt_seconds(theirs):>15}{ratio:>8}"
        )
    return rows


def details(results: Results) -> list[str]:
    lines = ["every run, in seconds:"]
    for kind, what in (("cold", "cold"), ("code", "code-only")):
        if not results.runs.get(("spaceport", kind)) and not results.runs.get(("hand", kind)):
            continue
        timed = "rebuild command -> succeeded" if kind == "cold" else "git push -> succeeded"
        lines.append(
            f"  spaceport {what:<10} {timed + ':':<31}"
            f"{fmt_list(results.values('spaceport', kind, lambda r: r.seconds))}"
        )
        if kind == "code":
            lines.append(
                f"  spaceport {what:<10} {'git push wall time:':<31}"
                f"{fmt_list(results.values('spaceport', kind, lambda r: r.push_wall))}"
            )
        lines.append(
            f"  spaceport {what:<10} {'worker (started -> finished):':<31}"
            f"{fmt_list(results.values('spaceport', kind, lambda r: r.worker))}"
        )
        lines.append(
            f"  spaceport {what:<10} {'queued (created -> started):':<31}"
            f"{fmt_list(results.values('spaceport', kind, lambda r: r.queued))}"
        )
        lines.append(
            f"  hand      {what:<10} {'docker build wall time:':<31}"
            f"{fmt_list(results.values('hand', kind, lambda r: r.seconds))}"
        )
    return lines


# --- main ----------------------------------------------------------------------------------


def run(cold_runs: int, code_runs: int, keep_workdir: bool) -> int:
    if (why := docker_preflight()) is not None:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    rand = secrets.token_hex(4)
    prefix = f"spaceport-bench-{rand}"
    workdir = Path(tempfile.mkdtemp(prefix="spaceport-bench-"))
    results = Results()
    env_lines = environment()
    spaceport = SpaceportSide(workdir, prefix)
    hand = HandSide(workdir, sample_gradio_version(), rand)
    failed = False
    try:
        say(f"starting Spaceport in {workdir} (image prefix {prefix})")
        spaceport.start()
        say("warm-up push of the hello sample (not timed)")
        spaceport.warm_up()
        # Alternate which side goes first, so neither always runs right after the other.
        for i in range(cold_runs):
            order = ["spaceport", "hand"] if i % 2 == 0 else ["hand", "spaceport"]
            for side in order:
                say(f"cold {i + 1}/{cold_runs}: {side}")
                run_ = spaceport.cold() if side == "spaceport" else hand.cold(f"cold{i + 1}")
                results.add(side, "cold", run_)
                say(f"  {run_.seconds:.2f} s")
        if cold_runs == 0 and code_runs:
            say("hand-written warm-up build (not timed)")
            hand.build("warmup", no_cache=False)
        for i in range(code_runs):
            order = ["spaceport", "hand"] if i % 2 == 0 else ["hand", "spaceport"]
            for side in order:
                say(f"code-only {i + 1}/{code_runs}: {side}")
                label = f"code{i + 1}"
                side_obj = spaceport if side == "spaceport" else hand
                run_ = side_obj.code_only(label)
                results.add(side, "code", run_)
                say(f"  {run_.seconds:.2f} s")
    except BenchError as exc:
        failed = True
        print(f"bench: {exc}", file=sys.stderr)
    except Exception:
        failed = True
        traceback.print_exc()
        print("worker log tail:\n" + spaceport.platform.log_tail("worker"), file=sys.stderr)
    finally:
        try:
            spaceport.stop()  # also removes the containers it started
        except Exception:
            traceback.print_exc()
        removed = spaceport.cleanup_images() + hand.cleanup_images()
        say(f"removed {len(removed)} images: {' '.join(removed)}")
        if keep_workdir or failed:
            say(f"kept {workdir} (Spaceport home, checkout, build and push logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("\n".join(env_lines))
    print()
    print("\n".join(table(results, cold_runs, code_runs)))
    print()
    print("\n".join(details(results)))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.build_bench",
        description="Cold and code-only build time of sample_spaces/hello through Spaceport, "
        "beside a hand-written `docker build` of the same app (ratios: Spaceport / hand).",
    )
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=1,
        metavar="N",
        help="cold (--no-cache) builds per side (default 1)",
    )
    parser.add_argument(
        "--code-runs",
        type=int,
        default=3,
        metavar="N",
        help="code-only rebuilds per side (default 3)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary Spaceport home, checkout and build logs",
    )
    args = parser.parse_args(argv)
    if args.cold_runs < 0 or args.code_runs < 0:
        parser.error("run counts must be >= 0")
    return run(args.cold_runs, args.code_runs, args.keep_workdir)


if __name__ == "__main__":
    sys.exit(main())
