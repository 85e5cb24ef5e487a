"""How a Hub API commit's cost grows with its files: orchestrator.repos.commit.create_commit
on a fresh bare repo, for 1k, 2k, 4k, ... files (the first commit, then the same files again
on top of it), in a temporary home. No server, no Docker; a few seconds.

    .venv/bin/python -m bench.commit_bench [--sizes 1000,2000,4000,8000,20000]

Linear cost shows as a constant time per file down the table (before issue 7 each file was
checked against every other one: a 20k-file commit took 311 s).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,2000,4000,8000,20000")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="spaceport-commit-bench-"))
    os.environ["SPACEPORT_HOME"] = str(home)
    from orchestrator.repos import commit as repo_commit
    from orchestrator.repos import store as repos
    from orchestrator.repos.commit import AddFile

    print("| files | first commit s | ms/file | same files again s | ms/file |")
    print("| --- | --- | --- | --- | --- |")
    for size in (int(n) for n in args.sizes.split(",")):
        repo = repos.init_bare("bench", f"files-{size}")
        scratch = Path(tempfile.mkdtemp(dir=home))
        operations = []
        for i in range(size):
            source = scratch / str(i)
            source.write_text(f"{i}\n")
            operations.append(AddFile(f"d{i % 100}/sub{i % 7}/f{i}.txt", source))
        timings = []
        parent = None
        for message in ("first\n", "again\n"):
            start = time.perf_counter()
            parent = repo_commit.create_commit(
                repo, "refs/heads/main", parent, operations, message, ("bench", "b@x")
            )
            timings.append(time.perf_counter() - start)
        print(
            f"| {size} | {timings[0]:.2f} | {1000 * timings[0] / size:.3f} | "
            f"{timings[1]:.2f} | {1000 * timings[1] / size:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
