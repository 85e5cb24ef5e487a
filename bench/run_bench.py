"""Serving sample_spaces/hello through Spaceport beside a hand-run Docker container.

Run from the repository root (a few minutes; needs a Docker Engine, PyPI access from
builds, and `wrk` and `nginx`, which it installs with apt-get when they are missing):

    .venv/bin/python -m bench.run_bench [--push-runs 3] [--duration 10] [--rounds 1]

1. Code-only push -> new revision answering: from starting `git push` of a changed greeting
   to the gateway answering a prediction with it, beside `docker build` + `docker run` of
   the same change by hand (ratio Spaceport / hand).
2. Gateway throughput and added latency: wrk against the Space's container directly,
   through Spaceport's gateway and through an nginx started here (ratios gateway / direct,
   nginx / direct, gateway / nginx).

Everything runs in this one process against the same Docker Engine; what is timed and how
to read the ratios: bench/README.md. Speed is measured here and never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

import httpx

from bench.common import (
    DOCKER,
    INSTANCE_LABEL,
    NAME,
    OWNER,
    POLL_SECONDS,
    SAMPLE,
    BenchError,
    SpaceportPlatform,
    docker,
    docker_preflight,
    environment,
    first_line,
    fmt_list,
    fmt_seconds,
    hand_dockerfile,
    image_id,
    parse_hub_time,
    sample_gradio_version,
    say,
    tail,
)
from sandbox.security import SPACES_NETWORK
from tests.platform import SAMPLES, commit_change, git
from tests.services import free_port

APP_PORT = 7860
ORIGINAL_GREETING = 'f"Hello, {name}!"'
WARM_UP_TIMEOUT_SECONDS = 1500.0  # the first build of either side may pip-install Gradio
ANSWER_TIMEOUT_SECONDS = 600.0
DRAIN_TIMEOUT_SECONDS = 60.0
ERROR_STAGES = {"BUILD_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "RUNTIME_ERROR"}
ROUTES = ("/config", "/gradio_api/startup-events")
TARGETS = ("direct", "gateway", "nginx")
WRK_THREADS, WRK_CONNECTIONS = 2, 16
WRK_WARM_UP_SECONDS = 2


# --- the app and its answer ----------------------------------------------------------------


def app_source(n: int) -> str:
    """The sample's app.py, greeting with `Hi #n` instead of `Hello` (n = 0: unchanged)."""
    text = (SAMPLES / SAMPLE / "app.py").read_text()
    if ORIGINAL_GREETING not in text:
        raise BenchError(f"sample_spaces/{SAMPLE}/app.py no longer has {ORIGINAL_GREETING}")
    return text if n == 0 else text.replace(ORIGINAL_GREETING, f'f"Hi #{n}, {{name}}!"')


def expected_greeting(n: int) -> str:
    return "Hello, World!" if n == 0 else f"Hi #{n}, World!"


def sse_result(text: str) -> str | None:
    """The first output of Gradio's `complete` event in a /gradio_api/call/... stream."""
    event = None
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:") and event == "complete":
            data = json.loads(line.removeprefix("data:").strip())
            return data[0] if isinstance(data, list) and data else None
    return None


class Predictor:
    """`predict("World")` through Gradio's REST API: POST /gradio_api/call/predict, then
    GET the event stream of its result. Any failure reads as 'no answer yet'."""

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(5.0, read=15.0))

    def greeting(self, base: str, host: str | None = None) -> str | None:
        headers = {"host": host} if host else {}
        try:
            posted = self.client.post(
                f"{base}/gradio_api/call/predict", json={"data": ["World"]}, headers=headers
            )
            if posted.status_code != 200:
                return None
            event_id = posted.json()["event_id"]
            result = self.client.get(f"{base}/gradio_api/call/predict/{event_id}", headers=headers)
            return sse_result(result.text) if result.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        self.client.close()


@dataclass
class PushRun:
    seconds: float  # what the table compares: start -> the new greeting answers
    push_wall: float | None = None  # Spaceport: git push start -> exit
    built: float | None = None  # start -> build finished (Spaceport: its finishedAt)
    # start -> the new container started (hand: `docker run -d` returned; Spaceport: the
    # container's State.StartedAt)
    started: float | None = None
    switched: float | None = None  # Spaceport: start -> runtime first shows the new sha serving


# --- Spaceport -----------------------------------------------------------------------------


