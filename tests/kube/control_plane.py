"""A real Kubernetes control plane on loopback with fake nodes, for tests and benches.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real programs
(built from Go modules by scripts/build_control_plane.sh); kwok plays the kubelet of every
node: it marks nodes Ready and pods bound to them Running and Ready, and finishes deleted
pods. So scheduling (requests, taints, selectors), Deployments, ReplicaSets, garbage
collection and watches are all real; no container ever runs. Pod IPs are made-up data
(10.0.0.0/16): nothing may connect to them. Every node's address is 127.0.0.1 and its
kubelet port is kwok's own server there, which serves each container's log from the files
`write_app_log` writes, so the apiserver's pod log API works and dials only loopback.

    python -m tests.kube.control_plane          start one, print its kubeconfig, wait

Nodes (`DEFAULT_NODES`): a CPU pool of two nodes, and a GPU pool of two A10G nodes and one T4
node, each advertising `nvidia.com/gpu` and tainted `nvidia.com/gpu=present:NoSchedule` as
GPU pools are. Capacity can only be set when a Node is created (the apiserver keeps the old
status on update), so `add_node` creates it whole.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build_control_plane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm")
SPACES_NAMESPACE = "spaces"
START_TIMEOUT_SECONDS = 120.0
# Annotation kwok is told to manage nodes by: nodes without it are left alone.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
# kwok's stage files (in its module, under kustomize/stage/) that play a kubelet.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class ControlPlaneUnavailable(RuntimeError):
    """A binary is missing or a component would not start: says which and how to fix."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    gpus: int = 0
    accelerator: str | None = None  # e.g. "a10g": the label GPU tiers select
    pool: str = "cpu"
    labels: dict[str, str] = field(default_factory=dict)
    pods: int = 110  # the kubelet's default ceiling

    def manifest(self) -> dict[str, Any]:
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": "200Gi",
        }
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            "spaceport.dev/pool": self.pool,
            **self.labels,
        }
        taints = []
        if self.gpus:
            resources["nvidia.com/gpu"] = str(self.gpus)
            taints.append(GPU_TAINT)
            if self.accelerator:
                labels["spaceport.dev/accelerator"] = self.accelerator
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
                "labels": labels,
            },
            # A dummy provider id: nothing mistakes the node for a cloud's and deletes it.
            "spec": {"providerID": f"kwok://{self.name}", "taints": taints},
            # Set at creation, the only time the apiserver takes a node's status whole.
            "status": {"capacity": resources, "allocatable": resources},
        }


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("cpu-0"),
    NodeSpec("cpu-1"),
    NodeSpec("gpu-a10g-0", gpus=1, accelerator="a10g", pool="gpu"),
    NodeSpec("gpu-a10g-1", gpus=1, accelerator="a10g", pool="gpu"),
    NodeSpec("gpu-t4-0", gpus=1, accelerator="t4", pool="gpu"),
)


