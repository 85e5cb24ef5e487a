"""Billing with a real `spaceport up` on both stacks, real containers and huggingface_hub
(issue 12): a Space on cpu-upgrade whose owner has a few seconds of credit runs, is charged
each second (SPACEPORT_BILLING_PERIOD_SECONDS=1), falls back to cpu-basic at zero and says
why in its runtime; a paid tier is then refused with a 402 that says what to do. The
pieces: tests/unit/test_billing.py, tests/unit/test_billing_meter.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.utils import HfHubHTTPError

from sandbox.hardware import SMALL_HOST_OVERRIDES
from tests import stacks
from tests.platform import Platform, docker_checkout, push, until

OWNER = "payer"


@pytest.fixture(scope="module", params=stacks.STACKS)
def billed(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[Platform]:
    """A Spaceport that charges every second, on each stack (the charger's transaction on
    SQLite, and on PostgreSQL beside the controller's advisory lock)."""
    small = {"cpu": 0.25, "memory_gib": 0.5, "disk_gib": 2}
    with stacks.own_platform(
        "spaceport-billing-",
        request.param,
        SPACEPORT_IMAGE_PREFIX=f"spaceport-test-{request.param}",
        SPACEPORT_INSTANCE=f"spaceport-test-billing-{uuid.uuid4().hex[:6]}",
        **{
            **stacks.SMALL_SIZES,
            "SPACEPORT_HARDWARE_OVERRIDES": json.dumps(
                {**SMALL_HOST_OVERRIDES, "cpu-upgrade": small}
            ),
        },
        SPACEPORT_BILLING_PERIOD_SECONDS="1",
    ) as platform:
        yield platform


def test_a_space_runs_on_its_credit_then_falls_back_to_cpu_basic_and_says_why(
    billed: Platform, workdir: Path
) -> None:
    token = billed.token(OWNER)
    hub = HfApi(endpoint=billed.url, token=token)
    with pytest.raises(HfHubHTTPError) as refused:  # no credit yet
        hub.create_repo(
            f"{OWNER}/paid", repo_type="space", space_sdk="docker", space_hardware="cpu-upgrade"
        )
    assert refused.value.response.status_code == 402
    assert f"spaceport credit grant {OWNER} 10" in str(refused.value)

    # $0.0002 is 24 s of cpu-upgrade ($0.03/hour).
    assert billed.cli("credit", "grant", OWNER, "0.0002").strip() == f"{OWNER}\t$0.0002"
    hub.create_repo(
        f"{OWNER}/paid", repo_type="space", space_sdk="docker", space_hardware="cpu-upgrade"
    )
    push(docker_checkout(workdir, "paid"), billed.git_url(OWNER, "paid", token))

    def usage() -> dict:
        return billed.api("/api/billing/usage", token).json()

    until("the credit used up", lambda: usage()["balanceMicroUSD"] <= 0)
    until(
        "the fall back to cpu-basic",
        lambda: hub.get_space_runtime(f"{OWNER}/paid").requested_hardware == "cpu-basic",
    )
    runtime = hub.get_space_runtime(f"{OWNER}/paid")
    notice = runtime.raw["hardwareNotice"]
    assert notice.startswith(f"Moved from cpu-upgrade to cpu-basic: {OWNER} ran out of credit")
    assert f"spaceport credit grant {OWNER} 10" in notice

    entries = usage()["entries"]
    charges = [e for e in entries if e["kind"] == "charge"]
    assert charges and all(c["hardware"] == "cpu-upgrade" for c in charges)
    assert sum(-c["amountMicroUSD"] for c in charges) >= 200
    assert [e["kind"] for e in entries if e["kind"] == "fallback"] == ["fallback"]
    page = billed.api(f"/api/spaces/{OWNER}/paid/events?limit=500", token).json()
    kinds = [e["kind"] for e in page["events"]]
    assert "billing.out_of_credit" in kinds

    # It keeps running, free; and nothing more is charged once it is on cpu-basic.
    until(
        "running on cpu-basic",
        lambda: (
            (r := billed.runtime(OWNER, "paid", token))["stage"] == "RUNNING"
            and r["hardware"]["current"] == "cpu-basic"
        ),
    )
    exported = billed.api("/api/billing/usage.csv", token).text.splitlines()
    assert exported[0].startswith("id,at,kind,amount_usd") and len(exported) >= 4

    with pytest.raises(HfHubHTTPError) as again:
        hub.request_space_hardware(f"{OWNER}/paid", "t4-small")
    assert again.value.response.status_code == 402
    assert "t4-small costs $0.40/hour" in str(again.value)