class SpaceportSide(SpaceportPlatform):
    def __init__(self, workdir: Path, prefix: str, predictor: Predictor) -> None:
        super().__init__(workdir, prefix)
        self.predictor = predictor
        self.push_count = 0

    def greeting(self) -> str | None:
        return self.predictor.greeting(self.platform.url, self.space_host)

    def push(self, expected: str, timeout: float) -> PushRun:
        """`git push` of the checkout's HEAD; timed from starting the push until a
        prediction through the gateway answers `expected` (polled every 0.1 s)."""
        self.push_count += 1
        log_path = self.workdir / f"push-{self.push_count}.log"
        commit = git(self.repo, "rev-parse", "HEAD").stdout.strip()
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        url = self.platform.git_url(OWNER, NAME, self.token)
        exited: list[float] = []
        deadline = time.monotonic() + timeout
        with open(log_path, "wb") as log:
            wall_start = time.time()
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
                seen, switched = self.wait_answer(expected, commit, deadline, process, log_path)
                waiter.join(60)
            finally:
                if process.poll() is None:
                    process.terminate()
                    process.wait(10)
        if process.returncode != 0:
            raise self.failure(f"git push failed ({process.returncode}):\n{tail(log_path)}")
        build = next((b for b in self.builds() if b["commit"] == commit), None)
        built = None
        if build is not None:
            if build.get("image") and (ident := image_id(build["image"])):
                self.image_ids.add(ident)
            if finished := parse_hub_time(build.get("finishedAt")):
                built = finished.timestamp() - wall_start
        container_started = self.container_started(commit)
        self.settle_all(commit)
        return PushRun(
            seen - start,
            push_wall=exited[0] - start if exited else None,
            built=built,
            started=container_started - wall_start if container_started else None,
            switched=switched - start if switched else None,
        )

    def container_started(self, commit: str) -> float | None:
        """When Docker started the container of `commit` (epoch seconds), if it still runs."""
        for ident in self.containers():
            found = docker(
                "inspect",
                "--format",
                '{{index .Config.Labels "org.spaceport.sha"}} {{.State.StartedAt}}',
                ident,
                check=False,
            ).stdout.split()
            if len(found) == 2 and found[0] == commit:
                # Docker writes nanoseconds; fromisoformat takes at most microseconds.
                moment = re.sub(r"(\.\d{6})\d*", r"\1", found[1]).replace("Z", "+00:00")
                return datetime.fromisoformat(moment).timestamp()
        return None

    def wait_answer(
        self, expected: str, commit: str, deadline: float, push: subprocess.Popen, log_path: Path
    ) -> tuple[float, float | None]:
        """Poll until the gateway answers `expected`; returns (perf_counter then, perf_counter
        when the Space's runtime first named `commit` as serving, if seen before)."""
        # No polling while the push runs: its hook follows the build to the end, and no new
        # revision can answer before its image exists. Polls through the gateway would load
        # the very process that receives the push and streams the build log.
        while push.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        polls = 0
        switched: float | None = None
        while time.monotonic() < deadline:
            if self.greeting() == expected:
                return time.perf_counter(), switched
            if push.returncode != 0:
                raise self.failure(f"git push failed ({push.returncode}):\n{tail(log_path)}")
            if switched is None:
                if self.platform.runtime(OWNER, NAME, self.token).get("sha") == commit:
                    switched = time.perf_counter()
            polls += 1
            if polls % 20 == 0:  # every few seconds: fail fast when the Space broke
                runtime = self.platform.runtime(OWNER, NAME, self.token)
                if runtime.get("stage") in ERROR_STAGES:
                    raise self.failure(
                        f"the Space is {runtime['stage']}: {runtime.get('errorMessage')}"
                    )
            time.sleep(POLL_SECONDS)
        raise self.failure(f"no answer {expected!r} through the gateway in time")

    def settle_all(self, commit: str) -> None:
        """Untimed: the new revision RUNNING and the replaced container stopped (the
        reconciler drains it for 5 s), so that neither loads the next timed run."""
        self.settle(commit)
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while len(self.containers()) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)

    def warm_up(self) -> None:
        self.push(expected_greeting(0), WARM_UP_TIMEOUT_SECONDS)

    def code_only(self, n: int) -> PushRun:
        commit_change(self.repo, "app.py", app_source(n), f"greeting #{n}")
        return self.push(expected_greeting(n), ANSWER_TIMEOUT_SECONDS)

    def serving_container_ip(self) -> str:
        sha = self.platform.runtime(OWNER, NAME, self.token).get("sha") or ""
        for ident in self.containers():
            labels = docker("inspect", "--format", "{{json .Config.Labels}}", ident).stdout
            if json.loads(labels).get("org.spaceport.sha") != sha:
                continue
            ip = docker(
                "inspect",
                "--format",
                f'{{{{(index .NetworkSettings.Networks "{SPACES_NETWORK}").IPAddress}}}}',
                ident,
            ).stdout.strip()
            if ip:
                return ip
        raise BenchError(f"no running container of {OWNER}/{NAME} at revision {sha[:7]}")


