"""The hardware catalogue: names, sizes, prices and the /api/spaces/hardware item shape."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sandbox.hardware import (
    CATALOGUE,
    DEFAULT_HARDWARE,
    GPU_TOLERATION,
    HardwareTier,
    Toleration,
    UnknownHardware,
    get_tier,
    sized_tier,
    validate_overrides,
)

SPACES_FLAVORS = {
    "cpu-basic",
    "cpu-upgrade",
    "zero-a10g",
    "t4-small",
    "t4-medium",
    "l4x1",
    "l4x4",
    "l40sx1",
    "l40sx4",
    "l40sx8",
    "a10g-small",
    "a10g-large",
    "a10g-largex2",
    "a10g-largex4",
    "a100-large",
    "a100x4",
    "a100x8",
}
CPU_ONLY = {"cpu-basic", "cpu-upgrade"}


def test_catalogue_has_exactly_the_spaces_flavors() -> None:
    assert set(CATALOGUE) == SPACES_FLAVORS


def test_catalogue_keys_are_tier_names() -> None:
    for name, tier in CATALOGUE.items():
        assert tier.name == name


def test_default_hardware_is_cpu_basic() -> None:
    assert DEFAULT_HARDWARE == "cpu-basic"
    assert DEFAULT_HARDWARE in CATALOGUE


def test_cpu_basic_is_free_and_sleeps_after_48_hours() -> None:
    tier = get_tier("cpu-basic")
    assert (tier.cpu, tier.memory_gib) == (2, 16)
    assert tier.gpu is None and tier.gpu_count == 0 and tier.gpu_memory_gib == 0
    assert tier.unit_cost_usd_per_hour == 0
    assert tier.is_free
    assert tier.default_sleep_seconds == 172_800


@pytest.mark.parametrize("name", sorted(SPACES_FLAVORS - {"cpu-basic", "zero-a10g"}))
def test_paid_tiers_never_sleep_by_default(name: str) -> None:
    tier = get_tier(name)
    assert tier.unit_cost_usd_per_hour > 0
    assert not tier.is_free
    assert tier.default_sleep_seconds is None


@pytest.mark.parametrize(
    ("name", "cpu", "memory", "gpu", "count", "vram", "price"),
    [
        ("cpu-upgrade", 8, 32, None, 0, 0, 0.03),
        ("t4-small", 4, 15, "T4", 1, 16, 0.40),
        ("t4-medium", 8, 30, "T4", 1, 16, 0.60),
        ("l4x1", 8, 30, "L4", 1, 24, 0.80),
        ("l4x4", 48, 186, "L4", 4, 96, 3.80),
        ("l40sx1", 8, 62, "L40S", 1, 48, 1.80),
        ("l40sx4", 48, 382, "L40S", 4, 192, 8.30),
        ("l40sx8", 192, 1534, "L40S", 8, 384, 23.50),
        ("a10g-small", 4, 15, "A10G", 1, 24, 1.00),
        ("a10g-large", 12, 46, "A10G", 1, 24, 1.50),
        ("a10g-largex2", 24, 92, "A10G", 2, 48, 3.00),
        ("a10g-largex4", 48, 184, "A10G", 4, 96, 5.00),
        ("a100-large", 12, 142, "A100", 1, 80, 2.50),
        ("a100x4", 48, 568, "A100", 4, 320, 10.00),
        ("a100x8", 96, 1136, "A100", 8, 640, 20.00),
    ],
)
def test_sizes_and_prices_match_hugging_face(
    name: str, cpu: float, memory: float, gpu: str | None, count: int, vram: float, price: float
) -> None:
    tier = get_tier(name)
    assert (tier.cpu, tier.memory_gib) == (cpu, memory)
    assert (tier.gpu, tier.gpu_count, tier.gpu_memory_gib) == (gpu, count, vram)
    assert tier.unit_cost_usd_per_hour == pytest.approx(price)


def test_gpu_fields_are_consistent() -> None:
    for tier in CATALOGUE.values():
        if tier.name in CPU_ONLY:
            assert tier.gpu is None and tier.gpu_count == 0 and tier.gpu_memory_gib == 0
        else:
            assert tier.gpu and tier.gpu_count >= 1 and tier.gpu_memory_gib > 0


def test_zero_gpu_is_quota_based_and_sleeps_like_a_free_space() -> None:
    tier = get_tier("zero-a10g")
    assert tier.is_free
    assert tier.default_sleep_seconds == 172_800
    assert tier.gpu == "A10G"


def test_tiers_are_frozen() -> None:
    tier = get_tier("t4-small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tier.cpu = 64  # type: ignore[misc]


def test_unknown_hardware_lists_the_valid_names() -> None:
    with pytest.raises(UnknownHardware) as caught:
        get_tier("h100")
    message = str(caught.value)
    assert "'h100'" in message
    for name in SPACES_FLAVORS:
        assert name in message
    assert caught.value.name == "h100"


def test_unknown_hardware_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        get_tier("CPU-BASIC")


def test_unhashable_name_is_unknown_not_a_type_error() -> None:
    with pytest.raises(UnknownHardware):
        get_tier(["cpu-basic"])  # type: ignore[arg-type]


def test_cpu_tier_hub_json_has_no_accelerator() -> None:
    item = get_tier("cpu-basic").to_hub_json()
    assert item == {
        "name": "cpu-basic",
        "prettyName": "CPU Basic",
        "cpu": "2 vCPU",
        "ram": "16 GB",
        "unitCostMicroUSD": 0,
        "unitCostUSD": 0.0,
        "unitLabel": "hour",
    }


def test_gpu_tier_hub_json_describes_the_accelerator() -> None:
    item = get_tier("l4x4").to_hub_json()
    assert item["name"] == "l4x4"
    assert item["prettyName"] == "4x Nvidia L4"
    assert item["cpu"] == "48 vCPU"
    assert item["ram"] == "186 GB"
    assert item["accelerator"] == {
        "type": "gpu",
        "model": "L4",
        "quantity": "4",
        "vram": "96 GB",
        "manufacturer": "Nvidia",
    }
    assert item["unitCostMicroUSD"] == 3_800_000
    assert item["unitCostUSD"] == pytest.approx(3.80)
    assert item["unitLabel"] == "hour"


@pytest.mark.parametrize("name", sorted(SPACES_FLAVORS))
def test_hub_json_has_every_required_field_and_is_json(name: str) -> None:
    item = get_tier(name).to_hub_json()
    required = {"name", "prettyName", "cpu", "ram", "unitCostMicroUSD", "unitCostUSD", "unitLabel"}
    assert required <= set(item)
    assert isinstance(item["unitCostMicroUSD"], int)
    assert item["unitCostMicroUSD"] == round(item["unitCostUSD"] * 1_000_000)
    assert json.loads(json.dumps(item)) == item


def test_fractional_sizes_are_formatted_without_trailing_zeros() -> None:
    tier = HardwareTier("x", "X", 0.5, 1.5, None, 0, 0, 0.0, None)
    item = tier.to_hub_json()
    assert (item["cpu"], item["ram"]) == ("0.5 vCPU", "1.5 GB")


def test_every_tier_has_a_disk_quota() -> None:
    assert get_tier("cpu-basic").disk_gib == 50
    assert all(tier.disk_gib > 0 for tier in CATALOGUE.values())


def test_an_installation_sizes_its_tiers() -> None:
    overrides = {"cpu-basic": {"cpu": 0.5, "memory_gib": 1, "disk_gib": 2}}
    validate_overrides(overrides)
    tier = sized_tier("cpu-basic", overrides)
    assert (tier.cpu, tier.memory_gib, tier.disk_gib) == (0.5, 1, 2)
    # Name, price and sleep stay Hugging Face's; other tiers are untouched.
    assert tier.name == "cpu-basic" and tier.is_free and tier.default_sleep_seconds == 172_800
    assert sized_tier("cpu-upgrade", overrides) == get_tier("cpu-upgrade")
    assert get_tier("cpu-basic").memory_gib == 16  # the catalogue itself is not changed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"h100": {"cpu": 1}}, "unknown hardware 'h100'"),
        (
            {"cpu-basic": {"gpu_count": 1}},
            "'gpu_count' is not one of cpu, memory_gib, disk_gib, node_selector, tolerations",
        ),
        ({"cpu-basic": {"memory_gib": 0}}, "must be a number above 0"),
        ({"cpu-basic": {"cpu": "2"}}, "must be a number above 0"),
        ({"cpu-basic": 2}, "override for 'cpu-basic' must be an object"),
        ({"t4-small": {"node_selector": ["gpu"]}}, "t4-small.node_selector must be an object"),
        ({"t4-small": {"node_selector": {"pool": 1}}}, r"\['pool'\]: 1 is not a valid label"),
        ({"t4-small": {"node_selector": {"a b": "x"}}}, "'a b' is not a valid label key"),
        ({"t4-small": {"node_selector": {"pool": "-gpu"}}}, "'-gpu' is not a valid label value"),
        ({"t4-small": {"tolerations": {"key": "x"}}}, "must be a list of tolerations"),
        ({"t4-small": {"tolerations": ["gpu"]}}, r"tolerations\[0\] must be an object"),
        ({"t4-small": {"tolerations": [{"kye": "x"}]}}, r"'kye' is not one of key, operator"),
        (
            {"t4-small": {"tolerations": [{"key": "x", "operator": "In"}]}},
            r"tolerations\[0\].operator must be Equal or Exists, not 'In'",
        ),
        ({"t4-small": {"tolerations": [{"value": "x"}]}}, "without a key needs operator Exists"),
        (
            {"t4-small": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
            "operator Exists takes no value",
        ),
        (
            {"t4-small": {"tolerations": [{"key": "k", "effect": "NoRun"}]}},
            "effect must be one of NoSchedule, PreferNoSchedule, NoExecute",
        ),
        (
            {"t4-small": {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}},
            "tolerationSeconds needs effect NoExecute",
        ),
    ],
)
def test_bad_overrides_say_what_is_wrong(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_overrides(overrides)


def test_the_hardware_listing_shows_this_installations_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.api.runtime import list_hardware
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv(
        "SPACEPORT_HARDWARE_OVERRIDES", '{"cpu-basic": {"cpu": 0.5, "memory_gib": 1}}'
    )
    get_settings.cache_clear()
    try:
        # What the route sends: its wire models as JSON.
        sent = [item.model_dump(mode="json") for item in list_hardware()]
        listed = {item["name"]: item for item in sent}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert (listed["cpu-basic"]["cpu"], listed["cpu-basic"]["ram"]) == ("0.5 vCPU", "1 GB")
    assert listed["cpu-basic"]["unitCostUSD"] == 0
    assert listed["cpu-upgrade"]["ram"] == "32 GB"
    assert list(listed) == list(CATALOGUE)


@pytest.mark.parametrize("name", sorted(SPACES_FLAVORS - CPU_ONLY))
def test_gpu_tiers_go_to_nodes_with_their_part_and_tolerate_gpu_pools(name: str) -> None:
    tier = get_tier(name)
    assert tier.gpu is not None
    assert tier.node_selector_dict == {"spaceport.dev/accelerator": tier.gpu.lower()}
    assert [t.to_kube() for t in tier.tolerations] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_gpu_parts_are_labelled_in_lower_case() -> None:
    assert get_tier("a10g-small").node_selector == (("spaceport.dev/accelerator", "a10g"),)
    assert get_tier("zero-a10g").node_selector == (("spaceport.dev/accelerator", "a10g"),)
    assert get_tier("l40sx4").node_selector == (("spaceport.dev/accelerator", "l40s"),)
    assert get_tier("t4-small").node_selector == (("spaceport.dev/accelerator", "t4"),)


@pytest.mark.parametrize("name", sorted(CPU_ONLY))
def test_cpu_tiers_go_anywhere_untainted_by_default(name: str) -> None:
    tier = get_tier(name)
    assert tier.node_selector == () and tier.tolerations == ()


def test_tiers_stay_hashable_with_their_placement() -> None:
    tiers = set(CATALOGUE.values())
    assert len(tiers) == len(CATALOGUE)
    overrides = {"t4-small": {"tolerations": [{"operator": "Exists"}]}}
    assert hash(sized_tier("t4-small", overrides)) == hash(sized_tier("t4-small", overrides))


def test_an_installation_places_its_tiers_on_its_own_nodes() -> None:
    overrides = {
        "a10g-small": {
            "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-a10g", "pool": "gpu"},
            "tolerations": [
                {
                    "key": "nvidia.com/gpu",
                    "operator": "Equal",
                    "value": "present",
                    "effect": "NoSchedule",
                },
                {
                    "key": "spot",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                },
            ],
        },
        "cpu-basic": {"node_selector": {"spaceport.dev/pool": "cpu"}, "cpu": 1},
    }
    validate_overrides(overrides)
    gpu = sized_tier("a10g-small", overrides)
    # An override replaces the default whole: the accelerator label is not kept beside it.
    assert gpu.node_selector_dict == {
        "cloud.google.com/gke-accelerator": "nvidia-a10g",
        "pool": "gpu",
    }
    assert gpu.tolerations == (
        Toleration("nvidia.com/gpu", "Equal", "present", "NoSchedule"),
        Toleration("spot", "Exists", None, "NoExecute", 30),
    )
    assert [t.to_kube() for t in gpu.tolerations][1] == {
        "key": "spot",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }
    cpu = sized_tier("cpu-basic", overrides)
    assert cpu.node_selector_dict == {"spaceport.dev/pool": "cpu"} and cpu.cpu == 1
    assert cpu.tolerations == ()
    # Sizes and prices are untouched, and the catalogue itself is not changed.
    assert (gpu.cpu, gpu.gpu_count, gpu.unit_cost_usd_per_hour) == (4, 1, 1.0)
    assert get_tier("a10g-small").tolerations == (GPU_TOLERATION,)


def test_an_installation_may_let_a_gpu_tier_go_anywhere() -> None:
    tier = sized_tier("t4-small", {"t4-small": {"node_selector": {}, "tolerations": []}})
    assert tier.node_selector == () and tier.tolerations == ()


def test_placement_is_never_listed_to_clients() -> None:
    overrides = {"t4-small": {"node_selector": {"pool": "gpu"}, "tolerations": []}}
    assert sized_tier("t4-small", overrides).to_hub_json() == get_tier("t4-small").to_hub_json()
    for tier in CATALOGUE.values():
        text = json.dumps(tier.to_hub_json())
        assert "toleration" not in text.lower() and "spaceport.dev" not in text


def test_placement_overrides_come_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.core.settings import Settings

    monkeypatch.setenv(
        "SPACEPORT_HARDWARE_OVERRIDES",
        json.dumps(
            {
                "t4-small": {
                    "memory_gib": 8,
                    "node_selector": {"gpu": "t4"},
                    "tolerations": [{"key": "gpu", "operator": "Exists"}],
                }
            }
        ),
    )
    tier = sized_tier("t4-small", Settings().hardware_overrides)
    assert tier.memory_gib == 8 and tier.node_selector == (("gpu", "t4"),)
    assert tier.tolerations == (Toleration("gpu", "Exists"),)
    monkeypatch.setenv(
        "SPACEPORT_HARDWARE_OVERRIDES", '{"t4-small": {"tolerations": [{"operator": "Is"}]}}'
    )
    with pytest.raises(ValueError, match="operator must be Equal or Exists"):
        Settings()
