"""The hardware catalogue file: the shipped one, validation that names tier and field, and
an operator's edit taking effect without a restart (a broken edit keeps the last good)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from sandbox import catalogue
from sandbox.catalogue import CatalogueError, Live, parse
from sandbox.hardware import (
    CATALOGUE,
    UnknownHardware,
    UnsupportedHardware,
    requestable_tier,
)
from tests.unit import test_api_events as shared

api, Api = shared.api, shared.Api
SHIPPED = catalogue.shipped_path().read_text()


def test_the_shipped_file_is_the_catalogue() -> None:
    tiers = parse(SHIPPED, "shipped")
    assert list(tiers) == list(CATALOGUE)
    basic = tiers["cpu-basic"]
    assert (basic.cpu, basic.memory_gib, basic.default_sleep_seconds) == (2, 16, 172_800)
    assert all(t.default_sleep_seconds is None for t in tiers.values() if not t.is_free)
    assert tiers["t4-small"].gpu == "T4" and tiers["t4-small"].gpu_count == 1
    assert not tiers["zero-a10g"].supported


def test_an_unsupported_tier_is_refused_with_what_to_do() -> None:
    with pytest.raises(UnsupportedHardware, match="not available.*choose one of cpu-basic"):
        requestable_tier("zero-a10g")
    assert requestable_tier("t4-small").name == "t4-small"
    with pytest.raises(UnknownHardware):
        requestable_tier("h100-huge")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (("cpu: 4\n", "cpu: -1\n"), "tier t4-small: cpu: Input should be greater than 0"),
        (("    concurrency: 4\n", "    concurrency: 4\n    colour: red\n"), "colour"),
        (("tiers:\n", "tiers: [\n"), "not YAML"),
        (("  cpu-basic:\n", "  cpu-basicx:\n"), "tier cpu-basic must be listed"),
    ],
)
def test_a_broken_file_names_tier_and_field(edit: tuple[str, str], says: str) -> None:
    with pytest.raises(CatalogueError, match=says):
        parse(SHIPPED.replace(*edit, 1), "mine.yaml")


def test_a_bad_toleration_names_the_tier() -> None:
    text = SHIPPED.replace("operator: Exists", "operator: Sometimes", 1)
    with pytest.raises(CatalogueError, match=r"tier zero-a10g: .*operator must be Equal or"):
        parse(text, "mine.yaml")


def test_an_edit_takes_effect_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hardware.yaml"
    path.write_text(SHIPPED)
    monkeypatch.setenv(catalogue.ENV, str(path))
    live = Live()
    assert live.tiers()["t4-small"].unit_cost_usd_per_hour == 0.40
    path.write_text(SHIPPED.replace("price_usd_per_hour: 0.40", "price_usd_per_hour: 0.45"))
    os.utime(path, ns=(1, 1))  # a new mtime even within the clock's resolution
    assert live.refresh()["t4-small"].unit_cost_usd_per_hour == 0.45
    path.write_text(SHIPPED.replace("cpu: 4\n", "cpu: nope\n", 1))
    os.utime(path, ns=(2, 2))
    assert live.refresh()["t4-small"].unit_cost_usd_per_hour == 0.45  # the last good
    assert live.problem is not None and "tier t4-small: cpu" in live.problem
    path.unlink()
    assert "t4-small" in live.refresh()
    assert "cannot read it" in (live.problem or "")


def test_the_first_read_of_a_broken_file_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hardware.yaml"
    path.write_text("tiers: {}\n")
    monkeypatch.setenv(catalogue.ENV, str(path))
    with pytest.raises(CatalogueError, match="tiers"):
        Live().tiers()


def test_the_api_serves_an_edited_catalogue_without_a_restart(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "operator-hardware.yaml"
    path.write_text(SHIPPED)
    monkeypatch.setenv(catalogue.ENV, str(path))
    catalogue.LIVE.refresh()
    try:
        listed = {t["name"]: t for t in api.get("/api/spaces/hardware").json()}
        assert listed["t4-small"]["unitCostUSD"] == 0.40
        path.write_text(SHIPPED.replace("price_usd_per_hour: 0.40", "price_usd_per_hour: 0.45"))
        os.utime(path, ns=(1, 1))
        deadline = time.monotonic() + catalogue.CHECK_SECONDS + 5
        while time.monotonic() < deadline:
            listed = {t["name"]: t for t in api.get("/api/spaces/hardware").json()}
            if listed["t4-small"]["unitCostUSD"] == 0.45:
                break
            time.sleep(0.2)
        assert listed["t4-small"]["unitCostUSD"] == 0.45
        flavors = HfApi(endpoint=api.url).list_spaces_hardware()  # type: ignore[attr-defined]
        assert "t4-small" in {getattr(f, "name", f) for f in flavors}
    finally:
        monkeypatch.delenv(catalogue.ENV)
        catalogue.LIVE.refresh()


def test_requesting_an_unsupported_tier_is_a_400(api: Api) -> None:
    refused = httpx.post(
        f"{api.url}/api/spaces/alice/demo/hardware",
        json={"flavor": "zero-a10g"},
        headers={"authorization": f"Bearer {api.alice}"},
        timeout=10,
    )
    assert refused.status_code == 400
    assert "not available on this Spaceport installation" in refused.text
