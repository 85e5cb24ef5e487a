"""What a docker Space's Dockerfile asks of BuildKit, read before the build: the features
Spaceport can't give (said with the line to change) and the notes the log should carry.

BuildKit itself would fail `RUN --mount=type=ssh` with "no SSH key", and `--network=host` or
`--security=insecure` with "entitlement not allowed", neither naming what to change here; a
`# syntax=` line would send it to a registry for a frontend image it can't reach.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from builder.dockerfile_checks import DockerfileRefused, Instruction, instructions

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass
class BuildKitPlan:
    secret_ids: list[str] = field(default_factory=list)  # mounted by some RUN step
    required_secrets: dict[str, int] = field(default_factory=dict)  # id -> line
    syntax: str | None = None  # the `# syntax=` directive, if any


def syntax_directive(text: str) -> str | None:
    """The frontend image a leading `# syntax=` (or `# syntax =`) directive names."""
    for raw in text.split("\n"):
        match = _DIRECTIVE.match(raw.strip())
        if not match:
            return None
        if match.group(1).lower() == "syntax":
            return match.group(2)
    return None


def _run_flags(args: str) -> list[str]:
    flags: list[str] = []
    for word in args.split():
        if not word.startswith("--"):
            break
        flags.append(word)
    return flags


def _mount_fields(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in next(csv.reader([value]), []):
        key, _, val = part.partition("=")
        fields[key.strip().lower()] = val.strip() if _ else "true"
    return fields


def plan(text: str) -> BuildKitPlan:
    """Raise DockerfileRefused for what can't be built here; else what the build needs."""
    result = BuildKitPlan(syntax=syntax_directive(text))
    for item in instructions(text):
        if item.keyword == "RUN":
            _check_run(item, result)
    return result


def _check_run(item: Instruction, result: BuildKitPlan) -> None:
    where = f"Dockerfile line {item.line}: RUN"
    for flag in _run_flags(item.args):
        name, _, value = flag[2:].partition("=")
        name = name.lower()
        if name == "network" and value.lower() == "host":
            raise DockerfileRefused(
                f"{where} --network=host: builds may not use the host's network (they reach "
                "only the package hosts, through the build proxy); drop the flag"
            )
        if name == "security" and value.lower() == "insecure":
            raise DockerfileRefused(
                f"{where} --security=insecure: builds here never run privileged steps; drop "
                "the flag"
            )
        if name != "mount":
            continue
        fields = _mount_fields(value)
        kind = fields.get("type", "bind").lower()
        if kind == "ssh":
            raise DockerfileRefused(
                f"{where} --mount=type=ssh: Spaceport has no SSH agent to forward to builds; "
                "fetch over https from an allowed package host, or commit the files"
            )
        if kind == "secret":
            secret_id = fields.get("id") or PurePosixPath(fields.get("target", "")).name
            if not secret_id:
                raise DockerfileRefused(f"{where} --mount=type=secret needs id=NAME")
            if secret_id not in result.secret_ids:
                result.secret_ids.append(secret_id)
            if fields.get("required", "false").lower() in ("true", "1"):
                result.required_secrets.setdefault(secret_id, item.line)
