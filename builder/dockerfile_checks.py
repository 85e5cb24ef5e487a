"""What a user's Dockerfile may make the Docker daemon fetch.

`ADD <url>` is fetched by the daemon itself, from the host's network namespace: outside the
build network and its proxy, with the host's loopback and LAN in reach. So an ADD of a URL is
allowed only when its host is one the build proxy would let through (an allowed package host
that resolves to no local address), git URLs not at all, and a source made of variables
(`ADD $URL /x`) neither, since Spaceport can't know what it expands to. The same holds for the
registry of a `FROM` image: the daemon pulls it from the host.

The parse follows Docker's own rules where they matter here: the `# escape=` directive, line
continuations (with comment lines inside them dropped), instructions in any case, `ONBUILD`,
flags such as `--chown=`, the JSON form, and BuildKit's heredocs (`RUN <<EOF` ... `EOF`, on
RUN, COPY and ADD), whose lines are the step's text, not instructions: a heredoc is taken
only where BuildKit's parser takes one (frontend/dockerfile/parser: a whole word
`[n]<<[-]NAME` of the line, quotes kept as its lexer keeps them), so a line BuildKit reads as
an instruction is never skipped here.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sandbox.build_proxy_server import Policy

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
# What Docker treats as a remote source (classic builder: http(s) URLs; git forms too, which
# newer builders fetch). Checked case-insensitively: better a false refusal than a fetch.
_URLISH = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)", re.IGNORECASE)
# The one URL shape allowed through: no user part, no backslash or percent-escapes in the
# host, so Spaceport's parse and the daemon's (Go net/url) can't disagree about the host.
_PLAIN_URL = re.compile(
    r"^https?://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?(?:[/?#][^\s@\\]*)?$"
)

Resolve = Callable[[str], list[str]]


class DockerfileRefused(Exception):
    """The Dockerfile asks the daemon for something Spaceport does not allow."""


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str  # upper case
    args: str
    heredocs: tuple[str, ...] = ()  # the bodies of its heredocs, in order


# BuildKit's reHeredoc, applied to one raw word: `<<EOF`, `<<-EOF`, `3<<"EOF"`.
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")


def raw_words(line: str) -> list[str]:
    """Words as BuildKit's shell lexer splits a line for heredocs (RawQuotes, RawEscapes):
    split on blanks outside quotes, quotes and backslashes kept in the word."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i = 0
    while i < len(line):
        char = line[i]
        if char in " \t\r\n\f\v":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if char == "\\" and i + 1 < len(line):
            word.append(line[i : i + 2])
            i += 2
        elif char == "'":
            end = line.find("'", i + 1)
            end = len(line) - 1 if end < 0 else end
            word.append(line[i : end + 1])
            i = end + 1
        elif char == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            word.append(line[i : j + 1])
            i = j + 1
        else:
            word.append(char)
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def heredoc_names(keyword: str, args: str) -> list[tuple[str, bool]]:
    """(terminator, strip leading tabs) of each heredoc the instruction opens, as BuildKit
    reads them; none for other instructions or the JSON form."""
    if keyword not in _HEREDOC_KEYWORDS or "<<" not in args or _is_json(args):
        return []
    found: list[tuple[str, bool]] = []
    for word in raw_words(args):
        match = _HEREDOC_WORD.match(word)
        if not match or not match.group(3):
            continue
        name = match.group(3)
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
            name = name[1:-1]
        elif any(c in name for c in "'\"\\"):
            # BuildKit would unquote a partly quoted word; refuse to guess where it ends.
            raise DockerfileRefused(
                f"heredoc marker {word!r}: quote the whole name (<<'EOF') or none of it"
            )
        if name:
            found.append((name, match.group(2) == "-"))
    return found


