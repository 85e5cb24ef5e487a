"""The controller on Kubernetes with 1,000 Spaces on fake nodes, in one run.

    .venv/bin/python -m bench.kube_bench                     # 1,000 Spaces, 50 changes
    .venv/bin/python -m bench.kube_bench --spaces 200 --changes 20 --idle-seconds 10
    .venv/bin/python -m bench.kube_bench --cold-build        # also time a cold control-plane build

Starts the test control plane (tests/kube/control_plane.py: real etcd, kube-apiserver,
scheduler and controller manager, kwok as every node's kubelet) with enough fake CPU nodes,
a SQLite home with `--spaces` built Spaces, and the real `spaceport controller` process
(SPACEPORT_BACKEND=kubernetes) to place them all. Then, each beside a reference measured in
the same run:

* **restart**: a new controller (a fresh KubernetesBackend: its informers list everything,
  then one full reconcile pass, in this process) until every Space has been looked at and
  every action is done; reference: one bare list of the same Deployments and pods with the
  client. Afterwards: how many Deployments exist (no duplicates: exactly `--spaces`) and how
  many starts the pass asked for (none: it adopted).
* **idle CPU**: the controller process's CPU over `--idle-seconds` while nothing changes,
  as % of one core; reference: kube-controller-manager's over the same window.
* **change → pod**: `--changes` restarts, one at a time, each timed from its commit to the
  moment a pod of the new revision exists (and is bound to a node); reference: the same
  change made directly by patching the Deployment's pod template, bypassing Spaceport.
* **control-plane build**: a warm scripts/build_control_plane.sh run, timed; with
  `--cold-build` also a cold one into empty caches (minutes: it downloads and compiles).

Nothing is asserted: timings on a shared machine are read, not tested (bench/README.md).
Nothing connects to a pod or node IP.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OWNER = "bench"
PODS_PER_NODE = 110
# Small tiers: a thousand Spaces fit on a dozen fake nodes (sizes are data on kwok).
OVERRIDES = '{"cpu-basic": {"cpu": 0.1, "memory_gib": 0.25, "disk_gib": 1}}'


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def until(check: Callable[[], Any], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 else "-"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = Path(tempfile.mkdtemp(prefix="spaceport-kube-bench-"))
        self.instance = f"kube-bench-{uuid.uuid4().hex[:6]}"
        self.plane: Any = None
        self.child: subprocess.Popen[bytes] | None = None

    # -- set-up -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
        env.update(
            SPACEPORT_HOME=str(self.home),
            SPACEPORT_INSTANCE=self.instance,
            SPACEPORT_HARDWARE_OVERRIDES=OVERRIDES,
            **self.plane.env(),
        )
        return env

    def start_cluster(self) -> None:
        from tests.kube.control_plane import ControlPlane, NodeSpec

        nodes = -(-self.args.spaces // (PODS_PER_NODE - 10)) + 1
        specs = [
            NodeSpec(f"cpu-{i}", cpu="64", memory="256Gi", pods=PODS_PER_NODE)
            for i in range(nodes)
        ]
        started = time.monotonic()
        self.plane = ControlPlane().start(specs)
        print(f"control plane with {nodes} fake nodes up in {time.monotonic() - started:.1f} s")
        os.environ.update(self.env())

    def populate(self) -> None:
        from orchestrator.core import db
        from orchestrator.core.models import Space, Stage, User
        from orchestrator.core.settings import get_settings

        get_settings.cache_clear()
        db.get_engine.cache_clear()
        db.migrate()
        with db.session_scope() as session:
            user = User(name=OWNER)
            session.add(user)
            session.commit()
            for i in range(self.args.spaces):
                sha = secrets.token_hex(20)
                session.add(
                    Space(
                        owner=OWNER,
                        name=f"s{i:04d}",
                        host=f"{OWNER}-s{i:04d}",
                        owner_id=user.id,
                        sdk="docker",
                        head_sha=sha,
                        built_sha=sha,
                        built_image=f"registry.bench/s{i:04d}@sha256:{'0' * 64}",
                        stage=Stage.APP_STARTING,
                    )
                )
                if i % 200 == 199:
                    session.commit()
            session.commit()

    def running(self) -> int:
        with sqlite3.connect(self.home / "spaceport.db") as conn:
            row = conn.execute("SELECT count(*) FROM space WHERE stage='RUNNING'").fetchone()
            return int(row[0])

    def start_controller(self) -> None:
        log = open(self.home / "controller.log", "ab")  # noqa: SIM115 - the child's
        self.child = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "spaceport"), "controller"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def stop_controller(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        self.child = None

    def close(self) -> None:
        self.stop_controller()
        if self.plane is not None:
            self.plane.stop()

    # -- measurements -------------------------------------------------------------------

    def first_placement(self) -> float:
        started = time.monotonic()
        self.start_controller()
        done = until(lambda: self.running() == self.args.spaces, timeout=900, every=1)
        took = time.monotonic() - started
        print(
            f"first placement: {self.running()}/{self.args.spaces} RUNNING after {took:.1f} s"
            + ("" if done else " (gave up)")
        )
        return took

    def restart(self) -> dict[str, float]:
        """A restarted controller's first pass, in this process: fresh caches, one resync."""
        from kubernetes import client

        from orchestrator.controller.reconciler import Reconciler
        from orchestrator.core.backends import make_backend

        self.stop_controller()
        api = self.plane.api_client()
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        namespace = "spaces"
        started = time.monotonic()
        apps.list_namespaced_deployment(namespace)
        core.list_namespaced_pod(namespace)
        bare = time.monotonic() - started

        backend = make_backend()
        starts = 0
        real_start = backend.start

        def counting_start(revision: Any) -> Any:
            nonlocal starts
            starts += 1
            return real_start(revision)

        backend.start = counting_start  # type: ignore[method-assign]
        started = time.monotonic()
        backend.prepare()
        listed = time.monotonic() - started
        reconciler = Reconciler(backend)
        reconciler.resync()
        reconciler.settle_actions(timeout=300)
        took = time.monotonic() - started
        reconciler.close()
        backend.close()
        deployments = len(apps.list_namespaced_deployment(namespace).items)
        return {
            "took": took,
            "listed": listed,
            "bare": bare,
            "starts": starts,
            "deployments": deployments,
        }

    def idle_cpu(self) -> tuple[float, float]:
        self.start_controller()
        assert self.child is not None
        # Its own first pass (the restart above, again) is not idleness: let it settle.
        until(lambda: False, timeout=self.args.settle_seconds)
        kcm = self.plane.pid_of("kube-controller-manager")
        before, kcm_before = cpu_seconds(self.child.pid), cpu_seconds(kcm)
        time.sleep(self.args.idle_seconds)
        window = self.args.idle_seconds
        own = (cpu_seconds(self.child.pid) - before) / window * 100
        reference = (cpu_seconds(kcm) - kcm_before) / window * 100
        return own, reference

    def change_latency(self) -> tuple[list[float], list[float], list[float]]:
        """Restart `--changes` Spaces one at a time through the controller (still running),
        then make as many template changes by hand: commit → pod of the new template."""
        from kubernetes import client, watch
        from sqlmodel import select

        from orchestrator.core import db
        from orchestrator.core.models import Space
        from orchestrator.spaces import lifecycle

        api = self.plane.api_client()
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        seen: dict[str, float] = {}  # pod template label value -> when its pod was bound
        created: dict[str, float] = {}
        lock = threading.Condition()
        stop = threading.Event()

        def follow() -> None:
            stream = watch.Watch()
            version = core.list_namespaced_pod("spaces").metadata.resource_version
            while not stop.is_set():
                for item in stream.stream(
                    core.list_namespaced_pod,
                    "spaces",
                    resource_version=version,
                    timeout_seconds=5,
                ):
                    pod = item["object"]
                    version = pod.metadata.resource_version
                    labels = pod.metadata.labels or {}
                    marks = [labels.get("spaceport.dev/revision"), labels.get("bench/mark")]
                    with lock:
                        for mark in filter(None, marks):
                            created.setdefault(mark, time.monotonic())
                            if pod.spec.node_name:
                                seen.setdefault(mark, time.monotonic())
                        lock.notify_all()

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        time.sleep(1)

        def wait_for(mark: Callable[[], str | None], since: float) -> tuple[float, float]:
            deadline = time.monotonic() + 30
            with lock:
                while time.monotonic() < deadline:
                    key = mark()
                    if key and key in seen:
                        return created[key] - since, seen[key] - since
                    lock.wait(0.1)
            return float("nan"), float("nan")

        through_spaceport: list[float] = []
        bound_spaceport: list[float] = []
        ids = list(range(self.args.changes))
        for i in ids:
            with db.session_scope() as session:
                space = session.exec(select(Space).where(Space.name == f"s{i:04d}")).one()
                uid = space.uid
                old = self._revision_of(apps, uid)
                since = time.monotonic()
                lifecycle.restart(session, space, actor=OWNER)
            made, bound = self._wait_template(apps, uid, old, since, wait_for)
            through_spaceport.append(made)
            bound_spaceport.append(bound)
        by_hand: list[float] = []
        for i in ids:
            name = f"bench-mark-{i}-{uuid.uuid4().hex[:6]}"
            uid = self._uid_of(f"s{(i + self.args.changes) % self.args.spaces:04d}")
            since = time.monotonic()
            apps.patch_namespaced_deployment(
                f"space-{uid}",
                "spaces",
                {"spec": {"template": {"metadata": {"labels": {"bench/mark": name}}}}},
            )
            _, bound = wait_for(lambda name=name: name, since)
            by_hand.append(bound)
        stop.set()
        return through_spaceport, bound_spaceport, by_hand

    def _uid_of(self, name: str) -> str:
        with sqlite3.connect(self.home / "spaceport.db") as conn:
            return str(conn.execute("SELECT uid FROM space WHERE name=?", (name,)).fetchone()[0])

    @staticmethod
    def _revision_of(apps: Any, uid: str) -> str | None:
        deployment = apps.read_namespaced_deployment(f"space-{uid}", "spaces")
        return (deployment.spec.template.metadata.labels or {}).get("spaceport.dev/revision")

    def _wait_template(
        self, apps: Any, uid: str, old: str | None, since: float, wait_for: Any
    ) -> tuple[float, float]:
        """Wait for the Deployment's template to carry a new revision, then for its pod."""
        revision: list[str] = []

        def mark() -> str | None:
            if not revision:
                current = self._revision_of(apps, uid)
                if current and current != old:
                    revision.append(current)
            return revision[0] if revision else None

        return wait_for(mark, since)

    def build_times(self) -> tuple[float, float | None]:
        script = ROOT / "scripts" / "build_control_plane.sh"
        started = time.monotonic()
        subprocess.run(["bash", str(script)], check=True, capture_output=True)
        warm = time.monotonic() - started
        cold = None
        if self.args.cold_build:
            caches = Path(tempfile.mkdtemp(prefix="spaceport-cold-build-"))
            env = dict(
                os.environ,
                SPACEPORT_TOOLS_CACHE=str(caches / "tools"),
                GOCACHE=str(caches / "gocache"),
                GOMODCACHE=str(caches / "gomod"),
            )
            started = time.monotonic()
            subprocess.run(["bash", str(script)], check=True, env=env)
            cold = time.monotonic() - started
            subprocess.run(["chmod", "-R", "u+w", str(caches)], check=False)
            subprocess.run(["rm", "-rf", str(caches)], check=False)
        return warm, cold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--settle-seconds", type=float, default=20)
    parser.add_argument("--cold-build", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    bench = Bench(args)
    try:
        bench.start_cluster()
        bench.populate()
        placement = bench.first_placement()
        restart = bench.restart()
        own_cpu, kcm_cpu = bench.idle_cpu()
        made, bound, by_hand = bench.change_latency()
        warm, cold = bench.build_times()
    finally:
        bench.close()

    n = args.spaces
    print()
    print(f"## Kubernetes backend, {n} Spaces on fake nodes")
    print()
    print("| measure | Spaceport | reference | ratio | goal |")
    print("|---|---|---|---|---|")
    print(f"| first placement of all {n} (controller process) | {placement:.1f} s | - | - | - |")
    print(
        f"| restarted controller reconciles all {n} | {restart['took']:.1f} s "
        f"(lists {restart['listed']:.1f} s) | {restart['bare']:.2f} s (bare list) | "
        f"{ratio(restart['took'], restart['bare'])} | <= 60 s |"
    )
    print(
        f"| ... starts it asked for / Deployments after | {restart['starts']:.0f} / "
        f"{restart['deployments']:.0f} | 0 / {n} | - | no duplicates |"
    )
    print(
        f"| controller CPU while nothing changes | {own_cpu:.2f} % of a core | "
        f"{kcm_cpu:.2f} % (kube-controller-manager) | {ratio(own_cpu, kcm_cpu)} | < 5 % |"
    )
    clean = [x for x in bound if x == x]
    hand = [x for x in by_hand if x == x]
    if clean and hand:
        print(
            f"| change -> pod bound, p50 / p99 of {len(clean)} | {statistics.median(clean):.2f} / "
            f"{pct(clean, 0.99):.2f} s | {statistics.median(hand):.2f} / {pct(hand, 0.99):.2f} s "
            f"(template patched by hand) | {ratio(pct(clean, 0.99), pct(hand, 0.99))} (p99) | "
            "p99 <= 2 s |"
        )
    made_clean = [x for x in made if x == x]
    if made_clean:
        print(
            f"| change -> pod created, p50 / p99 | {statistics.median(made_clean):.2f} / "
            f"{pct(made_clean, 0.99):.2f} s | - | - | - |"
        )
    lost = len(bound) - len(clean)
    if lost:
        print(f"| changes whose pod never appeared within 30 s | {lost} | - | - | 0 |")
    print(
        f"| control-plane build, warm | {warm:.1f} s | - | - | < 60 s |"
        + (f"\n| control-plane build, cold | {cold:.0f} s | - | - | CI <= 90 min |" if cold else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
