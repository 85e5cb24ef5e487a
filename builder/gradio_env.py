"""The Hub's environment for Gradio Spaces, and the rule that gives every Gradio release
dependency versions it works with.

This file lives two lives. The builder imports it (`builder/recipe.py` writes it into the
Gradio Dockerfile, and its pure functions are unit-tested), and the Gradio layer of every
build runs it as a script inside the image (`python3 gradio_env.py install <version>`), so it
uses the standard library only and imports nothing else of Spaceport's.

The rule (docs/builder.md, "Old Gradio versions"):

* The Gradio layer is resolved **as of the Gradio release's upload date** (uv's
  `--exclude-newer`), read from PyPI's JSON API inside the build: Gradio 3.50.2 gets the
  Starlette, FastAPI, httpx, huggingface_hub ... of October 2023, which it was tested with.
* When the image's Python is newer than the release, the date moves to when that Python had
  wheels for the common packages (its release + WHEEL_CATCH_UP), instead of building numpy
  from source or failing: a Gradio 3 Space on Python 3.13 resolves as of January 2025.
* Known breaks are capped explicitly (KNOWN_BREAKS), in the Gradio layer and, as pip
  constraints, while requirements.txt is installed, where no date applies.
* `gradio==<sdk_version>` is a constraint of every later install: requirements.txt cannot move
  it (a line naming gradio is left out, and the log says so).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone

# Not datetime.UTC: this also runs as a script on the image's Python, as old as 3.9.
UTC = timezone.utc  # noqa: UP017

UV_VERSION = "0.13.9"  # pinned: the layer's cache key is its text, so its tools are fixed too
TOOLS_DIR = "/opt/spaceport"  # the script, uv and the plan below live here, owned by uid 1000
UV = f"{TOOLS_DIR}/uv/bin/uv"
VENV_PYTHON = "/opt/venv/bin/python"
CONSTRAINTS = f"{TOOLS_DIR}/constraints.txt"
PLAN = f"{TOOLS_DIR}/gradio.json"

# The Hub's documented Debian packages for Gradio Spaces, plus what the full python:X image
# has that common wheels load at run time (libgomp1: LightGBM, XGBoost, torch CPU;
# libglib2.0-0: opencv) or build with (a C/C++ toolchain, as cmake alone builds nothing).
HUB_APT_PACKAGES: tuple[str, ...] = (
    "git",
    "git-lfs",
    "ffmpeg",
    "libsm6",
    "libxext6",
    "cmake",
    "rsync",
    "libgl1",
    "libgomp1",
    "libglib2.0-0",
    "build-essential",
    "curl",
    "procps",
)
# Preinstalled beside Gradio on the Hub, and what its install line adds.
PREINSTALLED: tuple[str, ...] = ("huggingface_hub", "requests", "datasets", "uvicorn>=0.14.0")
HUB_EXTRAS: tuple[str, ...] = ("oauth", "mcp")  # gradio[oauth,mcp], where the release has them
EXTRA_PACKAGES: tuple[str, ...] = ("spaces",)  # ZeroGPU's decorator: not bound to the date

# First release of each CPython minor. A Gradio release older than its Python is resolved as
# of this date + WHEEL_CATCH_UP, when numpy, pandas & co. had wheels for it.
PYTHON_RELEASES: dict[str, date] = {
    "3.8": date(2019, 10, 14),
    "3.9": date(2020, 10, 5),
    "3.10": date(2021, 10, 4),
    "3.11": date(2022, 10, 24),
    "3.12": date(2023, 10, 2),
    "3.13": date(2024, 10, 7),
    "3.14": date(2025, 10, 7),
}
WHEEL_CATCH_UP = timedelta(days=90)
# Gradio pins gradio_client exactly and the two are uploaded minutes apart; a day of margin
# keeps the pair (and same-day fixes) inside the window.
RELEASE_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class KnownBreak:
    below: tuple[int, ...]  # Gradio releases older than this need the cap
    cap: str  # a pip/uv constraint
    why: str


KNOWN_BREAKS: tuple[KnownBreak, ...] = (
    KnownBreak(
        (5,),
        "starlette<1.0",
        "Starlette 1.0 changed TemplateResponse: Gradio <= 4.44 fails its first page render "
        "with `TypeError: unhashable type: 'dict'`",
    ),
    KnownBreak(
        (5,),
        "huggingface_hub<1.0",
        "huggingface_hub 1.0 removed APIs the oldest Gradio releases import (HfFolder)",
    ),
)


class EnvError(Exception):
    """Something the Space's README or requirements must change; the message says what."""


