"""Run and visit, end to end: pushed Spaces run in containers and answer through the gateway
at their own host, with the real gradio_client; the controller survives a crash; a Space
is boxed in."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import pytest
import websockets.sync.client
from gradio_client import Client, handle_file
from huggingface_hub import HfApi
from PIL import Image

from tests.platform import Platform, commit_change, push, sample_checkout


@pytest.fixture(scope="module")
def bob(platform: Platform) -> str:
    return platform.token("bob")


@pytest.fixture(scope="module")
def running(platform: Platform, bob: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """hello, streaming_chatbot and image_filter pushed by bob and RUNNING."""
    workdir = tmp_path_factory.mktemp("run")
    repos = {}
    for sample in ("hello", "streaming_chatbot", "image_filter"):
        name = sample.replace("_", "-")
        repos[name] = sample_checkout(sample, workdir)
        push(repos[name], platform.git_url("bob", name, bob))
    for name in repos:
        runtime = platform.wait_for_stage("bob", name, timeout=300)
        assert runtime["stage"] == "RUNNING", runtime
    return repos


def containers_of(platform: Platform, space: str) -> list:
    client = docker.from_env()
    labels = [
        f"org.spaceport.instance={platform.env['SPACEPORT_INSTANCE']}",
        f"org.spaceport.space={space}",
    ]
    return client.containers.list(ignore_removed=True, filters={"label": labels})


def test_space_info_points_at_its_host(platform: Platform, running: dict) -> None:
    info = platform.api("/api/spaces/bob/hello").json()
    assert info["host"] == platform.app_url("bob", "hello")
    assert info["subdomain"] == "bob-hello"
    runtime = platform.runtime("bob", "hello")
    assert runtime["hardware"] == {"current": "cpu-basic", "requested": "cpu-basic"}
    assert runtime["domains"][0]["domain"] == f"bob-hello.localhost:{platform.port}"


def test_gradio_client_predicts_through_the_gateway(platform: Platform, running: dict) -> None:
    client = Client(platform.app_url("bob", "hello"), verbose=False)
    assert client.predict("World", api_name="/predict") == "Hello, World!"


def test_streaming_reaches_the_visitor_while_the_generator_runs(
    platform: Platform, running: dict
) -> None:
    client = Client(platform.app_url("bob", "streaming-chatbot"), verbose=False)
    job = client.submit("hi", api_name="/chat")
    first_chunk_while_running = None
    chunks = 0
    for _output in job:
        chunks += 1
        if first_chunk_while_running is None:
            first_chunk_while_running = not job.done()
    assert first_chunk_while_running is True, "the first chunk came only after the end"
    assert chunks > 3
    assert "You said: hi." in job.outputs()[-1]


def test_image_upload_comes_back_filtered(
    platform: Platform, running: dict, tmp_path: Path
) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (2, 1), "white").save(source)
    with Image.open(source) as image:
        image.putpixel((1, 0), (0, 0, 0))
        image.save(source)
    client = Client(platform.app_url("bob", "image-filter"), verbose=False)
    result = client.predict(handle_file(str(source)), api_name="/predict")
    with Image.open(result) as filtered:
        pixels = [filtered.convert("L").getpixel((x, 0)) for x in range(2)]
    assert pixels == [0, 255]  # grayscale, inverted


def test_space_environment(platform: Platform, running: dict) -> None:
    (container,) = containers_of(platform, "bob/hello")
    env = container.exec_run(["env"], user="1000").output.decode()
    for expected in (
        "SPACE_ID=bob/hello",
        "SPACE_AUTHOR_NAME=bob",
        "SPACE_REPO_NAME=hello",
        "SPACE_TITLE=Hello",
        f"SPACE_HOST=bob-hello.localhost:{platform.port}",
        # cpu-basic as the tests size it (SMALL_HOST_OVERRIDES, in conftest's platform env)
        "CPU_CORES=0.5",
        "MEMORY=0.5Gi",
        "ACCELERATOR=none",
        "GRADIO_SERVER_NAME=0.0.0.0",
        "GRADIO_SERVER_PORT=7860",
    ):
        assert expected in env.splitlines(), expected
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 2**29
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
    assert host["PidsLimit"] > 0


def test_unknown_space_and_waiting_space_pages(platform: Platform, running: dict) -> None:
    missing = httpx.get(platform.app_url("bob", "nothing-here"))
    assert missing.status_code == 404 and "no Space here" in missing.text
    broken = platform.app_url("alice", "broken-readme")
    page = httpx.get(broken)
    if page.status_code != 404:  # pushed by test_push_to_build when the suites share a run
        assert page.status_code == 503 and "CONFIG_ERROR" in page.text


def test_code_only_push_switches_without_downtime(
    platform: Platform, running: dict, bob: str
) -> None:
    repo = running["hello"]
    url = platform.app_url("bob", "hello")
    statuses: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                statuses.append(client.get(url + "/config").status_code)
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        app = (repo / "app.py").read_text().replace('f"Hello, {name}!"', 'f"Hi there, {name}!"')
        assert "Hi there" in app
        commit_change(repo, "app.py", app)
        push(repo, platform.git_url("bob", "hello", bob))
        client = None
        runtime: dict = {}
        answer = None
        deadline = time.monotonic() + 300  # a full CI run loads the machine
        while time.monotonic() < deadline:
            runtime = platform.runtime("bob", "hello")
            if runtime["stage"] == "RUNNING":
                client = Client(url, verbose=False)
                answer = client.predict("World", api_name="/predict")
                if answer == "Hi there, World!":
                    break
            time.sleep(0.5)
        else:
            containers = [(c.name, c.status) for c in containers_of(platform, "bob/hello")]
            raise AssertionError(
                f"new revision never served: runtime {runtime}, last answer {answer!r}, "
                f"containers {containers}, builds {platform.builds('bob', 'hello', bob)[:2]}\n"
                f"{platform.log_tail()}"
            )
        time.sleep(1)
    finally:
        stop.set()
        poller.join()
    assert len(statuses) > 20
    assert set(statuses) == {200}, f"visitors saw {sorted(set(statuses))}"
    deadline = time.monotonic() + 30
    while len(containers_of(platform, "bob/hello")) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(containers_of(platform, "bob/hello")) == 1


def test_crash_ends_in_runtime_error_with_traceback(
    platform: Platform, running: dict, bob: str, workdir: Path
) -> None:
    push(sample_checkout("crash_at_start", workdir), platform.git_url("bob", "crasher", bob))
    runtime = platform.wait_for_stage("bob", "crasher", timeout=300)
    assert runtime["stage"] == "RUNTIME_ERROR"
    assert "model weights not found" in runtime["errorMessage"]
    with httpx.stream(
        "GET", f"{platform.url}/api/spaces/bob/crasher/logs/run", params={"follow": "false"}
    ) as response:
        lines = [
            json.loads(line[6:])["data"]
            for line in response.iter_lines()
            if line.startswith("data: {")
        ]
    log = "\n".join(lines)
    assert "Traceback (most recent call last)" in log and "RuntimeError" in log
    # Everyone else is unaffected.
    assert platform.runtime("bob", "hello")["stage"] == "RUNNING"
    assert httpx.get(platform.app_url("bob", "hello") + "/config").status_code == 200


def test_controller_killed_and_restarted_adopts_running_spaces(
    platform: Platform, running: dict
) -> None:
    names = ["bob/hello", "bob/streaming-chatbot", "bob/image-filter"]
    before = {name: [c.id for c in containers_of(platform, name)] for name in names}
    assert all(len(ids) == 1 for ids in before.values()), before
    platform.kill()
    platform.start()
    time.sleep(5)  # a few reconcile passes
    for name in names:
        owner, space = name.split("/")
        assert platform.runtime(owner, space)["stage"] == "RUNNING"
        assert [c.id for c in containers_of(platform, name)] == before[name]
    client = Client(platform.app_url("bob", "hello"), verbose=False)
    assert client.predict("World", api_name="/predict").endswith("World!")


PROBE = """
import os, socket, sys
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "reached"
    except OSError as exc:
        return "blocked"
