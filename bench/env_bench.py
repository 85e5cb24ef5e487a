"""What the Hub's Gradio environment costs: sample_spaces/hello built with the recipe before it
(the Gradio template of the commit before builder/gradio_env.py) and with today's, in one run.

Run from the repository root (takes several minutes; needs a Docker Engine and PyPI and a
Debian mirror reachable from builds, as every Gradio build does):

    .venv/bin/python -m bench.env_bench [--before REV] [--code-runs 3]

Everything goes through the builder itself (builder/build.py, the build network and proxy,
the build limits), not through a push: what differs between the two sides is the recipe.
What is timed and how to read it: bench/README.md, "env_bench". Images it makes are tagged
under `envbench/` and removed at the end; the Engine's build cache is left alone (other
Spaces on the same machine share it).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2

from bench.common import DOCKER, SAMPLE, docker, environment, fmt_seconds, say
from builder import build, recipe
from builder.base_image import ensure_python_base
from builder.build import BuildInput, build_image, engine_client
from builder.context import build_context, scan
from builder.docker_build import BuildLimits, BuildRequest, stream_build
from builder.spec import BuildOptions
from orchestrator.builds.options import build_options, build_spec
from orchestrator.core.settings import Settings
from orchestrator.spaces.config import parse_readme
from tests.platform import SAMPLES

PREFIX = "envbench"
TEMPLATE = "builder/templates/gradio.Dockerfile.j2"
# The commit that introduced builder/gradio_env.py; its parent holds the recipe before.
ENV_COMMIT_SUBJECT = "Gradio Spaces get the Hub's environment"


@dataclass
class Built:
    seconds: float
    image: str
    size: int  # bytes, as `docker image inspect` counts them (all layers)


def before_rev() -> str:
    found = subprocess.run(
        ["git", "log", "--format=%H", "--fixed-strings", f"--grep={ENV_COMMIT_SUBJECT}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not found:
        raise SystemExit("no commit introducing builder/gradio_env.py: pass --before REV")
    return found[-1] + "^"


def repo_tar(folder: Path, app_suffix: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if path.name == "app.py":
                data += app_suffix.encode()
            info = tarfile.TarInfo(str(path.relative_to(folder)))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def size_of(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def top_layers_size(image: str, count: int) -> int:
    """Bytes in the image's last `count` layers: what it adds over what it shares."""
    lines = docker("history", "--human=false", "--format", "{{.Size}}", image).stdout.split()
    return sum(int(value) for value in lines[:count])


