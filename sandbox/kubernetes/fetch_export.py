"""Fetch another Space's files into a folder: the init container of a Kubernetes pod with a
`space` volume runs this (in Spaceport's own image) before the app starts.

    python -m sandbox.kubernetes.fetch_export DIR        # the URL in $SPACEPORT_EXPORT_URL

The URL is the platform's signed tar of the files (orchestrator/volumes/exports.py); it is
read from the environment (the pod's Secret), not the command line, and never printed
whole: its query is the permission. The tar is unpacked as it streams in, member by
member: no absolute name or '..', and tarfile's "data" filter (no links out of DIR, no
devices, no set-uid bits) and limits on its files and bytes; anything refused empties DIR
and exits 1 with the reason, so the app never starts on half the files. Standard library
only: the init container needs nothing but Python.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

URL_ENV = "SPACEPORT_EXPORT_URL"
DEFAULT_MAX_BYTES = 20 << 30  # SPACEPORT_MAX_REPO_BYTES' default: no Space is larger
DEFAULT_MAX_FILES = 100_000  # SPACEPORT_MAX_TREE_ENTRIES' default
ATTEMPTS = 5  # connection failures (the API restarting): then the kubelet retries the pod
TIMEOUT_SECONDS = 60.0
# Answers that another try would not change: a bad or expired signature, files gone.
FINAL_STATUSES = (400, 401, 403, 404, 410)


class FetchError(Exception):
    """The files can't be had (a refused tar, a refused URL): no point trying again."""


class _Retry(Exception):
    """A failure another try may not have (a dropped connection, a 5xx)."""


def shown(url: str) -> str:
    """The URL without its query (the signature): what may be printed."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class _Counted:
    """A read-only stream that refuses to yield more than `limit` bytes: a tar larger
    than its members admit (padding, headers, junk) is cut off too."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise FetchError(f"the files are larger than the limit of {self.limit} bytes")
        return data


def clear(folder: Path) -> None:
    """Empty `folder`, keeping it (an emptyDir's mount point can't be removed)."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def unpack(stream: IO[bytes], dest: Path, max_bytes: int, max_files: int) -> tuple[int, int]:
    """Unpack a tar stream into `dest`; (files, bytes). Raises FetchError for a member the
    "data" filter refuses, a kind of member that is not a file, folder or link, or past a
    limit (checked on each member's header, before its data is written)."""
    count = total = 0
    # Headers and padding count too: a few KiB per member (a PAX header holding a long
    # name), and the tar's last record.
    counted = _Counted(stream, max_bytes + 8192 * (max_files + 1) + tarfile.RECORDSIZE)
    try:
        with tarfile.open(fileobj=counted, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                count += 1
                if count > max_files:
                    raise FetchError(f"the files are more than the limit of {max_files}")
                total += member.size
                if total > max_bytes:
                    raise FetchError(f"the files are larger than the limit of {max_bytes} bytes")
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    # The data filter would strip a leading "/": ours never has one, so a
                    # tar that does is not ours. Refused outright, as '..' is.
                    raise FetchError(f"refused {member.name!r}: an absolute path or '..'")
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise FetchError(f"{member.name!r} is not a file, a folder or a link")
                try:
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as exc:
                    raise FetchError(f"refused {member.name!r}: {exc}") from exc
    except tarfile.ReadError as exc:
        if count == 0:
            raise FetchError(f"the answer is not a tar file: {exc}") from exc
        raise _Retry(f"the download broke off: {exc}") from exc
    except (tarfile.TarError, http.client.IncompleteRead, OSError) as exc:
        raise _Retry(f"the download broke off: {exc}") from exc
    return count, total


def _refusal(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read(64 * 1024) or b"{}")
    except (ValueError, OSError):
        body = {}
    message = body.get("error") if isinstance(body, dict) else None
    return f"HTTP {exc.code}: {message or exc.reason}"


def fetch(
    url: str,
    dest: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    attempts: int = ATTEMPTS,
    timeout: float = TIMEOUT_SECONDS,
) -> tuple[int, int]:
    """Fetch the tar at `url` into `dest` (emptied first: a retried init container finds
    its last try's files); (files, bytes). Raises FetchError, `dest` left empty."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"{URL_ENV} must be an http(s) URL")
    dest.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(2**attempt, 30))
        clear(dest)
        request = urllib.request.Request(url, headers={"User-Agent": "spaceport-fetch-export"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return unpack(response, dest, max_bytes, max_files)
        except urllib.error.HTTPError as exc:
            last = _refusal(exc)
            if exc.code in FINAL_STATUSES:
                clear(dest)
                raise FetchError(f"{shown(url)} refused: {last}") from None
        except (urllib.error.URLError, _Retry, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        except FetchError:
            clear(dest)
            raise
    clear(dest)
    raise FetchError(f"{shown(url)} could not be fetched in {attempts} tries: {last}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.kubernetes.fetch_export",
        description="Fetch a signed tar of another Space's files into DIR.",
    )
    parser.add_argument("dir", type=Path, help="the folder to unpack into (emptied first)")
    parser.add_argument("--url", default=None, help=f"the signed URL (default: ${URL_ENV})")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--max-files", type=int, default=DEFAULT_MAX_FILES)
    args = parser.parse_args(argv)
    url = args.url or os.environ.get(URL_ENV, "")
    if not url:
        print(f"fetch_export: no URL: set {URL_ENV}", file=sys.stderr)
        return 2
    try:
        files, size = fetch(url, args.dir, args.max_bytes, args.max_files)
    except FetchError as exc:
        print(f"fetch_export: {exc}", file=sys.stderr)
        return 1
    print(f"fetch_export: {files} entries, {size} bytes from {shown(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
