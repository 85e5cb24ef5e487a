"""The container profile of a Space, checked without Docker (sandbox/security.py)."""

from __future__ import annotations

from sandbox.backend import Revision
from sandbox.hardware import get_tier
from sandbox.security import container_name, container_spec, host_firewall_rules


def revision(tier: str = "cpu-basic", **changes: object) -> Revision:
    values: dict[str, object] = dict(
        space_id=7,
        space="alice/Hello_World",
        sha="a" * 40,
        image="spaceport/space:abc",
        port=7860,
        hardware=get_tier(tier),
        env={"SPACE_ID": "alice/Hello_World"},
    )
    values.update(changes)
    return Revision(**values)  # type: ignore[arg-type]


def test_a_space_runs_unprivileged_within_its_tier() -> None:
    spec = container_spec(revision(), "prod")
    assert spec["user"] == "1000:1000"
    assert spec["cap_drop"] == ["ALL"]
    assert spec["security_opt"] == ["no-new-privileges:true"]
    assert spec["pids_limit"] > 0
    assert spec["nano_cpus"] == 2_000_000_000 and spec["mem_limit"] == "16384m"
    assert spec["network"] == "spaceport-spaces"
    assert "device_requests" not in spec
    assert "volumes" not in spec  # nothing of the host, the Docker socket least of all


def test_labels_let_a_restarted_controller_adopt_it() -> None:
    spec = container_spec(revision(), "prod")
    labels = spec["labels"]
    assert labels["org.spaceport.instance"] == "prod"
    assert labels["org.spaceport.space-id"] == "7"
    assert labels["org.spaceport.revision"] == revision().key
    assert spec["environment"]["SPACEPORT_APP_PORT"] == "7860"


def test_gpu_tiers_ask_for_their_gpus() -> None:
    spec = container_spec(revision("a10g-largex2"), "prod")
    assert spec["device_requests"][0]["Count"] == 2


def test_the_revision_key_changes_with_what_needs_a_new_container() -> None:
    base = revision().key
    assert revision().key == base
    assert revision(env={"SPACE_ID": "x"}).key != base
    assert revision(image="spaceport/space:def").key != base
    assert revision("cpu-upgrade").key != base
    assert revision(generation=1).key != base
    assert revision(sha="b" * 40).key == base  # same image, same env: same container


def test_names_are_docker_safe_and_per_installation() -> None:
    name = container_name(revision(), "prod")
    assert name.startswith("prod-alice--hello-world-")
    assert container_name(revision(), "staging") != name


def test_spaces_are_kept_off_the_host_but_replies_pass() -> None:
    accept, drop = host_firewall_rules()
    assert "ESTABLISHED,RELATED" in accept and accept[-1] == "ACCEPT"
    assert drop[-1] == "DROP"
