"""Long-run benchmark (issue 7.6): do step time and memory stay flat over a simulated week?

    python scripts/bench_longrun.py                  # 7 days, 25 personas, generative minds, scripted backend
    python scripts/bench_longrun.py --days 2 --personas 8
    python scripts/bench_longrun.py --memory-capacity 256   # personas forget beyond 256 memories each

Runs a named simulation in a temporary results folder through the same code as ``ga-simulate``
and prints ONE JSON line: per simulated day the step times, the resident memory, the checkpoint
sizes and the memories held by the personas, and the last-day / first-day ratios (each day is
also printed to stderr as it ends). The measurement is :mod:`ga_sim.bench.longrun`; this file
only parses the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from a checkout

from ga_sim.bench.longrun import run


def main(argv: list[str] | None = None) -> int:
    """Entry point: simulate and measure, print one JSON line; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--personas", type=int, default=25)
    parser.add_argument("--mind", default="generative", choices=("generative", "scripted"))
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument(
        "--memory-capacity", type=int, default=None, help="memories each persona keeps (default: never forget)"
    )
    parser.add_argument(
        "--background-checkpoints", action="store_true", help="write checkpoints from a forked child process"
    )
    args = parser.parse_args(argv)
    report = run(
        args.days,
        args.personas,
        args.mind,
        args.checkpoint_every,
        args.memory_capacity,
        background_checkpoints=args.background_checkpoints,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
