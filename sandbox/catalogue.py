"""Reading the hardware catalogue file (sandbox/hardware_catalogue.yaml, or the operator's own
at SPACEPORT_HARDWARE_CATALOGUE) into HardwareTiers, and keeping it current.

`Live.tiers()` is what `sandbox.hardware.CATALOGUE` answers from: at most once a second it
stats the file, and parses it again only when its modification time, size or inode changed,
so reading a tier stays a dict lookup. An edit that does not validate is logged (once per
edit) and kept as `Live.problem`; the last good catalogue stays in use, so a typo never takes
a running platform down. Only the very first read fails loudly, since there is nothing
good to keep (settings validation reads it at start-up, so that is where it surfaces).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.hardware import (
    ACCELERATOR_LABEL,
    DEFAULT_HARDWARE,
    GPU_TOLERATION,
    HardwareTier,
    parse_placement,
)

log = logging.getLogger(__name__)

# The environment variable orchestrator/core/settings.py declares (hardware_catalogue): read
# here at each check, so every process (API, controller, workers) follows the same file.
ENV = "SPACEPORT_HARDWARE_CATALOGUE"
CHECK_SECONDS = 1.0
MAX_BYTES = 1 << 20  # a catalogue is a few KiB; anything near this is not one
MAX_TIERS = 200
TIER_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


class CatalogueError(ValueError):
    """The catalogue file cannot be used; the message names the file, tier and field."""


def shipped_path() -> Path:
    """The catalogue that ships with Spaceport: Hugging Face's flavors, names and prices."""
    return Path(str(resources.files("sandbox").joinpath("hardware_catalogue.yaml")))


def configured_path() -> Path:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else shipped_path()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Accelerator(_Strict):
    model: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    count: int = Field(ge=1, le=64)
    vram_gib: float = Field(gt=0)


class _Docker(_Strict):
    # nvidia: a device request for the GPUs the backend picked (by uuid). none: the GPUs are
    # still counted and assigned (a container's label names them), but no device request is
    # sent, for runtimes that inject GPUs themselves and for tests with a fake inventory.
    gpu_driver: Literal["nvidia", "none"] = "nvidia"


class _Kubernetes(_Strict):
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = Field(default=None, max_length=32)


class _Tier(_Strict):
    pretty_name: str = Field(min_length=1, max_length=100)
    cpu: float = Field(gt=0)
    memory_gib: float = Field(gt=0)
    disk_gib: float = Field(default=50, gt=0)
    accelerator: _Accelerator | None = None
    price_usd_per_hour: float = Field(ge=0, le=10_000)
    sleep_seconds: int | None = Field(gt=0)
    start_timeout_seconds: int = Field(default=1800, gt=0, le=86_400)
    concurrency: int = Field(default=4, ge=1, le=10_000)
    supported: bool = True
    docker: _Docker = _Docker()
    kubernetes: _Kubernetes = _Kubernetes()


class _File(_Strict):
    tiers: dict[str, _Tier] = Field(min_length=1, max_length=MAX_TIERS)


def _where(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "tiers":
        rest = ".".join(str(part) for part in loc[2:])
        return f"tier {loc[1]}: {rest}" if rest else f"tier {loc[1]}"
    return ".".join(str(part) for part in loc) or "the file"


def parse(text: str, source: str) -> dict[str, HardwareTier]:
    """The tiers of catalogue `text`, in the file's order; CatalogueError naming `source`,
    the tier and the field when something is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"hardware catalogue {source}: not YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise CatalogueError(f"hardware catalogue {source}: must be a mapping with 'tiers'")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        raise CatalogueError(f"hardware catalogue {source}: " + "; ".join(problems)) from None
    tiers: dict[str, HardwareTier] = {}
    for name, spec in parsed.tiers.items():
        try:
            tiers[name] = _tier(name, spec)
        except ValueError as exc:
            raise CatalogueError(f"hardware catalogue {source}: tier {name}: {exc}") from None
    basic = tiers.get(DEFAULT_HARDWARE)
    # Every Space without a choice, and every owner out of credit, lands on cpu-basic.
    if basic is None or not basic.supported or not basic.is_free:
        raise CatalogueError(
            f"hardware catalogue {source}: tier {DEFAULT_HARDWARE} must be listed, supported "
            "and free (price_usd_per_hour: 0): Spaces without a choice and owners out of "
            "credit run on it"
        )
    return tiers


def _tier(name: str, spec: _Tier) -> HardwareTier:
    if not re.match(TIER_NAME, name):
        raise ValueError("a tier name is lower-case letters, digits and '-', at most 63")
    gpu = spec.accelerator
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Any, ...] = ()
    if gpu is not None:
        node_selector = ((ACCELERATOR_LABEL, gpu.model.lower()),)
        tolerations = (GPU_TOLERATION,)
    where = f"{name}.kubernetes"
    if spec.kubernetes.node_selector is not None:
        node_selector = parse_placement(where, "node_selector", spec.kubernetes.node_selector)
    if spec.kubernetes.tolerations is not None:
        tolerations = parse_placement(where, "tolerations", spec.kubernetes.tolerations)
    return HardwareTier(
        name=name,
        pretty_name=spec.pretty_name,
        cpu=spec.cpu,
        memory_gib=spec.memory_gib,
        gpu=gpu.model if gpu else None,
        gpu_count=gpu.count if gpu else 0,
        gpu_memory_gib=gpu.vram_gib if gpu else 0,
        unit_cost_usd_per_hour=spec.price_usd_per_hour,
        default_sleep_seconds=spec.sleep_seconds,
        disk_gib=spec.disk_gib,
        node_selector=node_selector,
        tolerations=tolerations,
        concurrency=spec.concurrency,
        start_timeout_seconds=spec.start_timeout_seconds,
        supported=spec.supported,
        gpu_driver=spec.docker.gpu_driver,
    )


def load(path: Path) -> dict[str, HardwareTier]:
    """Read and validate the catalogue at `path`."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CatalogueError(f"hardware catalogue {path}: cannot read it: {exc}") from None
    if len(raw) > MAX_BYTES:
        raise CatalogueError(f"hardware catalogue {path}: larger than {MAX_BYTES} bytes")
    return parse(raw.decode("utf-8", errors="replace"), str(path))


class Live:
    """The catalogue in use, re-read when its file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tiers: dict[str, HardwareTier] | None = None
        self._key: tuple[object, ...] | None = None
        self._checked = 0.0
        self.problem: str | None = None  # why the file's current content is not in use

    def tiers(self) -> dict[str, HardwareTier]:
        tiers = self._tiers
        if tiers is not None and time.monotonic() - self._checked < CHECK_SECONDS:
            return tiers
        return self.refresh()

    def refresh(self, force: bool = False) -> dict[str, HardwareTier]:
        """Stat the file now; parse it again if it changed (or `force`)."""
        with self._lock:
            path = configured_path()
            try:
                st = path.stat()
                key: tuple[object, ...] = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError as exc:
                key = (str(path), "missing", str(exc))
            self._checked = time.monotonic()
            if key == self._key and self._tiers is not None and not force:
                return self._tiers
            self._key = key
            try:
                tiers = load(path)
            except CatalogueError as exc:
                if self._tiers is None:
                    raise
                if self.problem != str(exc):
                    log.error("%s; the last good hardware catalogue stays in use", exc)
                self.problem = str(exc)
                return self._tiers
            if self._tiers is not None and tiers != self._tiers:
                log.info("hardware catalogue %s read again: %d tiers", path, len(tiers))
            self._tiers, self.problem = tiers, None
            return tiers


LIVE = Live()
