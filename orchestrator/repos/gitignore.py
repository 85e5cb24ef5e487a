"""Which paths a .gitignore excludes, as the Hub's preupload tells the client
(`shouldIgnore`), decided by git itself so that every rule (negations, `dir/`, `**`,
anchored patterns) means what it means to `git add`.

`git check-ignore --no-index` reads the rules from a .gitignore file in a work tree, and
the paths need not exist there: a throwaway repo holding just that file is enough. The
user's and the machine's own excludes are switched off, so only the given text counts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

# What is read of a .gitignore (a pushed one may be any size); no real one comes near.
MAX_BYTES = 256 << 10


def ignored(gitignore: str, paths: list[str]) -> set[str]:
    """The `paths` that `gitignore` (the text of a root .gitignore) excludes."""
    wanted = [p for p in paths if p and "\0" not in p]
    gitignore = gitignore[:MAX_BYTES]
    if not gitignore.strip() or not wanted:
        return set()
    with tempfile.TemporaryDirectory(prefix="spaceport-gitignore-") as scratch:
        root = Path(scratch)
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
        (root / ".gitignore").write_text(gitignore, errors="surrogateescape")
        result = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "-c",
                f"core.excludesFile={os.devnull}",
                "check-ignore",
                "--no-index",
                "--stdin",
                "-z",
            ],
            input="".join(f"{p}\0" for p in wanted).encode(),
            capture_output=True,
            env=env,
            check=False,
        )
    if result.returncode not in (0, 1):  # 1: nothing is ignored
        raise RuntimeError(f"git check-ignore: {result.stderr.decode(errors='replace')}")
    return {p for p in result.stdout.decode(errors="surrogateescape").split("\0") if p}