def _is_json(args: str) -> bool:
    if not args.startswith("["):
        return False
    try:
        values = json.loads(args)
    except ValueError:
        return False
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def _escape_char(lines: list[str]) -> str:
    for raw in lines:
        match = _DIRECTIVE.match(raw.strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("`", "\\"):
            return match.group(2)
    return "\\"


def instructions(text: str) -> Iterator[Instruction]:
    # Lines end at "\n" only, as BuildKit's scanner has it (splitlines would also split at
    # characters BuildKit keeps inside a line, and a heredoc could end early).
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    escape = _escape_char(lines)
    pending: list[str] = []
    start = 0
    bodies: list[tuple[str, bool, list[str]]] = []  # heredocs still being read
    done: list[str] = []
    opened: Instruction | None = None
    for number, raw in enumerate(lines, start=1):
        if bodies:
            name, chomp, body = bodies[0]
            if (raw.lstrip("\t") if chomp else raw) == name:
                done.append("\n".join(body) + ("\n" if body else ""))
                bodies.pop(0)
                if not bodies and opened is not None:
                    yield Instruction(opened.line, opened.keyword, opened.args, tuple(done))
                    opened = None
            else:
                body.append(raw)
            continue
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and (not stripped or stripped.startswith("#")):
            continue  # Docker drops comment and empty lines inside a continuation
        if not pending:
            start = number
        if stripped.endswith(escape):
            pending.append(stripped[: -len(escape)])
            continue
        pending.append(stripped)
        item = _instruction(start, " ".join(pending))
        pending = []
        names = heredoc_names(item.keyword, item.args)
        if names:
            bodies = [(name, chomp, []) for name, chomp in names]
            done, opened = [], item
            continue
        yield item
    if bodies:
        raise DockerfileRefused(
            f"Dockerfile line {opened.line if opened else 0}: the heredoc {bodies[0][0]} is "
            f"never closed: end it with a line holding only {bodies[0][0]}"
        )
    if pending:
        yield _instruction(start, " ".join(pending))


def _instruction(line: int, text: str) -> Instruction:
    keyword, _, args = text.strip().partition(" ")
    keyword = keyword.upper()
    if keyword == "ONBUILD":  # ONBUILD ADD ... runs in whatever builds FROM this image
        keyword, _, args = args.strip().partition(" ")
        keyword = keyword.upper()
    return Instruction(line, keyword, args.strip())


def _add_sources(args: str) -> list[str]:
    if args.startswith("["):
        try:
            values = json.loads(args)
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                return values[:-1]
        except ValueError:
            pass  # not JSON: Docker reads it as the shell form too
    words = args.split()
    while words and words[0].startswith("--"):
        words.pop(0)
    return words[:-1]


def check_dockerfile(text: str, policy: Policy, resolve: Resolve | None = None) -> None:
    """Raise DockerfileRefused (the message says what to change) or return."""
    resolve = resolve or _resolve
    for item in instructions(text):
        if item.keyword == "ADD":
            for source in _add_sources(item.args):
                _check_add_source(item.line, source, policy, resolve)
        elif item.keyword == "FROM":
            _check_from(item, policy, resolve)


def _check_add_source(line: int, source: str, policy: Policy, resolve: Resolve) -> None:
    where = f"Dockerfile line {line}: ADD {source}"
    if "$" in source:
        raise DockerfileRefused(
            f"{where}: Spaceport does not allow variables in ADD sources (the Docker daemon "
            "would fetch whatever they expand to); write the path out, or use COPY"
        )
    if not _URLISH.match(source):
        return  # a file of the build context
    lowered = source.lower()
    if (
        lowered.startswith(("git@", "git://", "github.com/"))
        or ".git#" in lowered
        or lowered.endswith(".git")
    ):
        raise DockerfileRefused(
            f"{where}: ADD of a git repository is not supported; clone it in a RUN step "
            "instead (builds reach only the allowed package hosts)"
        )
    match = _PLAIN_URL.match(source)
    if not match:
        raise DockerfileRefused(
            f"{where}: only plain http(s) URLs to an allowed package host may be ADDed "
            "(no user part, no escapes); download it in a RUN step instead"
        )
    host = match.group("host")
    _check_host(where, host, policy, resolve, setting="SPACEPORT_BUILD_EGRESS_ALLOW")


def _check_host(where: str, host: str, policy: Policy, resolve: Resolve, setting: str) -> None:
    if not policy.host_allowed(host):
        raise DockerfileRefused(
            f"{where}: {host} is not one of the hosts builds may fetch from ({setting}); "
            "copy the file into the repo, or ask the operator to allow the host"
        )
    try:
        addresses = resolve(host)
    except OSError as exc:
        raise DockerfileRefused(f"{where}: {host} does not resolve ({exc})") from exc
    try:
        policy.check(host, 443, addresses)
    except Exception as exc:  # noqa: BLE001 - Refused, or a malformed address
        raise DockerfileRefused(
            f"{where}: {host} resolves to a local address, which builds may never reach"
        ) from exc


def _check_from(item: Instruction, policy: Policy, resolve: Resolve) -> None:
    words = [w for w in item.args.split() if not w.startswith("--")]
    if not words or "$" in words[0]:
        return  # ARG-templated bases are resolved by the daemon against its own registry list
    image = words[0]
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first.lower() == "localhost"):
        return  # Docker Hub, or a name of an earlier stage
    host = first.rsplit(":", 1)[0].strip("[]") if first.count(":") <= 1 else first.strip("[]")
    try:
        addresses = resolve(host)
    except OSError:
        return  # the pull fails on its own, with the daemon's message
    if host.lower() == "localhost" or any(
        policy.address_blocked(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses
    ):
        raise DockerfileRefused(
            f"Dockerfile line {item.line}: FROM {image}: the registry {host} is a local "
            "address, which the Docker daemon would reach from the host; push the image to a "
            "public registry, or load it with docker load and name it without the registry"
        )


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