print("docker.sock", os.path.exists("/var/run/docker.sock"))
for name, host, port in [tuple(a.split(":")) for a in sys.argv[1:]]:
    print(name, reach(host, int(port)))
status = open("/proc/self/status").read()
print("uid", os.getuid())
print("CapEff", [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0])
print("NoNewPrivs", [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")][0])
"""


def test_a_space_is_boxed_in(platform: Platform, running: dict) -> None:
    (hello,) = containers_of(platform, "bob/hello")
    (other,) = containers_of(platform, "bob/image-filter")
    network = hello.attrs["NetworkSettings"]["Networks"]["spaceport-spaces"]
    host_ip = network["Gateway"]
    other_ip = other.attrs["NetworkSettings"]["Networks"]["spaceport-spaces"]["IPAddress"]
    # A controller service bound on every interface of the host, as a careless operator
    # might bind the database: the Space must still not reach it.
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    open_port = listener.getsockname()[1]
    targets = [
        f"open-host-port:{host_ip}:{open_port}",
        f"other-space:{other_ip}:7860",
    ]
    for variable in ("SPACEPORT_DATABASE_URL", "SPACEPORT_BROKER_URL"):
        if url := platform.env.get(variable):  # PostgreSQL and Redis, on the second stack
            port = httpx.URL(url.replace("postgresql+psycopg", "postgresql")).port
            targets.append(f"{variable}:{host_ip}:{port}")
    try:
        result = hello.exec_run(["python", "-c", PROBE, *targets], user="1000")
    finally:
        listener.close()
    report = dict(line.split(" ", 1) for line in result.output.decode().splitlines())
    assert report["docker.sock"] == "False"
    for target in targets:
        assert report[target.split(":")[0]] == "blocked", report
    assert report["uid"] == "1000"
    assert report["CapEff"] == "0000000000000000"
    assert report["NoNewPrivs"] == "1"
    # The API's port on the host answers a Space only as the sign-in door: the provider's
    # machine endpoints, and a 404 for the API, the pages and other Spaces' hosts.
    door = hello.exec_run(["python", "-c", DOOR_PROBE, f"http://{host_ip}:{platform.port}"])
    answers = dict(line.split(" ", 1) for line in door.output.decode().splitlines())
    assert answers == {
        "/.well-known/openid-configuration": "200",
        "/api/health": "404",
        "/api/whoami-v2": "404",
        "/": "404",
        "other-space-host": "404",
    }, door.output
    # ... while the gateway, from the host, still reaches it.
    assert httpx.get(platform.app_url("bob", "hello") + "/config").status_code == 200


DOOR_PROBE = """
import sys, urllib.request, urllib.error
base = sys.argv[1]
def status(path, host=None):
    request = urllib.request.Request(base + path, headers={"Host": host} if host else {})
    try:
        return urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code
for path in ("/.well-known/openid-configuration", "/api/health", "/api/whoami-v2", "/"):
    print(path, status(path))
print("other-space-host", status("/config", host="bob-image-filter.localhost"))
"""


@pytest.fixture(scope="module")
def docker_space(platform: Platform, bob: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = sample_checkout("docker_fastapi", tmp_path_factory.mktemp("docker-space"))
    push(repo, platform.git_url("bob", "docker-app", bob))
    runtime = platform.wait_for_stage("bob", "docker-app", timeout=300)
    assert runtime["stage"] == "RUNNING", runtime
    return platform.app_url("bob", "docker-app")


def test_a_docker_space_on_its_own_port(docker_space: str) -> None:
    assert httpx.get(docker_space + "/").json() == {"message": "Hello from a docker Space"}
    assert httpx.get(docker_space + "/env/SPACE_ID").json() == "bob/docker-app"


def test_large_upload_streams_through(docker_space: str) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB
    chunks = 64

    def body():  # a generator: httpx streams it chunked, nothing is held in memory
        yield from (chunk for _ in range(chunks))

    expected = hashlib.sha256(chunk * chunks).hexdigest()
    response = httpx.post(docker_space + "/upload", content=body(), timeout=120)
    assert response.json() == {"size": len(chunk) * chunks, "sha256": expected}


def test_websockets_pass_through(docker_space: str) -> None:
    url = "ws" + docker_space.removeprefix("http") + "/ws"
    with websockets.sync.client.connect(url, open_timeout=10) as websocket:
        for message in ("ping", "x" * 100_000):
            websocket.send(message)
            assert websocket.recv(timeout=10) == "echo: " + message


def test_huggingface_hub_log_and_wait_calls(platform: Platform, running: dict, bob: str) -> None:
    """fetch_space_logs and wait_for_space of the unmodified huggingface_hub, as its source
    uses them: without `follow` it reads what is logged so far and returns (it stops at 5 s
    of silence or at the first line written after the answer's Date); with it, a finished
    build's log ends and a run log goes on."""
    api = HfApi(endpoint=platform.url, token=bob)
    asked = datetime.now(UTC)
    started = time.monotonic()
    build = list(api.fetch_space_logs("bob/hello", build=True))
    assert any(line.startswith("----->") for line in build), build[:5]
    assert list(api.fetch_space_logs("bob/hello", build=True, follow=True)) == build
    run = list(api.fetch_space_logs("bob/hello"))
    assert any("Running on local URL" in line for line in run), run
    assert time.monotonic() - started < 60
    followed = api.fetch_space_logs("bob/hello", follow=True)
    assert next(iter(followed)) == run[0]
    followed.close()  # type: ignore[attr-defined]
    # Each line carries the time the app wrote it (Docker's log timestamp), not the time
    # it was read: the app started before this test asked.
    with httpx.stream(
        "GET",
        f"{platform.url}/api/spaces/bob/hello/logs/run",
        params={"follow": "false"},
        headers={"authorization": f"Bearer {bob}"},
        timeout=30,
    ) as answer:
        first = next(line for line in answer.iter_lines() if line.startswith("data: {"))
    written = datetime.fromisoformat(json.loads(first.removeprefix("data: "))["timestamp"])
    assert written < asked, (written, asked)

    api.restart_space("bob/hello")
    deadline = time.monotonic() + 60
    while api.get_space_runtime("bob/hello").stage == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)  # until the controller has seen the restart (it starts a new instance)
    runtime = api.wait_for_space("bob/hello", timeout=300, poll_interval=0.5)
    assert runtime.stage == "RUNNING", runtime
    client = Client(platform.app_url("bob", "hello"), verbose=False)
    assert client.predict("World", api_name="/predict").endswith("World!")
