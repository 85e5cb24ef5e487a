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
import platform as pyplatform
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
from datetime import datetime
from pathlib import Path

from orchestrator.space_config import parse_readme
from tests.platform import SAMPLES, Platform, commit_change, sample_checkout
from tests.services import docker_available, free_port

DOCKER = "/usr/bin/docker"
SAMPLE = "hello"
OWNER, NAME = "bench", "hello"
BASE_IMAGE = "python:3.11-slim"
POLL_SECONDS = 0.1
SETTLE_TIMEOUT_SECONDS = 180.0
# Stages on the way from a build to a started app; anything else is where a Space rests.
MOVING_STAGES = {"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"}
BUILD_TIMEOUT_SECONDS = 1500.0
FAILED_STATUSES = {"failed", "cancelled"}


class BenchError(Exception):
    pass


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sample_gradio_version() -> str:
    config = parse_readme((SAMPLES / SAMPLE / "README.md").read_text())
    if not config.sdk_version:
        raise BenchError(f"sample_spaces/{SAMPLE}/README.md sets no sdk_version")
    return config.sdk_version


def hand_dockerfile(gradio_version: str) -> str:
    # The base image has no Env of its own worth extending (see measurements.md §2), so PATH
    # is spelled out in full with the venv first.
    return (
        f"FROM {BASE_IMAGE}\n"
        "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "RUN python3 -m venv /opt/venv\n"
        f"RUN pip install --no-cache-dir gradio=={gradio_version}\n"
        "RUN useradd -m -u 1000 user\n"
        "WORKDIR /home/user/app\n"
        "COPY --chown=1000:1000 app.py .\n"
        "USER 1000\n"
        'CMD ["python", "app.py"]\n'
    )


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


def image_id(ref: str) -> str | None:
    result = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def untagged(ident: str) -> bool:
    """True when image `ident` exists and no repository tag refers to it."""
    result = docker("image", "inspect", "--format", "{{len .RepoTags}}", ident, check=False)
    return result.returncode == 0 and result.stdout.strip() == "0"


def append_comment(path: Path, label: str) -> str:
    return path.read_text() + f"# bench: {label} {time.time_ns()}\n"


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def parse_hub_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


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


class SpaceportSide:
    def __init__(self, workdir: Path, prefix: str) -> None:
        self.workdir = workdir
        self.prefix = prefix
        home = workdir / "spaceport-home"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
        env.update(
            SPACEPORT_HOME=str(home),
            SPACEPORT_PUBLIC_URL=f"http://127.0.0.1:{port}",
            SPACEPORT_SPACES_DOMAIN=f"localhost:{port}",
            SPACEPORT_IMAGE_PREFIX=prefix,
            # Labels the containers it runs, so that stopping it removes only those.
            SPACEPORT_INSTANCE=prefix,
        )
        self.platform = Platform(home=home, env=env, port=port)
        self.token = ""
        self.repo = Path()
        self.image_ids: set[str] = set()  # every image built, to remove it at the end
        self.push_count = 0

    # setup / teardown

    def start(self) -> None:
        self.platform.start()
        self.token = self.cli("token", "create", OWNER, "--name", "bench").strip()
        self.repo = sample_checkout(SAMPLE, self.workdir)

    def stop(self) -> None:
        self.platform.stop()

    def cli(self, *args: str) -> str:
        try:
            return self.platform.cli(*args)
        except subprocess.CalledProcessError as exc:
            raise BenchError(
                f"spaceport {' '.join(args)} failed ({exc.returncode}):\n{exc.stderr}"
            ) from exc

    def cleanup_images(self) -> list[str]:
        listed = docker(
            "images",
            "--filter",
            f"reference={self.prefix}/*",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            check=False,
        ).stdout.split()
        removed = []
        for ref in listed:
            if docker("rmi", ref, check=False).returncode == 0:
                removed.append(ref)
        # Images whose tag a later build with the same content took over (--no-cache rebuilds)
        # are left untagged. Only those are removed by id: a fully cached build can yield the
        # very image another Spaceport (another prefix) has tagged, and `docker rmi <id>` of an
        # image with one tag left would delete that other image.
        for ident in sorted(self.image_ids):
            if untagged(ident) and docker("rmi", ident, check=False).returncode == 0:
                removed.append(ident[:19])
        return removed

    # the API

    def builds(self) -> list[dict]:
        response = self.platform.api(f"/api/spaces/{OWNER}/{NAME}/builds", self.token)
        if response.status_code == 404:  # before the first push creates the Space
            return []
        response.raise_for_status()
        return response.json()

    def build(self, build_id: int) -> dict:
        response = self.platform.api(f"/api/spaces/{OWNER}/{NAME}/builds/{build_id}", self.token)
        response.raise_for_status()
        return response.json()

    def newest_build_id(self) -> int:
        return max((b["id"] for b in self.builds()), default=0)

    def failure(self, what: str, build: dict | None = None) -> BenchError:
        parts = [what]
        if build is not None:
            parts.append(
                f"build {build.get('id')}: {build.get('status')}: {build.get('errorMessage')}"
            )
            parts.append("build log tail:\n" + "\n".join(build.get("log", [])[-30:]))
        parts.append("worker log tail:\n" + self.platform.log_tail("worker"))
        return BenchError("\n".join(parts))

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

    def settle(self, commit: str) -> None:
        """Untimed: wait until the Space rests again (the new build's app started, or an
        error), so that the app's start-up does not load the machine during the next timed
        build of either side."""
        start = time.monotonic()
        runtime: dict = {}
        while time.monotonic() - start < SETTLE_TIMEOUT_SECONDS:
            runtime = self.platform.runtime(OWNER, NAME, self.token)
            stage, sha = runtime.get("stage"), runtime.get("sha") or ""
            if stage not in MOVING_STAGES and (stage != "RUNNING" or sha == commit):
                took = time.monotonic() - start
                say(f"  (settled: {stage} after {took:.1f} s, not timed)")
                if runtime.get("errorMessage"):
                    say(f"  (its error message: {runtime['errorMessage'][-600:]})")
                return
            time.sleep(0.25)
        say(f"  (still {runtime.get('stage')} after {SETTLE_TIMEOUT_SECONDS:.0f} s; going on)")

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

    # what is measured

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


def environment() -> list[str]:
    def first_line(*command: str) -> str:
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            return f"unavailable ({exc})"
        lines = (result.stdout or result.stderr).strip().splitlines()
        return lines[0] if lines else "?"

    os_name = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    docker_versions = first_line(
        DOCKER, "version", "--format", "client {{.Client.Version}}, server {{.Server.Version}}"
    )
    storage = first_line(DOCKER, "info", "--format", "{{.Driver}}, cgroup v{{.CgroupVersion}}")
    base = image_id(BASE_IMAGE) or "missing"
    return [
        f"date:      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"os:        {os_name}; kernel {pyplatform.release()}; {os.cpu_count()} CPUs",
        f"docker:    {docker_versions}; storage {storage}; legacy builder on both sides",
        f"base:      {BASE_IMAGE} = {base[:19]}",
        f"git:       {first_line('git', '--version')}",
        f"python:    {pyplatform.python_version()} ({sys.executable})",
    ]


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def fmt_list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values) or "-"


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
    if not Path(DOCKER).exists() or not docker_available():
        print(f"bench: no Docker Engine answers ({DOCKER})", file=sys.stderr)
        return 2
    if image_id(BASE_IMAGE) is None:
        print(f"bench: {BASE_IMAGE} is not in the local image store", file=sys.stderr)
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
