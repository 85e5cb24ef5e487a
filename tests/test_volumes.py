"""Volumes end to end, with the real huggingface_hub client and a real Space container on
both stacks: a bucket made with create_bucket and mounted through create_repo's
space_volumes keeps the files the app writes across a restart, a rebuild (a new commit) and
a pause and restart (the deep sleep's stop: a sleep stops the container the same way);
another Space's files are mounted read-only at a revision; `model` is a clear 400;
set_space_volumes, delete_space_volumes and duplicate_repo(space_volumes=) do what they say;
the controller measures the bucket (bucket_info's size), and once the bucket and the Spaces
mounting it are deleted, its Docker volume is removed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import docker
import httpx
import pytest
from huggingface_hub import HfApi, Volume
from huggingface_hub.errors import HfHubHTTPError

from tests.platform import Platform, until

OWNER = "vol"
README = "---\ntitle: volumes\nsdk: docker\napp_port: 7860\n---\n"
DOCKERFILE = (
    "FROM python:3.11-slim\n"
    "RUN useradd -m -u 1000 user\n"
    "USER user\n"
    "WORKDIR /home/user/app\n"
    "COPY --chown=user . .\n"
    'CMD ["python", "app.py"]\n'
)
# Appends this build's mark to the bucket at each start; answers what it sees.
APP = """
import http.server, json, os
mark = open("mark.txt").read().strip()
with open("/data/boots", "a") as f:
    f.write(mark + "\\n")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            open("/weights/new", "w")
            weights_writable = True
        except OSError:
            weights_writable = False
        body = json.dumps({
            "boots": open("/data/boots").read().split(),
            "weights": open("/weights/model.txt").read(),
            "weights_writable": weights_writable,
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("", 7860), Handler).serve_forever()
"""


def _answer(platform: Platform, name: str, boots: int, timeout: float = 600) -> dict:
    """The app's answer once the bucket holds `boots` starts."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(platform.app_url(OWNER, name), timeout=10)
            if response.status_code == 200 and "boots" in response.text:
                last = response.json()
                if len(last["boots"]) >= boots:  # type: ignore[index]
                    return last  # type: ignore[return-value]
            else:
                last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(
        f"{OWNER}/{name} never showed {boots} boots: {last}\n{platform.log_tail()}"
    )


def _bucket_volumes(platform: Platform) -> list[str]:
    """The Docker volumes of the platform's buckets."""
    label = f"org.spaceport.instance={platform.instance}"
    prefix = f"spaceport-{platform.instance}-bucket-"
    volumes = docker.from_env().volumes.list(filters={"label": label})
    return [v.name for v in volumes if v.name and v.name.startswith(prefix)]


@pytest.fixture
def api(platform: Platform) -> Iterator[tuple[HfApi, str]]:
    token = platform.token(OWNER)
    yield HfApi(endpoint=platform.url, token=token), token


def test_a_bucket_and_another_spaces_files_through_the_client(
    platform: Platform, api: tuple[HfApi, str]
) -> None:
    hf, token = api
    suffix = uuid.uuid4().hex[:6]
    bucket, app, weights, copy = (f"{n}-{suffix}" for n in ("store", "app", "weights", "copy"))
    try:
        url = hf.create_bucket(f"{OWNER}/{bucket}", private=True)
        assert url.bucket_id == f"{OWNER}/{bucket}"
        assert hf.bucket_info(f"{OWNER}/{bucket}").private is True
        assert [b.id for b in hf.list_buckets(OWNER)] == [f"{OWNER}/{bucket}"]

        hf.create_repo(f"{OWNER}/{weights}", repo_type="space", space_sdk="gradio")
        hf.upload_file(
            path_or_fileobj=b"weights v1\n",
            path_in_repo="model.txt",
            repo_id=f"{OWNER}/{weights}",
            repo_type="space",
        )
        volumes = [
            Volume(type="bucket", source=f"{OWNER}/{bucket}", mount_path="/data"),
            Volume(type="space", source=f"{OWNER}/{weights}", mount_path="/weights"),
        ]
        hf.create_repo(
            f"{OWNER}/{app}", repo_type="space", space_sdk="docker", space_volumes=volumes
        )
        shown = hf.get_space_runtime(f"{OWNER}/{app}").volumes
        assert shown is not None
        assert [(v.type, v.source, v.mount_path, v.read_only) for v in shown] == [
            ("bucket", f"{OWNER}/{bucket}", "/data", False),
            ("space", f"{OWNER}/{weights}", "/weights", True),
        ]
        files = {"README.md": README, "Dockerfile": DOCKERFILE, "app.py": APP, "mark.txt": "b1"}
        for path, text in files.items():
            hf.upload_file(
                path_or_fileobj=text.encode(),
                path_in_repo=path,
                repo_id=f"{OWNER}/{app}",
                repo_type="space",
            )
        first = _answer(platform, app, 1)
        assert first["boots"] == ["b1"]
        assert first["weights"] == "weights v1\n"
        assert first["weights_writable"] is False

        hf.restart_space(f"{OWNER}/{app}")
        assert _answer(platform, app, 2)["boots"] == ["b1", "b1"]

        hf.upload_file(  # a rebuild: a new image, the same bucket
            path_or_fileobj=b"b2",
            path_in_repo="mark.txt",
            repo_id=f"{OWNER}/{app}",
            repo_type="space",
        )
        assert _answer(platform, app, 3)["boots"] == ["b1", "b1", "b2"]

        hf.pause_space(f"{OWNER}/{app}")
        assert platform.wait_for_stage(OWNER, app, token, stages={"PAUSED"})["stage"] == "PAUSED"
        hf.restart_space(f"{OWNER}/{app}")
        assert _answer(platform, app, 4)["boots"] == ["b1", "b1", "b2", "b2"]

        # What this platform cannot serve is refused clearly, and nothing changes.
        with pytest.raises(HfHubHTTPError) as refused:
            hf.set_space_volumes(
                f"{OWNER}/{app}", [Volume(type="model", source="x/y", mount_path="/m")]
            )
        assert refused.value.response.status_code == 400
        assert "no models" in refused.value.response.json()["error"]
        assert len(hf.get_space_runtime(f"{OWNER}/{app}").volumes or []) == 2

        # A bucket in use is not deleted; a copy may mount it too (the owner duplicates).
        with pytest.raises(HfHubHTTPError) as in_use:
            hf.delete_bucket(f"{OWNER}/{bucket}")
        assert in_use.value.response.status_code == 409
        hf.duplicate_repo(
            f"{OWNER}/{app}",
            to_id=f"{OWNER}/{copy}",
            repo_type="space",
            space_volumes=[Volume(type="bucket", source=f"{OWNER}/{bucket}", mount_path="/data")],
        )
        copied = hf.get_space_runtime(f"{OWNER}/{copy}").volumes or []
        assert [(v.type, v.mount_path) for v in copied] == [("bucket", "/data")]

        hf.set_space_volumes(
            f"{OWNER}/{app}",
            [Volume(type="bucket", source=f"{OWNER}/{bucket}", mount_path="/data")],
        )
        assert len(hf.get_space_runtime(f"{OWNER}/{app}").volumes or []) == 1
        hf.delete_space_volumes(f"{OWNER}/{app}")
        assert hf.get_space_runtime(f"{OWNER}/{app}").volumes is None

        # The controller's sweep measured what the app wrote (Spaceport's own fields too).
        until(
            "the bucket measured", lambda: hf.bucket_info(f"{OWNER}/{bucket}").size > 0, timeout=60
        )
        info = hf.bucket_info(f"{OWNER}/{bucket}")
        assert info.sizeQuota == 10 * 2**30 and info.overQuota is False  # type: ignore[attr-defined]

        # Deleted, with the Spaces that mounted it, the bucket's data goes from the Engine.
        (volume,) = _bucket_volumes(platform)
        for name in (app, weights, copy):
            platform.delete_space(OWNER, name, token)
        hf.delete_bucket(f"{OWNER}/{bucket}")
        until(f"{volume} removed", lambda: volume not in _bucket_volumes(platform), timeout=60)
    finally:
        for name in (app, weights, copy):
            platform.delete_space(OWNER, name, token)
        hf.delete_bucket(f"{OWNER}/{bucket}", missing_ok=True)
