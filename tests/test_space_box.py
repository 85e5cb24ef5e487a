"""Spaces in a box, against a real `spaceport up`: a running Space cannot reach metadata or
private addresses unless the operator allows them, is stopped when it writes past its disk
quota, and only starts when the host has room for its tier (admission).

Every address a Space is sent to here belongs to a network namespace this test creates, with
/32 routes pointing into it: even if the block failed, no packet would leave this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from sandbox import security
from sandbox.docker_backend import DockerBackend, forget_egress_allow, host_nameservers
from tests import services, stacks
from tests.platform import Platform, git, push, sample_checkout
from tests.stacks import STACKS

LISTEN_PORT = 8089
BLOCKED_PRIVATE = "10.213.77.2"  # a private address: refused
BLOCKED_LINK_LOCAL = "169.254.77.77"  # the metadata range (169.254.169.254's /16): refused
ALLOWED = "10.213.78.2"  # private, but on the operator's allow-list
HOST_SIDE, NS_SIDE = "10.213.79.1", "10.213.79.2"  # the link between host and namespace
TARGETS = (BLOCKED_PRIVATE, BLOCKED_LINK_LOCAL, ALLOWED)

TIERS = {"cpu-basic": {"cpu": 0.5, "memory_gib": 0.75, "disk_gib": 0.25}}
BUDGET_GIB = 1.0  # room for one cpu-basic Space of this installation, not two


@pytest.fixture(scope="module", params=STACKS)
def boxed(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[Platform]:
    """A platform with small tiers, a budget of one Space, and one allow-listed address."""
    stack = request.param
    home = Path(tempfile.mkdtemp(prefix=f"spaceport-box-{stack}-"))
    port = services.free_port()
    servers, stops = stacks.start_stack(stack, home)
    env = stacks.platform_env(
        home,
        port,
        SPACEPORT_IMAGE_PREFIX=f"spaceport-test-{stack}",
        SPACEPORT_INSTANCE=f"spaceport-test-box-{stack}-{uuid.uuid4().hex[:6]}",
        SPACEPORT_HARDWARE_OVERRIDES=json.dumps(TIERS),
        SPACEPORT_SPACES_MEMORY_GIB=str(BUDGET_GIB),
        # Other test runs on this Engine must not change what this one finds free.
        SPACEPORT_ADMISSION_COUNTS_OTHER_INSTALLATIONS="false",
        SPACEPORT_CPU_ALLOCATION_RATIO="64",
        SPACEPORT_SPACES_EGRESS_ALLOW=json.dumps([f"{ALLOWED}:{LISTEN_PORT}"]),
        SPACEPORT_SPACES_DISK_CHECK_SECONDS="1",
        **servers,
    )
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        forget_egress_allow(env["SPACEPORT_INSTANCE"])
        for stop in reversed(stops):
            stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def two_spaces(boxed: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    """alice/first RUNNING, then alice/second pushed: the token to drive them."""
    token = boxed.token("alice")
    workdir = tmp_path_factory.mktemp("box")
    push(sample_checkout("hello", workdir), boxed.git_url("alice", "first", token))
    runtime = boxed.wait_for_stage("alice", "first", token, timeout=600)
    assert runtime["stage"] == "RUNNING", runtime
    push(sample_checkout("hello", workdir), boxed.git_url("alice", "second", token))
    return token


def wait_for(check, timeout: float = 120, what: str = "") -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def container_of(platform: Platform, space: str):  # type: ignore[no-untyped-def]
    labels = [
        f"org.spaceport.instance={platform.env['SPACEPORT_INSTANCE']}",
        f"org.spaceport.space={space}",
    ]
    found = docker.from_env().containers.list(ignore_removed=True, filters={"label": labels})
    return found[0] if found else None


def test_a_space_waits_for_hardware_and_starts_when_room_frees(
    boxed: Platform, two_spaces: str
) -> None:
    def waiting() -> dict | None:
        runtime = boxed.runtime("alice", "second", two_spaces)
        return runtime if (runtime.get("errorMessage") or "").startswith("waiting") else None

    runtime = wait_for(waiting, timeout=600, what="second to wait for hardware")
    assert runtime["stage"] == "APP_STARTING", runtime
    assert runtime["errorMessage"] == (
        "waiting for hardware: cpu-basic needs 0.75 GiB of memory, 0.25 GiB free"
        " (position 1 in line)"
    )
    assert container_of(boxed, "alice/second") is None  # not started: it would not fit
    # Its visitors are told so, by the gateway, at its own host.
    wait_for(
        lambda: "is waiting for hardware" in httpx.get(boxed.app_url("alice", "second")).text,
        timeout=30,
        what="the gateway's waiting page",
    )
    paused = httpx.post(
        f"{boxed.url}/api/spaces/alice/first/pause",
        headers={"Authorization": f"Bearer {two_spaces}"},
    )
    assert paused.status_code == 200, paused.text
    runtime = boxed.wait_for_stage("alice", "second", two_spaces, timeout=300)
    assert runtime["stage"] == "RUNNING", runtime
    assert runtime["errorMessage"] is None
    assert container_of(boxed, "alice/first") is None


@pytest.fixture
def target_namespace() -> Iterator[None]:
    """A namespace answering HTTP on TARGETS, routed from the host by /32 routes."""
    suffix = uuid.uuid4().hex[:6]
    ns, host_veth, ns_veth = f"spt-box-{suffix}", f"sptb{suffix}", f"sptn{suffix}"

    def ip(*args: str, netns: bool = False) -> None:
        prefix = ["ip", "netns", "exec", ns] if netns else []
        subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)

    listener = None
    try:
        ip("netns", "add", ns)
        ip("link", "add", host_veth, "type", "veth", "peer", "name", ns_veth)
        ip("link", "set", ns_veth, "netns", ns)
        ip("addr", "add", HOST_SIDE, "peer", NS_SIDE, "dev", host_veth)
        ip("link", "set", host_veth, "up")
        ip("addr", "add", NS_SIDE, "peer", HOST_SIDE, "dev", ns_veth, netns=True)
        for address in TARGETS:
            ip("addr", "add", f"{address}/32", "dev", "lo", netns=True)
        ip("link", "set", "lo", "up", netns=True)
        ip("link", "set", ns_veth, "up", netns=True)
        ip("route", "add", "default", "via", HOST_SIDE, netns=True)
        for address in TARGETS:
            ip("route", "add", f"{address}/32", "via", NS_SIDE, "dev", host_veth)
        for address in TARGETS:  # never probe before the route into our namespace is in
            route = subprocess.run(
                ["ip", "route", "get", address], capture_output=True, text=True, check=True
            )
            assert f"dev {host_veth}" in route.stdout, route.stdout
        listener = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-m", "http.server", str(LISTEN_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def host_reaches_all() -> bool:
            try:
                return all(
                    httpx.get(f"http://{a}:{LISTEN_PORT}/", timeout=2).status_code == 200
                    for a in TARGETS
                )
            except httpx.HTTPError:
                return False

        wait_for(host_reaches_all, timeout=30, what="the namespace's listener")
        yield
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_veth], capture_output=True)  # routes go too
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


PROBE = """
import socket, sys
for address in sys.argv[2:]:
    try:
        socket.create_connection((address, int(sys.argv[1])), timeout=3).close()
        print(address, "reached")
    except OSError as exc:
        print(address, "blocked", type(exc).__name__)
