"""The life of a Space, driven by the real, unmodified huggingface_hub and gradio_client.

Run as a separate process by tests/test_hub_api.py, because both clients read HF_ENDPOINT
when they are imported. Prints one JSON line per step; any failed expectation raises.
usage: HF_ENDPOINT=... python hub_client_scenario.py OWNER TOKEN OTHER_TOKEN SAMPLE_DIR
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gradio_client import Client
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

ENV_APP = """import os

import gradio as gr


def greet(name):
    secret = os.environ.get("SECRET_WORD", "")
    return f"{os.environ.get('GREETING', 'Hello')}, {name}! (secret of {len(secret)} letters)"


demo = gr.Interface(fn=greet, inputs="text", outputs="text", api_name="predict")

if __name__ == "__main__":
    demo.launch()
"""


def report(step: str, **values: object) -> None:
    print(json.dumps({"step": step, **values}), flush=True)


def wait_for(api: HfApi, repo_id: str, stages: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    stage = ""
    while time.monotonic() < deadline:
        stage = api.get_space_runtime(repo_id).stage
        if stage in stages:
            return stage
        time.sleep(0.5)
    raise AssertionError(f"{repo_id} still {stage} after {timeout} s")


def predict(repo_id: str, token: str, text: str = "World") -> str:
    return Client(repo_id, token=token, verbose=False).predict(text, api_name="/predict")


def main(owner: str, token: str, other_token: str, sample: Path) -> None:
    api = HfApi(token=token)
    other = HfApi(token=other_token)
    endpoint = os.environ["HF_ENDPOINT"]
    repo_id = f"{owner}/demo"

    report("whoami", name=api.whoami()["name"])

    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    again = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
        conflict = None
    except HfHubHTTPError as exc:
        conflict = exc.response.status_code
    report(
        "create",
        url=str(url),
        again=str(again),
        conflict=conflict,
        exists=api.repo_exists(repo_id, repo_type="space"),
    )

    commit = api.upload_folder(folder_path=str(sample), repo_id=repo_id, repo_type="space")
    stage = wait_for(api, repo_id, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    report(
        "upload_folder",
        commit=commit.oid,
        stage=stage,
        answer=predict(repo_id, token) if stage == "RUNNING" else None,
    )

    started = time.monotonic()
    copy_id = f"{owner}/demo-copy"
    copy_url = api.duplicate_repo(repo_id, to_id=copy_id, repo_type="space")
    copy_stage = wait_for(api, copy_id, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    report(
        "duplicate",
        url=str(copy_url),
        stage=copy_stage,
        seconds=round(time.monotonic() - started, 2),
        duplicated_from=api.space_info(copy_id).cardData and None,
        answer=predict(copy_id, token) if copy_stage == "RUNNING" else None,
    )

    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(ENV_APP)
        api.upload_file(
            path_or_fileobj=str(app), path_in_repo="app.py", repo_id=repo_id, repo_type="space"
        )
    api.add_space_secret(repo_id, "SECRET_WORD", "swordfish")
    api.add_space_variable(repo_id, "GREETING", "Howdy")
    variables = {k: v.value for k, v in api.get_space_variables(repo_id).items()}
    answer = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if api.get_space_runtime(repo_id).stage == "RUNNING":
            try:
                answer = predict(repo_id, token)
            except Exception:  # noqa: BLE001 - between two revisions: try again
                answer = ""
            if answer.startswith("Howdy"):
                break
        time.sleep(1)
    report("secret_and_variable", variables=variables, answer=answer)

    api.pause_space(repo_id)
    paused = api.get_space_runtime(repo_id).stage
    host = api.space_info(repo_id).host
    time.sleep(3)  # the controller stops it within a pass
    page = httpx.get(host + "/config", timeout=10).status_code
    api.restart_space(repo_id)
    restarted = wait_for(api, repo_id, {"RUNNING", "RUNTIME_ERROR"})
    report(
        "pause_restart",
        paused=paused,
        page_while_paused=page,
        restarted=restarted,
        answer=predict(repo_id, token),
    )

    moved_id = f"{owner}/demo-moved"
    old_host = api.space_info(repo_id).host
    api.move_repo(repo_id, moved_id, repo_type="space")
    # The product's promise: not RUNNING until the app restarted under its new host answers
    # there, so RUNNING is the one thing to wait for before calling it.
    stage_after_move = api.get_space_runtime(moved_id).stage
    moved_stage = wait_for(api, moved_id, {"RUNNING", "RUNTIME_ERROR"})
    redirect = httpx.get(old_host + "/config?x=1", timeout=10)
    report(
        "move",
        old_exists=api.repo_exists(repo_id, repo_type="space"),
        old_id_answers=api.space_info(repo_id).id,  # the old id redirects, as on the Hub
        stage_after_move=stage_after_move,
        new_stage=moved_stage,
        answer=predict(moved_id, token),
        new_host=api.space_info(moved_id).host,
        old_host_status=redirect.status_code,
        old_host_location=redirect.headers.get("location"),
    )

    forbidden: object = None
    try:
        other.delete_repo(moved_id, repo_type="space")
    except RepositoryNotFoundError:
        forbidden = "RepositoryNotFoundError"
    except HfHubHTTPError as exc:
        forbidden = exc.response.status_code
    api.update_repo_settings(copy_id, repo_type="space", private=True)
    try:
        other.space_info(copy_id)
        hidden = False
    except RepositoryNotFoundError:
        hidden = True
    report("not_yours", delete_status=forbidden, private_hidden=hidden)

    api.delete_repo(moved_id, repo_type="space")
    api.delete_repo(moved_id, repo_type="space", missing_ok=True)
    try:
        api.delete_repo(moved_id, repo_type="space")
        missing = None
    except RepositoryNotFoundError:
        missing = "RepositoryNotFoundError"
    report(
        "delete",
        exists=api.repo_exists(moved_id, repo_type="space"),
        missing=missing,
        endpoint=endpoint,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
