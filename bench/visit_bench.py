"""Sleep and the visitor queue in one run: what a visitor waits for, beside its references.

    .venv/bin/python -m bench.visit_bench [--runs N] [--waiting 500]

The two halves are the benches that measure them, run one after the other in this process:

1. `bench.wake_bench`: wake -> first response from light sleep and from deep sleep, each
   beside a cold `docker run` of the same image (same limits) and a bare process start
   (goals: light <= 0.1x, deep <= 1.2x the cold `docker run`);
2. `bench.queue_bench`: what the queue costs an admitted visitor's request, then 500
   waiting visitors on one Space of concurrency 1 over HTTP: admission latency p50/p99
   (goal p99 <= 50 ms) and answers per second beside the queue off, and how long after a
   slot frees the next visitor's long-poll is told (goal <= 200 ms).

Nothing is asserted; the figures go into bench/README.md.
"""

from __future__ import annotations

import argparse
import sys

from bench import queue_bench, wake_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.visit_bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=1, help="wake repetitions (default 1)")
    parser.add_argument("--waiting", type=int, default=500, help="waiting visitors (500)")
    args = parser.parse_args(argv)
    print("== wake: light and deep sleep, beside a cold docker run and a process start ==")
    wake_bench.run(args.runs)
    print("\n== the visitor queue ==", flush=True)
    queue_bench.main(["--waiting", str(args.waiting)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