class Bench:
    def __init__(self, options: BuildOptions) -> None:
        self.client = engine_client()
        self.options = options
        self.folder = SAMPLES / SAMPLE
        self.config = parse_readme((self.folder / "README.md").read_text())
        self.images: list[str] = []
        self.log_path = Path(tempfile.mkdtemp(prefix="env-bench-")) / "builds.log"

    def log(self, line: str) -> None:
        with open(self.log_path, "a") as handle:
            handle.write(line + "\n")

    def item(self, suffix: str, no_cache: bool, **readme: str) -> BuildInput:
        data = repo_tar(self.folder, suffix)
        files, tree = scan(data)
        config = self.config.model_copy(update=readme) if readme else self.config
        return BuildInput("bench/hello", data, files, tree, build_spec(config), {}, no_cache)

    def new(self, suffix: str, no_cache: bool = False, **readme: str) -> Built:
        start = time.perf_counter()
        out = build_image(
            self.client, self.item(suffix, no_cache, **readme), self.options, self.log, lambda: None
        )
        seconds = time.perf_counter() - start
        self.images.append(out.image)
        return Built(seconds, out.image, size_of(out.image))

    def old(self, template: str, suffix: str) -> Built:
        """The recipe before: the old template, rendered with what it took, built with no
        cache through the same network, proxy and limits."""
        base = ensure_python_base(self.client, self.config.python_version, self.log, self.options)
        text = (
            jinja2.Environment(
                undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True
            )
            .from_string(template)
            .render(
                base_image=base,
                python_version=self.config.python_version,
                sdk_version=self.config.sdk_version,
                app_file=self.config.app_file or "app.py",
                apt_packages=[],
                has_pre_requirements=False,
                has_requirements=False,
                space_hint="bench/hello-before",
            )
        )
        tag = f"{PREFIX}/before:{time.time_ns()}"
        network = build._build_network(self.client, self.options, self.log)
        request = BuildRequest(
            context=build_context(
                repo_tar(self.folder, suffix), recipe.DOCKERFILE_PATH, text.encode()
            ),
            tag=tag,
            dockerfile=recipe.DOCKERFILE_PATH,
            build_args=network.build_args(),
            labels={},
            no_cache=True,
            limits=BuildLimits(
                memory_bytes=self.options.build_memory_mb << 20, cpus=self.options.build_cpus
            ),
            network=network.name,
        )
        start = time.perf_counter()
        for line in stream_build(self.client.api, request, lambda: None):
            self.log(line)
        seconds = time.perf_counter() - start
        self.images.append(tag)
        return Built(seconds, tag, size_of(tag))

    def hand_code_only(self, image_of_space: str, suffix: str) -> float:
        """`docker build` by hand of the same Dockerfile and context, after the same edit."""
        data = repo_tar(self.folder, suffix)
        item = self.item(suffix, False)
        text = recipe.render_gradio(
            base_image=ensure_python_base(
                self.client, self.config.python_version, self.log, self.options
            ),
            python_version=item.spec.python_version,
            sdk_version=item.spec.sdk_version or self.options.default_gradio_version,
            app_file=item.spec.app_file or "app.py",
            apt_packages=[],
            has_pre_requirements=False,
            has_requirements=build._has_requirements(item, "requirements.txt"),
            space_hint=item.space_hint,
        )
        context = build_context(data, recipe.DOCKERFILE_PATH, text.encode())
        with tempfile.TemporaryDirectory() as folder:
            with tarfile.open(fileobj=io.BytesIO(context)) as tar:
                tar.extractall(folder, filter="data")
            tag = f"{PREFIX}/hand:{time.time_ns()}"
            start = time.perf_counter()
            done = subprocess.run(
                [DOCKER, "build", "-q", "-f", recipe.DOCKERFILE_PATH, "-t", tag, "."],
                cwd=folder,
                capture_output=True,
                text=True,
                env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"},
                check=False,
            )
            seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"hand-run docker build failed:\n{done.stderr[-2000:]}")
        self.images.append(tag)
        return seconds

    def cleanup(self) -> None:
        # The build proxy this bench's installation started, then its images (the proxy's too).
        found = docker(
            "ps", "-aq", "--filter", f"label=org.spaceport.instance={self.options.instance}"
        )
        for container in found.stdout.split():
            docker("rm", "-f", container, check=False)
        proxies = docker("images", "-q", f"{PREFIX}/build-proxy")
        for image in [*dict.fromkeys(self.images), *proxies.stdout.split()]:
            docker("rmi", image, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="git revision of the recipe before (default: found)")
    parser.add_argument("--code-runs", type=int, default=3)
    args = parser.parse_args()
    rev = args.before or before_rev()
    template = subprocess.run(
        ["git", "show", f"{rev}:{TEMPLATE}"], capture_output=True, text=True, check=True
    ).stdout
    home = Path(tempfile.mkdtemp(prefix="env-bench-home-"))
    options = build_options(Settings(home=home, image_prefix=PREFIX), "envbench")
    bench = Bench(options)
    tag = f"{time.time_ns()}"
    say(f"recipe before: {rev} ({TEMPLATE}); build output in {bench.log_path}")
    try:
        say("1/5 before: cold build (no cache) of the old recipe")
        before = bench.old(template, f"\n# before {tag}\n")
        say("2/5 after: cold build (no cache) of today's recipe")
        after = bench.new(f"\n# after {tag}\n", no_cache=True)
        other = "6.30.0"
        say(f"3/5 after: first Space of a new (Python, Gradio) pair, gradio {other}")
        pair = bench.new(f"\n# pair {tag}\n", sdk_version=other)
        say("4/5 after: a second Space on the same versions")
        second = bench.new(f"\n# second Space {tag}\n")
        say(f"5/5 code-only rebuild, {args.code_runs} runs each, beside a hand-run docker build")
        ours: list[float] = []
        hand: list[float] = []
        bench.hand_code_only(second.image, f"\n# hand warm {tag}\n")
        for run in range(args.code_runs):
            ours.append(bench.new(f"\n# code {run} {tag}\n").seconds)
            hand.append(bench.hand_code_only(second.image, f"\n# hand {run} {tag}\n"))
        second_adds = top_layers_size(second.image, 1)
        layers_new = len(docker("history", "-q", after.image).stdout.split())
        code_layers = _rebuilt_layers(bench.log_path)
    finally:
        bench.cleanup()
    mb = 1e6
    lines = [
        f"env_bench of sample_spaces/{SAMPLE} (gradio {bench.config.sdk_version}, "
        f"python {bench.config.python_version})",
        *environment(),
        "",
        f"{'':<58}{'seconds':>9}{'image MB':>10}{'ratio':>8}",
        f"{'before: cold build, old recipe (pip install gradio)':<58}"
        f"{fmt_seconds(before.seconds):>9}{before.size / mb:>10.0f}{'1.00':>8}",
        f"{'after: cold build, nothing cached (Hub env + Gradio)':<58}"
        f"{fmt_seconds(after.seconds):>9}{after.size / mb:>10.0f}"
        f"{after.seconds / before.seconds:>8.2f}",
        f"{'after: first Space of a new Gradio, base layers cached':<58}"
        f"{fmt_seconds(pair.seconds):>9}{pair.size / mb:>10.0f}"
        f"{pair.seconds / before.seconds:>8.2f}",
        f"{'after: a second Space on the same (Python, Gradio)':<58}"
        f"{fmt_seconds(second.seconds):>9}{second_adds / mb:>10.3f}{'':>8}",
        f"{'after: code-only rebuild, median of ' + str(len(ours)):<58}"
        f"{fmt_seconds(statistics.median(ours)):>9}{'':>10}"
        f"{statistics.median(ours) / statistics.median(hand):>8.2f}",
        f"{'hand-run docker build of the same change, median':<58}"
        f"{fmt_seconds(statistics.median(hand)):>9}{'':>10}{'1.00':>8}",
        "",
        f"image size: {after.size / mb:.0f} MB after vs {before.size / mb:.0f} MB before "
        f"({after.size / before.size:.2f}x); the second Space adds {second_adds / mb:.3f} MB "
        "(its COPY layer) and shares the rest",
        f"after image layers: {layers_new}; steps a code-only rebuild ran (not from cache): "
        f"{code_layers}",
        f"code-only runs: ours {[round(v, 2) for v in ours]}, hand {[round(v, 2) for v in hand]}",
    ]
    print("\n".join(lines))
    return 0


def _rebuilt_layers(log_path: Path) -> str:
    """The steps of the last build in the log that did not come from the cache."""
    steps: list[tuple[str, bool]] = []
    for line in log_path.read_text().splitlines():
        line = line.strip()
        if match := re.match(r"Step (\d+)/\d+ : (\S+)", line):
            if match[1] == "1":
                steps = []
            steps.append((match[2], False))
        elif line.endswith("Using cache") and steps:
            steps[-1] = (steps[-1][0], True)
    return ", ".join(name for name, cached in steps if not cached and name != "FROM") or "none"


if __name__ == "__main__":
    sys.exit(main())