# --- hand-written --------------------------------------------------------------------------


class HandSide:
    """The same change by hand: edit app.py, `docker build`, `docker run -d` the new image
    on a new port, wait for it to answer, then `docker rm -f` the old container."""

    def __init__(self, workdir: Path, gradio_version: str, rand: str, predictor: Predictor):
        self.logs = workdir
        self.context = workdir / "hand-written"
        self.context.mkdir()
        (self.context / "Dockerfile").write_text(hand_dockerfile(gradio_version))
        self.rand = rand
        self.predictor = predictor
        self.tags: list[str] = []
        self.names: list[str] = []
        self.current: str | None = None

    def deploy(self, n: int, label: str, timeout: float) -> PushRun:
        (self.context / "app.py").write_text(app_source(n))
        tag = f"bench-hand:{self.rand}-{label}"
        name = f"bench-hand-{self.rand}-{label}"
        log_path = self.logs / f"hand-{label}.log"
        command = [DOCKER, "build", "-t", tag, "."]
        deadline = time.monotonic() + timeout
        with open(log_path, "wb") as log:
            start = time.perf_counter()
            result = subprocess.run(
                command,
                cwd=self.context,
                env=dict(os.environ, DOCKER_BUILDKIT="0"),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
            built = time.perf_counter() - start
            if result.returncode != 0:
                raise BenchError(f"{' '.join(command)} failed:\n{tail(log_path)}")
            self.tags.append(tag)
            port = free_port()
            self.names.append(name)
            docker(
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"127.0.0.1:{port}:{APP_PORT}",
                "-e",
                "GRADIO_SERVER_NAME=0.0.0.0",
                tag,
            )
            started = time.perf_counter() - start
            seen = self.wait_answer(
                name, f"http://127.0.0.1:{port}", expected_greeting(n), deadline
            )
        old, self.current = self.current, name
        if old:
            docker("rm", "-f", old, check=False)
        return PushRun(seen - start, built=built, started=started)

    def wait_answer(self, name: str, base: str, expected: str, deadline: float) -> float:
        polls = 0
        while time.monotonic() < deadline:
            if self.predictor.greeting(base) == expected:
                return time.perf_counter()
            polls += 1
            if polls % 20 == 0:
                state = docker("inspect", "--format", "{{.State.Status}}", name, check=False)
                if state.stdout.strip() not in ("created", "running"):
                    logs = docker("logs", "--tail", "30", name, check=False)
                    raise BenchError(f"container {name} is {state.stdout.strip()}:\n{logs.stderr}")
            time.sleep(POLL_SECONDS)
        raise BenchError(f"container {name} did not answer {expected!r} in time")

    def warm_up(self) -> None:
        self.deploy(0, "warmup", WARM_UP_TIMEOUT_SECONDS)

    def code_only(self, n: int) -> PushRun:
        return self.deploy(n, f"rev{n}", ANSWER_TIMEOUT_SECONDS)

    def stop(self) -> None:
        for name in self.names:
            docker("rm", "-f", name, check=False)
        self.current = None

    def cleanup_images(self) -> list[str]:
        return [tag for tag in self.tags if docker("rmi", tag, check=False).returncode == 0]


# --- wrk and nginx -------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx/3xx responses plus socket errors


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> WrkResult:
    def number(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"unexpected wrk output (no {pattern!r}):\n{output}")
        return match.group(1)

    def percentile(p: int) -> float:
        match = re.search(rf"^\s*{p}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match is None:
            raise BenchError(f"unexpected wrk output (no {p}% line):\n{output}")
        return float(match.group(1)) * UNITS_MS[match.group(2)]

    bad = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        bad += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        bad += sum(int(g) for g in match.groups())
    return WrkResult(
        rps=float(number(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        requests=int(number(r"(\d+) requests in")),
        bad=bad,
    )


def wrk(url: str, host: str, seconds: int, threads: int, connections: int) -> WrkResult:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Host: {host}",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return parse_wrk(result.stdout)


def ensure_tools() -> str | None:
    """wrk and nginx on PATH; installs them with apt-get when missing (what it did, or None)."""
    wanted = {"wrk": "wrk", "nginx": "nginx-light"}
    missing = [package for binary, package in wanted.items() if shutil.which(binary) is None]
    if not missing:
        return None
    say(f"installing {' '.join(missing)} with apt-get (not found on PATH)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BenchError(f"{' '.join(install)} failed:\n{result.stdout}{result.stderr}")
    still = [binary for binary in wanted if shutil.which(binary) is None]
    if still:
        raise BenchError(f"still not on PATH after apt-get install: {' '.join(still)}")
    return f"installed {' '.join(missing)} with apt-get during this run"


NGINX_CONF = """\
# As measurements.md §4: one worker, keepalive to the upstream, websocket headers.
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/client;
    proxy_temp_path       {dir}/tmp/proxy;
    fastcgi_temp_path     {dir}/tmp/fastcgi;
    uwsgi_temp_path       {dir}/tmp/uwsgi;
    scgi_temp_path        {dir}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream space {{ server {upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://space;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, workdir: Path, upstream: str) -> None:
        self.dir = workdir / "nginx"
        (self.dir / "tmp").mkdir(parents=True)
        self.port = free_port()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(dir=self.dir, upstream=upstream, port=self.port))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = ["nginx", "-p", str(self.dir), "-c", str(self.conf), "-e", "stderr"]
        log = open(self.dir / "nginx.log", "wb")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                httpx.get(self.url + "/config", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise BenchError(f"nginx did not start:\n{tail(self.dir / 'nginx.log')}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)  # graceful shutdown of master and worker
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class ProxyResults:
    loaded: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)
    single: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)
    body_bytes: dict[tuple[str, str], int] = field(default_factory=dict)

    @staticmethod
    def median(runs: dict, route: str, target: str, pick) -> float | None:  # type: ignore[no-untyped-def]
        values = [pick(r) for r in runs.get((route, target), [])]
        return statistics.median(values) if values else None


def proxy_bench(
    targets: dict[str, str],
    host: str,
    duration: int,
    rounds: int,
    single_duration: int,
    results: ProxyResults,
) -> None:
    client = httpx.Client(timeout=10)
    for route in ROUTES:
        for target, base in targets.items():
            response = client.get(base + route, headers={"host": host})
            if response.status_code != 200:
                raise BenchError(f"{target} {route}: HTTP {response.status_code}")
            results.body_bytes[(route, target)] = len(response.content)
    client.close()
    names = list(targets)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # who goes first rotates
        for route in ROUTES:
            for target in order:
                url = targets[target] + route
                say(f"round {r + 1}/{rounds}: {route} {target}")
                wrk(url, host, WRK_WARM_UP_SECONDS, WRK_THREADS, WRK_CONNECTIONS)
                loaded = wrk(url, host, duration, WRK_THREADS, WRK_CONNECTIONS)
                results.loaded.setdefault((route, target), []).append(loaded)
                say(f"  {loaded.rps:.0f} req/s, p50 {loaded.p50_ms:.2f} ms")
                if single_duration:
                    single = wrk(url, host, single_duration, 1, 1)
                    results.single.setdefault((route, target), []).append(single)


# --- report --------------------------------------------------------------------------------


def versions(tools_note: str | None) -> list[str]:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    lines = [
        f"gradio:    {sample_gradio_version()} in both images (the sample's sdk_version)",
        f"gateway:   uvicorn {version('uvicorn')} (uvloop {version('uvloop')}, httptools "
        f"{version('httptools')}), upstream client aiohttp {version('aiohttp')}",
        f"wrk:       {first_line('wrk', '-v') if shutil.which('wrk') else 'missing'}",
        f"nginx:     {first_line('nginx', '-v') if shutil.which('nginx') else 'missing'}",
    ]
    if tools_note:
        lines.append(f"tools:     {tools_note}")
    return lines


def push_table(spaceport: list[PushRun], hand: list[PushRun], runs: int) -> list[str]:
    def med(runs_: list[PushRun]) -> float | None:
        return statistics.median(r.seconds for r in runs_) if runs_ else None

    ours, theirs = med(spaceport), med(hand)
    ratio = f"{ours / theirs:.2f}" if ours is not None and theirs else "-"

    def values(runs_: list[PushRun], pick) -> str:  # type: ignore[no-untyped-def]
        return fmt_list([v for r in runs_ if (v := pick(r)) is not None])

    return [
        f"{'code-only change -> new greeting answers':<44}{'spaceport':>10}"
        f"{'hand-written':>15}{'ratio':>8}",
        f"{f'median of {runs}':<44}{fmt_seconds(ours):>10}{fmt_seconds(theirs):>15}{ratio:>8}",
        "",
        "every run, in seconds from the start (git push / docker build):",
        f"  spaceport  {'build finished (finishedAt):':<40}{values(spaceport, lambda r: r.built)}",
        f"  spaceport  {'git push exited:':<40}{values(spaceport, lambda r: r.push_wall)}",
        f"  spaceport  {'new container started (StartedAt):':<40}"
        f"{values(spaceport, lambda r: r.started)}",
        f"  spaceport  {'runtime shows the new sha serving:':<40}"
        f"{values(spaceport, lambda r: r.switched)}",
        f"  spaceport  {'new greeting answers (gateway):':<40}"
        f"{values(spaceport, lambda r: r.seconds)}",
        f"  hand       {'docker build exited:':<40}{values(hand, lambda r: r.built)}",
        f"  hand       {'docker run -d returned:':<40}{values(hand, lambda r: r.started)}",
        f"  hand       {'new greeting answers:':<40}{values(hand, lambda r: r.seconds)}",
    ]


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def proxy_table(results: ProxyResults, duration: int, rounds: int, single: int) -> list[str]:
    med = ProxyResults.median
    loaded = results.loaded
    lines = [
        f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{duration}s, median of {rounds} round(s)",
        f"{'route':<28}{'target':<9}{'req/s':>8}{'p50':>10}{'p99':>10}{'body':>8}{'bad':>5}",
    ]
    for route in ROUTES:
        for i, target in enumerate(TARGETS):
            if (route, target) not in loaded:
                continue
            lines.append(
                f"{route if i == 0 else '':<28}{target:<9}"
                f"{med(loaded, route, target, lambda r: r.rps):>8.0f}"
                f"{fmt_ms(med(loaded, route, target, lambda r: r.p50_ms)):>10}"
                f"{fmt_ms(med(loaded, route, target, lambda r: r.p99_ms)):>10}"
                f"{results.body_bytes.get((route, target), 0):>8}"
                f"{sum(r.bad for r in loaded[(route, target)]):>5}"
            )
    lines += ["", f"{'':<28}" + "".join(f"{route:>28}" for route in ROUTES)]

    def rps(route: str, target: str) -> float | None:
        return med(loaded, route, target, lambda r: r.rps)

    for a, b in (("gateway", "direct"), ("nginx", "direct"), ("gateway", "nginx")):
        cells = "".join(f"{fmt_ratio(rps(route, a), rps(route, b)):>28}" for route in ROUTES)
        lines.append(f"{f'req/s {a} / {b}':<28}{cells}")
    for source, label in ((loaded, "-c16"), (results.single, "-c1")):
        if not source:
            continue
        for target in ("gateway", "nginx"):
            cells = ""
            for route in ROUTES:
                ours = med(source, route, target, lambda r: r.p50_ms)
                direct = med(source, route, "direct", lambda r: r.p50_ms)
                cells += (
                    f"{'-' if ours is None or direct is None else f'{ours - direct:+.2f} ms':>28}"
                )
            lines.append(f"{f'added p50 {label}, {target}':<28}{cells}")
    if results.single:
        lines += [
            "",
            f"one connection (wrk -t1 -c1 -d{single}s): p50 / p99, median of {rounds} round(s)",
        ]
        for route in ROUTES:
            for i, target in enumerate(TARGETS):
                if (route, target) not in results.single:
                    continue
                p50 = med(results.single, route, target, lambda r: r.p50_ms)
                p99 = med(results.single, route, target, lambda r: r.p99_ms)
                rps_ = med(results.single, route, target, lambda r: r.rps)
                lines.append(
                    f"{route if i == 0 else '':<28}{target:<9}{rps_:>8.0f}"
                    f"{fmt_ms(p50):>10}{fmt_ms(p99):>10}"
                )
    if rounds > 1:
        lines += ["", "every round, req/s:"]
        for route in ROUTES:
            for target in TARGETS:
                values = [r.rps for r in loaded.get((route, target), [])]
                lines.append(f"  {route:<28}{target:<9}{' '.join(f'{v:.0f}' for v in values)}")
    return lines


# --- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if (why := docker_preflight()) is not None:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    tools_note = None
    if args.rounds:
        try:
            tools_note = ensure_tools()
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    rand = secrets.token_hex(4)
    prefix = f"spaceport-bench-{rand}"
    workdir = Path(tempfile.mkdtemp(prefix="spaceport-bench-"))
    env_lines = environment() + versions(tools_note)
    predictor = Predictor()
    spaceport = SpaceportSide(workdir, prefix, predictor)
    hand = HandSide(workdir, sample_gradio_version(), rand, predictor)
    nginx: Nginx | None = None
    pushes: dict[str, list[PushRun]] = {"spaceport": [], "hand": []}
    proxy = ProxyResults()
    failed = False
    try:
        say(f"starting Spaceport in {workdir} (image prefix {prefix})")
        spaceport.start()
        say("warm-up push of the hello sample until it answers (not timed)")
        spaceport.warm_up()
        if args.push_runs:
            say("hand-written warm-up: build, run, answer (not timed)")
            hand.warm_up()
        # Alternate which side goes first, so neither always runs right after the other.
        for i in range(args.push_runs):
            order = ["spaceport", "hand"] if i % 2 == 0 else ["hand", "spaceport"]
            for side in order:
                say(f"code-only change {i + 1}/{args.push_runs}: {side}")
                run_ = (spaceport if side == "spaceport" else hand).code_only(i + 1)
                pushes[side].append(run_)
                say(f"  {run_.seconds:.2f} s")
        hand.stop()  # nothing else may share the CPUs with the Space under wrk
        if args.rounds:
            ip = spaceport.serving_container_ip()
            nginx = Nginx(workdir, f"{ip}:{APP_PORT}")
            nginx.start()
            targets = {
                "direct": f"http://{ip}:{APP_PORT}",
                "gateway": spaceport.platform.url,
                "nginx": nginx.url,
            }
            say(f"wrk: direct {targets['direct']}, gateway and nginx on 127.0.0.1")
            proxy_bench(
                targets,
                spaceport.space_host,
                args.duration,
                args.rounds,
                args.single_duration,
                proxy,
            )
    except BenchError as exc:
        failed = True
        print(f"bench: {exc}", file=sys.stderr)
    except Exception:
        failed = True
        traceback.print_exc()
        print("platform log tail:\n" + spaceport.platform.log_tail(), file=sys.stderr)
    finally:
        for step in (
            nginx.stop if nginx else None,
            hand.stop,
            spaceport.stop,  # also removes the containers it started
            predictor.close,
        ):
            try:
                if step is not None:
                    step()
            except Exception:
                traceback.print_exc()
        removed = spaceport.cleanup_images() + hand.cleanup_images()
        say(f"removed {len(removed)} images: {' '.join(removed)}")
        left = docker("ps", "-aq", "--filter", f"label={INSTANCE_LABEL}={prefix}", check=False)
        if left.stdout.strip():
            say(f"containers left with label {INSTANCE_LABEL}={prefix}: {left.stdout.split()}")
        if args.keep_workdir or failed:
            say(f"kept {workdir} (Spaceport home, checkout, push, build and nginx logs)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("\n".join(env_lines))
    if args.push_runs:
        print()
        print("\n".join(push_table(pushes["spaceport"], pushes["hand"], args.push_runs)))
    if proxy.loaded:
        print()
        print("\n".join(proxy_table(proxy, args.duration, args.rounds, args.single_duration)))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_bench",
        description="Code-only push until the new revision answers, and the gateway's "
        "throughput and added latency, through Spaceport beside a hand-run container and nginx.",
    )
    parser.add_argument(
        "--push-runs",
        type=int,
        default=3,
        metavar="N",
        help="code-only changes per side, timed until the new greeting answers (default 3)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        metavar="S",
        help=f"seconds of each wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} run (default 10)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="wrk rounds over every route and target, interleaved (default 1; 0 skips wrk)",
    )
    parser.add_argument(
        "--single-duration",
        type=int,
        default=5,
        metavar="S",
        help="seconds of each one-connection wrk run, for latency without load "
        "(default 5; 0 skips them)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary Spaceport home, checkout, logs and nginx config",
    )
    args = parser.parse_args(argv)
    if min(args.push_runs, args.rounds, args.single_duration) < 0 or args.duration < 1:
        parser.error("counts must be >= 0 and --duration >= 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
