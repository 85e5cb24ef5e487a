"""The installation id: made once per home, kept private, the default container label."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.core import installation
from orchestrator.core.settings import get_settings


def test_made_once_and_kept(tmp_path: Path) -> None:
    first = installation.installation_id(tmp_path)
    assert installation.VALID.match(first) and first.startswith("spaceport-")
    assert installation.installation_id(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / installation.ID_FILE).stat().st_mode)
    assert mode == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [installation.ID_FILE]  # no drafts left


def test_two_homes_two_ids(tmp_path: Path) -> None:
    assert installation.installation_id(tmp_path / "a") != installation.installation_id(
        tmp_path / "b"
    )


def test_processes_starting_at_once_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: installation.installation_id(tmp_path), range(32)))
    assert len(ids) == 1


def test_a_damaged_file_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / installation.ID_FILE).write_text("not an id!\n")
    with pytest.raises(installation.InstallationError, match="does not hold"):
        installation.installation_id(tmp_path)


def test_default_is_the_homes_id_and_the_setting_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    monkeypatch.delenv("SPACEPORT_INSTANCE", raising=False)
    get_settings.cache_clear()
    try:
        assert installation.instance_name() == installation.installation_id(tmp_path)
        monkeypatch.setenv("SPACEPORT_INSTANCE", "lab-one")
        get_settings.cache_clear()
        assert installation.instance_name() == "lab-one"
    finally:
        get_settings.cache_clear()
