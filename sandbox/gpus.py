"""The host's GPUs, as the Docker backend counts and hands them out.

The inventory comes from a command (SPACEPORT_GPU_INVENTORY_COMMAND), by default
`nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`, whose
lines look like `0, GPU-8c1f...-4e2d, Tesla T4, 15360`. Each GPU's marketing name is reduced
to the model as the hardware catalogue spells it ("NVIDIA A100-SXM4-80GB" -> A100), so a tier
with `accelerator: {model: A100}` counts the host's A100s.

A host without the command has no GPUs (said once in the log); a command that fails or hangs
is cut off after COMMAND_TIMEOUT_SECONDS and logged, and the last inventory stays: a broken
driver never takes the controller down. The command runs when the backend prepares, and is
run again at most every REFRESH_SECONDS, in a thread of its own, so no caller ever waits on
it after the first read.
"""

from __future__ import annotations

import csv
import logging
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_COMMAND = (
    "nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits"
)
COMMAND_TIMEOUT_SECONDS = 10.0
# GPUs are not hot-plugged often; a minute bounds how stale a count is after a driver reload.
REFRESH_SECONDS = 60.0
MAX_GPUS = 256  # more lines than any host has GPUs: the command printed something else
MAX_OUTPUT_BYTES = 1 << 16

# Words of a marketing name that are not the part: vendor, product line, form factor.
_NOISE = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO"}
# Where the part's own name ends: "A100-SXM4-80GB", "H100 80GB HBM3", "V100S-PCIE-32GB".
_PART = re.compile(r"^[A-Z0-9]+")


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str  # what a device request names, stable across reboots (an index is not)
    model: str  # the catalogue's spelling: T4, L4, L40S, A10G, A100, H100
    memory_gib: float


def model_of(name: str) -> str:
    """The part's short name in a GPU's marketing name, upper case: "Tesla T4" -> T4,
    "NVIDIA L40S" -> L40S, "NVIDIA A100-SXM4-80GB" -> A100, "NVIDIA GeForce RTX 4090" ->
    RTX 4090."""
    words = [w for w in name.upper().split() if w not in _NOISE]
    if not words:
        return name.strip().upper()
    if words[0] in ("RTX", "GTX", "TITAN") and len(words) > 1:
        # The line name alone is no part: "RTX 4090", "RTX A6000".
        part = _PART.match(words[1])
        return f"{words[0]} {part.group(0) if part else words[1]}"
    part = _PART.match(words[0])
    return part.group(0) if part else words[0]


def parse_inventory(text: str) -> list[Gpu]:
    """The GPUs in the command's CSV (index, uuid, name, memory.total in MiB); lines that are
    not that shape (a driver's error message) are skipped, with a warning."""
    gpus: list[Gpu] = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        try:
            index, uuid, name, memory = (field.strip() for field in row)
            gpus.append(Gpu(int(index), uuid, model_of(name), _memory_gib(memory)))
        except ValueError:
            log.warning("GPU inventory: a line that is not index, uuid, name, memory: %r", row)
            continue
        if len(gpus) >= MAX_GPUS:
            log.warning("GPU inventory: more than %d GPUs listed; the rest are ignored", MAX_GPUS)
            break
    return gpus


def _memory_gib(value: str) -> float:
    try:
        return int(value) / 1024
    except ValueError:
        return 0.0  # "[N/A]" on some boards: the GPU is still there


Runner = Callable[[Sequence[str], float], str]


def run_command(argv: Sequence[str], timeout: float) -> str:
    """The command's stdout; OSError or subprocess errors when it cannot run or fails."""
    done = subprocess.run(
        list(argv), capture_output=True, timeout=timeout, check=True, stdin=subprocess.DEVNULL
    )
    return done.stdout[:MAX_OUTPUT_BYTES].decode(errors="replace")


class Inventory:
    """The host's GPUs, read by `command` ("" for none) and kept for REFRESH_SECONDS."""

    def __init__(
        self,
        command: str = DEFAULT_COMMAND,
        runner: Runner = run_command,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.argv = shlex.split(command)
        self._runner = runner
        self._refresh_seconds = refresh_seconds
        self._gpus: list[Gpu] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False
        self._said: set[str] = set()  # problems already logged, so a loop does not spam

    def read(self) -> list[Gpu]:
        """Run the command now (the backend's prepare) and keep what it lists."""
        gpus = self._run()
        with self._lock:
            if gpus is not None or self._gpus is None:
                self._gpus = gpus or []
            self._read_at = time.monotonic()
            return list(self._gpus)

    def gpus(self) -> list[Gpu]:
        """The GPUs as last read: read now if never read, refreshed in the background when
        older than REFRESH_SECONDS (this answer is then the previous one)."""
        with self._lock:
            known = self._gpus
            stale = time.monotonic() - self._read_at >= self._refresh_seconds
            start_refresh = known is not None and stale and not self._refreshing
            if start_refresh:
                self._refreshing = True
        if known is None:
            return self.read()
        if start_refresh:
            threading.Thread(target=self._refresh, name="gpu-inventory", daemon=True).start()
        return list(known)

    def _refresh(self) -> None:
        try:
            self.read()
        finally:
            with self._lock:
                self._refreshing = False

    def _run(self) -> list[Gpu] | None:
        """The command's GPUs; [] where there is no command; None when it failed (the last
        inventory then stays)."""
        if not self.argv:
            return []
        if shutil.which(self.argv[0]) is None:
            # Most hosts have no GPU: news, not a problem.
            self._say_once(
                "missing", "%s not found: this host has no GPUs", self.argv[0], level=logging.INFO
            )
            return []
        try:
            output = self._runner(self.argv, COMMAND_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._say_once(
                "timeout",
                "GPU inventory %r did not answer within %g s; GPU counts are the last known",
                shlex.join(self.argv),
                COMMAND_TIMEOUT_SECONDS,
            )
            return None
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or b""
            text = detail.decode(errors="replace").strip() if isinstance(detail, bytes) else ""
            self._say_once(
                f"failed:{exc}",
                "GPU inventory %r failed (%s%s); GPU counts are the last known",
                shlex.join(self.argv),
                exc,
                f": {text[:300]}" if text else "",
            )
            return None
        gpus = parse_inventory(output)
        if self._gpus is None or [g.uuid for g in gpus] != [g.uuid for g in self._gpus]:
            summary = ", ".join(f"{g.index}: {g.model} ({g.uuid})" for g in gpus) or "none"
            log.info("GPUs of this host: %s", summary)
        self._said.clear()  # a later failure is news again
        return gpus

    def _say_once(
        self, key: str, message: str, *args: object, level: int = logging.WARNING
    ) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, message, *args)
