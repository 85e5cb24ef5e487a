"""A real Spaceport for tests: `spaceport serve` and `spaceport worker` as subprocesses in a
temporary home, plus helpers to push sample Spaces with the real git client."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "sample_spaces"
FINAL_STAGES = {
    "RUNNING",
    "BUILD_ERROR",
    "CONFIG_ERROR",
    "NO_APP_FILE",
    "RUNTIME_ERROR",
    "PAUSED",
    "STOPPED",
    "SLEEPING",
}
ACCESS_LOG_LINE = re.compile(r'^INFO: +[0-9.:]+ - "')
# A docker Space that builds offline in a moment: the base image and no RUN step. It can be
# paused and billed (a static Space costs nothing).
TINY_DOCKERFILE = """FROM python:3.11-slim
USER 1000
WORKDIR /tmp
CMD ["python", "-m", "http.server", "7860"]
"""


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """`spaceport up`, as a user runs it, in its own process group."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / "up.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - lives with the process
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "up", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if b"Spaceport is up" in log_path.read_bytes()[offset:]:
                return
            if self.processes[-1].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"spaceport up did not start:\n{self.log_tail()}")

    def kill(self) -> None:
        """What a crash or `kill -9` does: every process of the platform dies at once."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()

    def stop(self, remove_containers: bool = True) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
        if remove_containers:
            client = docker.from_env()
            label = f"org.spaceport.instance={self.instance}"
            for container in client.containers.list(
                ignore_removed=True, all=True, filters={"label": label}
            ):
                container.remove(force=True)
            # The BuildKit daemon's state volume (its layer cache): one per test installation.
            for volume in client.volumes.list(filters={"label": label}):
                with contextlib.suppress(docker.errors.APIError):
                    volume.remove(force=True)

    @property
    def instance(self) -> str:
        """The label on this platform's containers: the setting, else the home's id."""
        explicit = self.env.get("SPACEPORT_INSTANCE")
        return explicit or (self.home / "installation-id").read_text().strip()

    def log_tail(self, _name: str = "up", lines: int = 80) -> str:
        path = self.home / "logs" / "up.log"
        if not path.exists():
            return ""
        # The access log of a polling test would fill the tail and hide the cause.
        kept = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if not ACCESS_LOG_LINE.match(line)
        ]
        return "\n".join(kept[-lines:])

    def app_url(self, owner: str, name: str) -> str:
        return f"http://{owner}-{name}.localhost:{self.port}".lower()

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def token(self, user: str, *extra: str) -> str:
        return self.cli("token", "create", user, *extra).strip()

    def git_url(self, owner: str, name: str, token: str | None = None, user: str = "x") -> str:
        auth = f"{user}:{token}@" if token else ""
        return f"http://{auth}127.0.0.1:{self.port}/spaces/{owner}/{name}"

    def api(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30)

    def runtime(self, owner: str, name: str, token: str | None = None) -> dict:
        response = self.api(f"/api/spaces/{owner}/{name}/runtime", token)
        response.raise_for_status()
        return response.json()

    def builds(self, owner: str, name: str, token: str | None = None) -> list[dict]:
        response = self.api(f"/api/spaces/{owner}/{name}/builds", token)
        response.raise_for_status()
        return response.json()

    def build_log(self, owner: str, name: str, build_id: int, token: str | None = None) -> str:
        response = self.api(f"/api/spaces/{owner}/{name}/builds/{build_id}", token)
        response.raise_for_status()
        return "\n".join(response.json()["log"])

    def delete_space(self, owner: str, name: str, token: str) -> None:
        """Delete a Space a test made (the session platform is shared: leave room)."""
        httpx.request(
            "DELETE",
            f"{self.url}/api/repos/delete",
            json={"type": "space", "organization": owner, "name": name},
            headers={"authorization": f"Bearer {token}"},
            timeout=30,
        )

    def wait_for_stage(
        self,
        owner: str,
        name: str,
        token: str | None = None,
        timeout: float = 600,
        stages: set[str] = FINAL_STAGES,
    ) -> dict:
        deadline = time.monotonic() + timeout
        runtime: dict = {}
        while time.monotonic() < deadline:
            runtime = self.runtime(owner, name, token)
            if runtime["stage"] in stages:
                return runtime
            time.sleep(0.5)
        raise AssertionError(
            f"{owner}/{name} still {runtime.get('stage')} after {timeout} s\n"
            f"worker log:\n{self.log_tail('worker')}"
        )


def get_when_served(url: str, timeout: float = 30) -> httpx.Response:
    """GET `url` until it answers 200 (or `timeout` passes): a Space the API already calls
    RUNNING is served once the gateway's route table has read that event (a moment later,
    longer on a loaded machine; meanwhile visitors get the status page)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(url, timeout=30)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="Tester",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="Tester",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_TERMINAL_PROMPT="0",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check
    )


def sample_checkout(sample: str, workdir: Path) -> Path:
    """A fresh git repo holding one sample Space, committed on main."""
    target = workdir / f"{sample}-{time.monotonic_ns()}"
    shutil.copytree(SAMPLES / sample, target)
    git(target, "init", "-q", "--initial-branch=main")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", f"{sample} sample")
    return target


def docker_checkout(
    workdir: Path, name: str, dockerfile: str = TINY_DOCKERFILE, message: str = "a docker Space"
) -> Path:
    """A fresh git repo of a docker Space that serves on port 7860: its README and
    `dockerfile` (by default TINY_DOCKERFILE), committed on main."""
    target = workdir / f"{name}-{time.monotonic_ns()}"
    target.mkdir()
    (target / "README.md").write_text(f"---\ntitle: {name}\nsdk: docker\napp_port: 7860\n---\n")
    (target / "Dockerfile").write_text(dockerfile)
    git(target, "init", "-q", "--initial-branch=main")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", message)
    return target


def until(what: str, check: Callable[[], bool], timeout: float = 300) -> None:
    """Poll `check` every half second until it holds; past `timeout`, fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def push(repo: Path, url: str, *refspecs: str, check: bool = True) -> subprocess.CompletedProcess:
    result = git(repo, "push", "--force", url, *(refspecs or ("main",)), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git push failed:\n{result.stderr}")
    return result


def commit_change(repo: Path, path: str, text: str, message: str = "change") -> str:
    (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()