"""


def test_a_space_reaches_neither_metadata_nor_private_ranges_unless_allowed(
    boxed: Platform, two_spaces: str, target_namespace: None
) -> None:
    boxed.wait_for_stage("alice", "second", two_spaces, timeout=300)
    space = wait_for(lambda: container_of(boxed, "alice/second"), what="second's container")
    result = space.exec_run(["python", "-c", PROBE, str(LISTEN_PORT), *TARGETS], user="1000")
    report = {line.split()[0]: line.split()[1] for line in result.output.decode().splitlines()}
    assert report == {
        BLOCKED_PRIVATE: "blocked",
        BLOCKED_LINK_LOCAL: "blocked",
        ALLOWED: "reached",
    }, result.output.decode()
    # ... while the gateway, from the host, still reaches the Space.
    assert httpx.get(boxed.app_url("alice", "second") + "/config").status_code == 200


def test_the_egress_rules_are_installed_once_however_often_asked(boxed: Platform) -> None:
    instance = boxed.env["SPACEPORT_INSTANCE"]
    allow = json.loads(boxed.env["SPACEPORT_SPACES_EGRESS_ALLOW"])
    for _ in range(2):  # what a restarted controller does
        DockerBackend(instance, egress_allow=allow).ensure_network()

    def rules(chain: str) -> list[str]:
        listed = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True)
        return [line for line in listed.stdout.splitlines() if line.startswith("-A")]

    dns = host_nameservers()
    assert len(rules(security.EGRESS_CHAIN)) == len(security.egress_rules(4, dns))
    jumps = [r for r in rules("DOCKER-USER") if f"-j {security.EGRESS_CHAIN}" in r]
    assert jumps == [f"-A DOCKER-USER -i spaceport0 -j {security.EGRESS_CHAIN}"]
    mine = [r for r in rules(security.EGRESS_ALLOW_CHAIN) if security.allow_comment(instance) in r]
    assert len(mine) == 2  # the one allowed address, TCP and UDP


def test_a_space_writing_past_its_disk_quota_is_stopped(boxed: Platform, two_spaces: str) -> None:
    boxed.wait_for_stage("alice", "second", two_spaces, timeout=300)
    space = wait_for(lambda: container_of(boxed, "alice/second"), what="second's container")
    # 400 MiB into the writable layer, a quarter-GiB quota: stopped within seconds.
    space.exec_run(
        ["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>/dev/null; sleep 60"],
        user="1000",
        detach=True,
    )

    def failed() -> dict | None:
        runtime = boxed.runtime("alice", "second", two_spaces)
        return runtime if runtime["stage"] == "RUNTIME_ERROR" else None

    runtime = wait_for(failed, timeout=60, what="the Space to be stopped over quota")
    assert "over the 0.25 GiB quota of cpu-basic" in runtime["errorMessage"], runtime

    # Its writable layer went with the container: nothing it wrote is left on the host.
    # (The backend stops it, then removes it: a stopped container is not yet a removed
    # one, so wait for it to leave the list of all containers, not just the running.)
    def leftovers() -> list[str]:
        found = docker.from_env().containers.list(
            ignore_removed=True,
            all=True,
            filters={"label": f"org.spaceport.instance={boxed.env['SPACEPORT_INSTANCE']}"},
        )
        return [c.name for c in found if "second" in c.name]

    wait_for(lambda: not leftovers(), timeout=30, what="removal")
    assert leftovers() == []


def test_volumes_an_image_declares_are_bounded_in_memory_not_on_the_host_disk(
    boxed: Platform, two_spaces: str, tmp_path: Path
) -> None:
    # Room for it: the Spaces of the tests above are paused or stopped by now.
    repo = sample_checkout("docker_fastapi", tmp_path)
    dockerfile = repo / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "VOLUME /home/user/data\n")
    git(repo, "commit", "-qam", "a volume")
    push(repo, boxed.git_url("alice", "volume", two_spaces))
    runtime = boxed.wait_for_stage("alice", "volume", two_spaces, timeout=600)
    assert runtime["stage"] == "RUNNING", runtime
    space = container_of(boxed, "alice/volume")
    mounts = {m["Destination"]: m["Type"] for m in space.attrs["Mounts"]}
    assert "volume" not in mounts.values(), mounts  # no anonymous volume on the host's disk
    assert space.attrs["HostConfig"]["Tmpfs"] == {"/home/user/data": "size=256m,mode=1777"}
    result = space.exec_run(
        ["sh", "-c", "dd if=/dev/zero of=/home/user/data/fill bs=1M count=400; echo rc=$?"],
        user="1000",
    )
    output = result.output.decode()
    assert "No space left on device" in output and "rc=1" in output, output
