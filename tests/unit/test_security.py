"""The container profile of a Space, checked without Docker (sandbox/security.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sandbox.backend import Revision
from sandbox.hardware import get_tier
from sandbox.security import (
    EGRESS_ALLOW_CHAIN,
    EGRESS_CHAIN,
    container_name,
    container_spec,
    egress_allow_rules,
    egress_jump_rule,
    egress_rules,
    host_firewall_rules,
    nameservers,
    parse_egress_allow,
)


def revision(tier: str = "cpu-basic", **changes: object) -> Revision:
    values: dict[str, object] = dict(
        space_id="0123456789abcdef01234567",
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
    assert labels["org.spaceport.space-id"] == "0123456789abcdef01234567"
    assert labels["org.spaceport.revision"] == revision().key
    assert spec["environment"]["SPACEPORT_APP_PORT"] == "7860"


def test_volumes_an_image_declares_stay_off_the_host_disk() -> None:
    assert "tmpfs" not in container_spec(revision(), "prod")
    small = dataclasses.replace(get_tier("cpu-basic"), memory_gib=0.5, disk_gib=2)
    spec = container_spec(revision(hardware=small), "prod", ["/data", "/home/user/.cache"])
    assert spec["tmpfs"] == {
        "/data": "size=512m,mode=1777",
        "/home/user/.cache": "size=512m,mode=1777",
    }


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


def test_spaces_are_refused_metadata_and_private_ranges_but_not_the_internet() -> None:
    rules = egress_rules(4, dns_servers=["10.255.255.53", "127.0.0.53"])
    assert rules[0][-1] == "ACCEPT" and "ESTABLISHED,RELATED" in rules[0]  # replies first
    assert rules[1] == ["-j", EGRESS_ALLOW_CHAIN]  # then the operator's allow-list
    refused = [rule[1] for rule in rules if "REJECT" in rule]
    for network in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert network in refused
    assert "100.64.0.0/10" in refused
    # The resolver Docker's DNS forwards to stays reachable, on port 53 only; loopback
    # resolvers never cross the bridge.
    dns = [rule for rule in rules if "10.255.255.53" in rule]
    assert {rule[rule.index("--dport") + 1] for rule in dns} == {"53"}
    assert all(
        rules.index(rule) < rules.index(next(r for r in rules if "REJECT" in r)) for rule in dns
    )
    assert not any("127.0.0.53" in rule for rule in rules)
    assert rules[-1] == ["-j", "RETURN"]  # everything else: Docker's rules, the internet
    assert egress_jump_rule() == ["-i", "spaceport0", "-j", EGRESS_CHAIN]


def test_ipv6_refuses_unique_local_and_link_local() -> None:
    refused = [rule[1] for rule in egress_rules(6) if "REJECT" in rule]
    assert refused == ["fc00::/7", "fe80::/10"]
    assert "icmp6-adm-prohibited" in egress_rules(6)[-2]


@pytest.mark.parametrize(
    ("entry", "network", "port"),
    [
        ("10.0.5.0/24", "10.0.5.0/24", None),
        ("10.0.5.7", "10.0.5.7/32", None),
        ("10.0.5.7:5432", "10.0.5.7/32", 5432),
        ("10.0.5.0/24:443", "10.0.5.0/24", 443),
        ("fd00::/8:443", "fd00::/8", 443),
        ("[fd00::7]:443", "fd00::7/128", 443),
        ("fd00::7", "fd00::7/128", None),
    ],
)
def test_allow_entries(entry: str, network: str, port: int | None) -> None:
    allowed = parse_egress_allow(entry)
    assert (str(allowed.network), allowed.port) == (network, port)


@pytest.mark.parametrize("entry", ["pypi.org", "10.0.5.0/33", "10.0.5.7:0", "10.0.5.7:99999", ""])
def test_bad_allow_entries_say_what_to_write(entry: str) -> None:
    with pytest.raises(ValueError, match="CIDR with an optional port"):
        parse_egress_allow(entry)


def test_allow_rules_are_per_installation_and_per_family() -> None:
    allow = [
        parse_egress_allow("10.0.5.0/24"),
        parse_egress_allow("10.0.6.7:5432"),
        parse_egress_allow("fd00::/8"),
    ]
    rules = egress_allow_rules(allow, "prod")
    assert [
        "-d",
        "10.0.5.0/24",
        "-m",
        "comment",
        "--comment",
        "spaceport-allow:prod",
        "-j",
        "ACCEPT",
    ] in rules
    ported = [rule for rule in rules if "10.0.6.7/32" in rule]
    assert {rule[rule.index("-p") + 1] for rule in ported} == {"tcp", "udp"}
    assert all(rule[rule.index("--dport") + 1] == "5432" for rule in ported)
    assert not any("fd00::/8" in rule for rule in rules)
    assert egress_allow_rules(allow, "prod", version=6)[0][1] == "fd00::/8"


def test_nameservers_of_resolv_conf() -> None:
    text = "# comment\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch x\nnameserver x\n"
    assert nameservers(text) == ["10.255.255.53", "fe80::1"]


def test_resolvers_behind_a_systemd_resolved_stub_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox import docker_backend

    stub, upstream = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    stub.write_text("nameserver 127.0.0.53\n")
    upstream.write_text("nameserver 192.168.1.1\nnameserver 192.168.1.1\n")
    monkeypatch.setattr(docker_backend, "RESOLV_CONFS", (str(stub), str(upstream), "/nonexistent"))
    assert docker_backend.host_nameservers() == ["127.0.0.53", "192.168.1.1"]
    dns_rules = [
        rule for rule in egress_rules(4, docker_backend.host_nameservers()) if "53" in rule
    ]
    assert {rule[1] for rule in dns_rules} == {"192.168.1.1"}  # the stub never crosses the bridge