def bin_dir() -> Path:
    """Where scripts/build_control_plane.sh puts (links) the binaries."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def missing_binaries(folder: Path | None = None) -> list[str]:
    folder = folder or bin_dir()
    return [b for b in BINARIES if not os.access(folder / b, os.X_OK)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class ControlPlane:
    """Start with `start()`, stop with `stop()`; `kubeconfig` is the admin's."""

    def __init__(self, run_dir: Path | None = None, binaries: Path | None = None) -> None:
        self.binaries = binaries or bin_dir()
        # Under /dev/shm when there is one: etcd fsyncs nothing there (and is told not to).
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="spaceport-k8s-", dir=base))
        self.kubeconfig = self.run_dir / "admin.kubeconfig"
        self.token = secrets.token_hex(24)
        self.api_port = _free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.ca_file = self.run_dir / "pki" / "ca.crt"
        self.kubelet_port = _free_port()  # kwok's kubelet endpoint (logs), on loopback
        self.app_log = self.run_dir / "app.log"
        self.previous_app_log = self.run_dir / "app-previous.log"
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    # -- life cycle -------------------------------------------------------------------

    def start(self, nodes: Iterable[NodeSpec] = DEFAULT_NODES) -> ControlPlane:
        missing = missing_binaries(self.binaries)
        if missing:
            raise ControlPlaneUnavailable(
                f"{', '.join(missing)} not built in {self.binaries}: run "
                "scripts/build_control_plane.sh (the README's test command does)"
            )
        try:
            self._pki()
            self._write_kubeconfig()
            self._start_etcd()
            self._start_apiserver()
            self._start("kube-controller-manager", self._kcm_args())
            self._start("kube-scheduler", self._scheduler_args())
            self._start("kwok", self._kwok_args())
            for spec in nodes:
                self.add_node(spec)
            self.create_namespace(SPACES_NAMESPACE)
            self._wait_ready_nodes([spec.name for spec in nodes])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for _, proc in reversed(self._processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self._processes):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._processes.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ---------------------------------------------------------------

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for the admin."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    def add_node(self, spec: NodeSpec) -> None:
        from kubernetes import client

        client.CoreV1Api(self.api_client()).create_node(spec.manifest())

    def create_namespace(self, name: str) -> None:
        """Create it and wait for its `default` service account: pods are refused until
        the controller manager has made it."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api_client())
        try:
            core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._until(
            f"the default service account of {name}",
            lambda: bool(
                core.list_namespaced_service_account(
                    name, field_selector="metadata.name=default"
                ).items
            ),
        )

    def pid_of(self, component: str) -> int:
        """The process id of a running component (benches read its CPU)."""
        for name, proc in self._processes:
            if name == component and proc.poll() is None:
                return proc.pid
        raise ControlPlaneUnavailable(f"{component} is not running")

    def log_tail(self, component: str, lines: int = 40) -> str:
        path = self.run_dir / f"{component}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def env(self) -> dict[str, str]:
        """What a Spaceport process needs to use this cluster."""
        return {
            "SPACEPORT_BACKEND": "kubernetes",
            "SPACEPORT_KUBECONFIG": str(self.kubeconfig),
            "SPACEPORT_KUBE_NAMESPACE": SPACES_NAMESPACE,
        }

    # -- parts ------------------------------------------------------------------------

    def _pki(self) -> None:
        pki = self.run_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=spaceport-test-ca",
            "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"),
        )  # fmt: skip
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
            "-keyout", str(pki / "apiserver.key"), "-out", str(pki / "apiserver.csr"),
        )  # fmt: skip
        (pki / "san.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,"
            "DNS:kubernetes.default.svc\n"
        )
        _openssl(
            "x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(pki / "ca.crt"),
            "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(pki / "san.ext"), "-out", str(pki / "apiserver.crt"),
        )  # fmt: skip
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        # token,user,uid,"groups": one admin for every component and the tests.
        (pki / "tokens.csv").write_text(
            f'{self.token},spaceport-admin,uid-admin,"system:masters"\n'
        )

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.ca_file),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.run_dir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            [str(self.binaries / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._processes.append((name, proc))
        return proc

    def _start_etcd(self) -> None:
        client_port, peer_port = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self._start(
            "etcd",
            [
                "--name=t0",
                f"--data-dir={self.run_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=t0={peer}",
                "--unsafe-no-fsync",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )
        import httpx

        self._until(
            "etcd",
            lambda: httpx.get(f"{self.etcd_url}/health", timeout=2).status_code == 200,
            component="etcd",
        )

    def _start_apiserver(self) -> None:
        pki = self.run_dir / "pki"
        self._start(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/12",
                # The "kubernetes" Endpoints object refuses a loopback address.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--watch-cache=true",
                "--v=1",
            ],
        )
        import ssl

        import httpx

        trust = ssl.create_default_context(cafile=str(self.ca_file))

        def ready() -> bool:
            answer = httpx.get(
                f"{self.server}/readyz",
                headers={"Authorization": f"Bearer {self.token}"},
                verify=trust,
                timeout=3,
            )
            return answer.status_code == 200

        self._until("kube-apiserver", ready, component="kube-apiserver")

    def _kcm_args(self) -> list[str]:
        pki = self.run_dir / "pki"
        return [
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            "--concurrent-gc-syncs=40",
            "--kube-api-qps=400",
            "--kube-api-burst=800",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        config = self.run_dir / "scheduler.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(self.kubeconfig),
                        "qps": 400,
                        "burst": 800,
                    },
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        return [f"--config={config}", "--bind-address=127.0.0.1", "--secure-port=0", "--v=1"]

    def _kwok_args(self) -> list[str]:
        config = self.run_dir / "kwok.yaml"
        # Hermetic (not ~/.kwok/kwok.yaml), with kwok's own stages: plain kwok (unlike
        # kwokctl) has no built-in ones and exits "no stages found" without them.
        documents = [path.read_text() for path in self._kwok_stages()]
        # Container logs, served by kwok's own kubelet endpoint from two files the tests
        # write (write_app_log): the apiserver's pod log API then works end to end. Every
        # node's address is 127.0.0.1 and its kubelet port kwok's, so the apiserver dials
        # only loopback; pod IPs stay made-up data from --cidr.
        self.app_log.write_text("")
        self.previous_app_log.write_text("")
        documents.append(
            yaml.safe_dump(
                {
                    "apiVersion": "kwok.x-k8s.io/v1alpha1",
                    "kind": "ClusterLogs",
                    "metadata": {"name": "app-logs"},
                    "spec": {
                        "logs": [
                            {
                                "logsFile": str(self.app_log),
                                "previousLogsFile": str(self.previous_app_log),
                                "follow": True,
                            }
                        ]
                    },
                }
            )
        )
        config.write_text("\n---\n".join(documents))
        pki = self.run_dir / "pki"
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={config}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
            "--manage-nodes-with-label-selector=",
            "--cidr=10.0.0.0/16",
            "--node-ip=127.0.0.1",
            f"--node-port={self.kubelet_port}",
            f"--server-address=127.0.0.1:{self.kubelet_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--node-lease-duration-seconds=40",
        ]

    def write_app_log(self, lines: list[str], previous: bool = False) -> None:
        """What every fake container "printed": kwok serves these lines as the log of each
        container (the previous container's with `previous`)."""
        from datetime import UTC, datetime

        path = self.previous_app_log if previous else self.app_log
        with path.open("a") as log:
            for line in lines:
                # The CRI log format a kubelet reads containers' logs in: time, stream,
                # F(ull line), text.
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                log.write(f"{stamp} stdout F {line}\n")

    def _kwok_stages(self) -> list[Path]:
        """kwok's node and pod stages (Ready nodes with leases; pods Running and Ready once
        bound, finished when deleted), which the build script keeps beside the binary."""
        stages = Path(os.path.realpath(self.binaries / "kwok")).parents[1] / "stages"
        paths = [stages / name for name in KWOK_STAGES]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ControlPlaneUnavailable(
                f"kwok's stages are missing ({', '.join(missing)}): run "
                "scripts/build_control_plane.sh, which keeps them beside kwok"
            )
        return paths

    def _wait_ready_nodes(self, names: list[str]) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())

        def all_ready() -> bool:
            ready = set()
            for node in core.list_node().items:
                taints = node.spec.taints or []
                conditions = {c.type: c.status for c in node.status.conditions or []}
                # kcm lifts the not-ready taint once kwok reports the node Ready.
                if conditions.get("Ready") == "True" and not any(
                    t.key == "node.kubernetes.io/not-ready" for t in taints
                ):
                    ready.add(node.metadata.name)
            return set(names) <= ready

        self._until("the fake nodes to be Ready", all_ready, component="kwok")

    def _until(self, what: str, check: Any, component: str | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last: Exception | None = None
        while time.monotonic() < deadline:
            for name, proc in self._processes:
                if proc.poll() is not None:
                    raise ControlPlaneUnavailable(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                        + self.log_tail(name)
                    )
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.2)
        tail = self.log_tail(component) if component else ""
        raise ControlPlaneUnavailable(
            f"timed out after {START_TIMEOUT_SECONDS:.0f} s waiting for {what} "
            f"(last error: {last!r})\n{tail}"
        )


def main() -> int:
    plane = ControlPlane().start()
    print(f"KUBECONFIG={plane.kubeconfig}", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