@dataclass(frozen=True)
class Plan:
    """How the Gradio layer of one (Python, Gradio) pair is resolved; kept in the image."""

    gradio: str
    python: str
    uploaded: str  # the release's upload time (ISO 8601, UTC)
    cutoff: str | None  # uv --exclude-newer; None: no date (a Python newer than the table)
    extras: list[str]
    caps: list[str]
    notes: list[str]

    def gradio_requirement(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"gradio{extras}=={self.gradio}"

    def constraints(self) -> str:
        return "".join(f"{line}\n" for line in [f"gradio=={self.gradio}", *self.caps])


def release_tuple(version: str) -> tuple[int, ...]:
    """The numeric release part of a version: "4.44.1" -> (4, 44, 1), "5.0.0b3" -> (5, 0, 0)."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        raise EnvError(f"sdk_version {version!r} is not a Gradio version (expected e.g. 5.49.1)")
    return tuple(int(part) for part in match[1].split("."))


def extras_for(
    provides_extra: Sequence[str] | None, requires_dist: Sequence[str] | None
) -> list[str]:
    """The Hub's extras (oauth, mcp) that this release defines, from its PyPI metadata.

    Old uploads have no `provides_extra`; their extras show only in requires_dist markers
    (`authlib; extra == "oauth"`).
    """
    offered = set(provides_extra or [])
    for requirement in requires_dist or []:
        offered.update(re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement))
    return [extra for extra in HUB_EXTRAS if extra in offered]


def caps_for(gradio_version: str) -> list[KnownBreak]:
    release = release_tuple(gradio_version)
    return [known for known in KNOWN_BREAKS if release < known.below]


def python_minor(version: str) -> str:
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    if match is None:
        raise EnvError(f"not a Python version: {version!r}")
    return f"{match[1]}.{match[2]}"


def resolution_cutoff(uploaded: datetime, python: str) -> tuple[datetime | None, str | None]:
    """(the date to resolve as of, a note when it is not the release's own date)."""
    released = PYTHON_RELEASES.get(python_minor(python))
    if released is None:
        newest = max(PYTHON_RELEASES, key=lambda minor: PYTHON_RELEASES[minor])
        if _minor_key(python) > _minor_key(newest):
            return None, (
                f"Python {python} is newer than any Spaceport knows the wheels of: the Gradio "
                "layer is resolved without a date, with the known caps only"
            )
        return uploaded + RELEASE_MARGIN, None  # older than the table: wheels existed
    wheels = datetime.combine(released + WHEEL_CATCH_UP, datetime.min.time(), tzinfo=UTC)
    cutoff = uploaded + RELEASE_MARGIN
    if wheels > cutoff:
        return wheels, (
            f"Python {python} came out after this Gradio release: resolving as of "
            f"{wheels.date()} (Python {python} + {WHEEL_CATCH_UP.days} days, when common "
            f"packages had wheels for it) instead of {cutoff.date()}"
        )
    return cutoff, None


def release_uploaded(project_json: dict[str, object], version: str) -> datetime:
    """When `version` was uploaded (its newest file), from PyPI's project JSON
    (`/pypi/gradio/json`: every release with its files; the per-release JSON is not served by
    every PyPI mirror)."""
    releases = project_json.get("releases") or {}
    assert isinstance(releases, dict)
    files = releases.get(version) or []
    times = [
        _parse_time(str(item.get("upload_time_iso_8601") or item.get("upload_time")))
        for item in files
        if isinstance(item, dict) and (item.get("upload_time_iso_8601") or item.get("upload_time"))
    ]
    if not times:
        raise EnvError(
            f"gradio {version} is not a release on PyPI: set sdk_version in README.md to a "
            "released Gradio version (https://pypi.org/project/gradio/#history)"
        )
    return max(times)


def make_plan(gradio_version: str, python: str, uploaded: datetime) -> Plan:
    """The plan for one Gradio release. Its extras are the Hub's until the release's own
    metadata says which it has (`with_extras`, after the install)."""
    cutoff, note = resolution_cutoff(uploaded, python)
    return Plan(
        gradio=gradio_version,
        python=python_minor(python),
        uploaded=uploaded.isoformat(),
        cutoff=cutoff.strftime("%Y-%m-%dT%H:%M:%SZ") if cutoff else None,
        extras=list(HUB_EXTRAS),
        caps=[known.cap for known in caps_for(gradio_version)],
        notes=[note] if note else [],
    )


def is_gradio_requirement(line: str) -> bool:
    """A requirements.txt line that names gradio itself (not gradio_client, gradio-pdf...)."""
    text = line.split(" #", 1)[0].strip()
    if not text or text.startswith(("#", "-")):
        return False
    match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    return bool(match) and re.sub(r"[-_.]+", "-", match[1]).lower() == "gradio"


def filter_requirements(text: str) -> tuple[str, list[tuple[int, str]]]:
    """(requirements.txt without its gradio lines, [(line number, line left out)])."""
    kept: list[str] = []
    dropped: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if is_gradio_requirement(line):
            dropped.append((number, line.strip()))
        else:
            kept.append(line)
    return "".join(f"{line}\n" for line in kept), dropped


def requirements_args(plan: Plan, requirements: str) -> list[str]:
    """`pip install` arguments for requirements.txt. Gradio itself is named beside it: pip
    resolves only what it is asked for, so with the constraints alone a requirement could
    still downgrade a dependency of the installed Gradio (gradio_client, say) and break it
    without a word; named, such a conflict is a ResolutionImpossible."""
    return ["-r", requirements, plan.gradio_requirement(), "-c", CONSTRAINTS]


# Lines of pip's resolver when versions conflict (as opposed to a missing package).
_CONFLICT_MARKERS = ("ResolutionImpossible", "conflicting dependencies", "conflict is caused by")


def is_conflict(pip_output: str) -> bool:
    return any(marker in pip_output for marker in _CONFLICT_MARKERS)


# --------------------------------------------------------------------------------------------
# Inside the image


def _say(message: str) -> None:
    print(f"Spaceport: {message}", flush=True)


def _fetch_project() -> dict[str, object]:
    url = "https://pypi.org/pypi/gradio/json"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:  # through the build proxy
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise EnvError(f"PyPI answered {exc.code} for {url}: retry the build") from exc
    except OSError as exc:
        raise EnvError(f"PyPI could not be reached for {url} ({exc}): retry the build") from exc


def _run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def install(version: str) -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    plan = make_plan(version, python, release_uploaded(_fetch_project(), version))
    _say(
        f"Gradio {plan.gradio} (uploaded {plan.uploaded[:10]}) on Python {plan.python}: "
        f"resolving as of {plan.cutoff or 'today'}; caps: {', '.join(plan.caps) or 'none'}"
    )
    for note in plan.notes:
        _say(note)
    with open(CONSTRAINTS, "w") as handle:
        handle.write(plan.constraints())
    base = [UV, "pip", "install", "--python", VENV_PYTHON, "--compile-bytecode"]
    dated = ["--exclude-newer", plan.cutoff] if plan.cutoff else []
    # An extra the release lacks is a warning of uv's, not an error: the metadata of what
    # was installed then says which extras it had.
    _run([*base, *dated, "-c", CONSTRAINTS, plan.gradio_requirement(), *PREINSTALLED])
    plan = replace(plan, extras=extras_for(_installed_extras("gradio"), None))
    _say(f"gradio {plan.gradio} has the extras: {', '.join(plan.extras) or 'none of oauth, mcp'}")
    # `spaces` is younger than many releases: it gets the newest version that fits what is
    # installed, with everything installed held where it is.
    frozen = subprocess.run(
        [UV, "pip", "freeze", "--python", VENV_PYTHON], check=True, capture_output=True, text=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
        pins.write(frozen)
    _run([*base, "-c", CONSTRAINTS, "-c", pins.name, *EXTRA_PACKAGES])
    os.unlink(pins.name)
    with open(PLAN, "w") as handle:
        json.dump(asdict(plan), handle, indent=1)
        handle.write("\n")


def _installed_extras(name: str) -> list[str]:
    found = subprocess.run(
        [
            VENV_PYTHON,
            "-c",
            "import importlib.metadata as m, sys; "
            "print(chr(10).join(m.metadata(sys.argv[1]).get_all('Provides-Extra') or []))",
            name,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


def _pip(args: list[str]) -> tuple[int, str]:
    """pip, its output streamed to the build log and kept."""
    command = [VENV_PYTHON, "-m", "pip", "install", *args]
    print("$ pip install " + " ".join(args), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output: list[str] = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        output.append(line)
    return proc.wait(), "".join(output)


def install_requirements(path: str) -> None:
    with open(PLAN) as handle:
        plan = Plan(**json.load(handle))
    with open(path, errors="replace") as handle:
        kept, dropped = filter_requirements(handle.read())
    for number, line in dropped:
        _say(
            f"requirements.txt line {number} ({line}) is left out: Gradio is sdk_version "
            f"{plan.gradio} from README.md, as on the Hub"
        )
    filtered = "/tmp/spaceport-requirements.txt"
    with open(filtered, "w") as handle:
        handle.write(kept)
    code, output = _pip(requirements_args(plan, filtered))
    if code == 0:
        return
    if not is_conflict(output):
        _say("pip could not install requirements.txt: fix the requirement its error names")
        raise SystemExit(code)
    # As the Hub does: requirements first, then Gradio over them (gradio wins the conflict).
    _say(
        f"requirements.txt conflicts with gradio=={plan.gradio} or the caps "
        f"({', '.join(plan.caps) or 'none'}); installing it as the Hub does: requirements "
        "first, then Gradio over them. Check the app against the versions pip reports"
    )
    code, _ = _pip(["-r", filtered])
    if code == 0:
        caps = f"{TOOLS_DIR}/caps.txt"
        with open(caps, "w") as handle:
            handle.write("".join(f"{cap}\n" for cap in plan.caps))
        code, _ = _pip([plan.gradio_requirement(), "-c", caps])
    if code != 0:
        _say("requirements.txt could not be installed beside Gradio: fix the line pip names")
        raise SystemExit(code)


def main(argv: Sequence[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "install":
            install(argv[1])
        elif len(argv) == 2 and argv[0] == "requirements":
            install_requirements(argv[1])
        else:
            print("usage: gradio_env.py install VERSION | requirements FILE", file=sys.stderr)
            return 2
    except EnvError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


def _parse_time(text: str) -> datetime:
    # Python < 3.11 (the image's may be 3.9) reads only 3 or 6 digits of a fraction.
    text = re.sub(r"\.(\d+)", lambda m: "." + (m[1] + "000000")[:6], text.replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _minor_key(version: str) -> tuple[int, int]:
    major, minor = python_minor(version).split(".")
    return int(major), int(minor)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
