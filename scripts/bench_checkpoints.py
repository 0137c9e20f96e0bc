"""Damage checkpoints on purpose and count what the loader does (issue 7.2); prints one JSON line.

    python scripts/bench_checkpoints.py [--flips 1000] [--truncations 300] [--seed 0]

Simulates a small generative run, then, one trial at a time on fresh copies, flips one random
byte of the newest checkpoint file or of one of its blocks, or truncates the checkpoint file.
Each trial is **detected** (a ``RunError`` naming the file), **harmless** (the state loaded
equals the original) or **loaded wrong** (the failure that must never happen: the exit code is
then 1). The trials are :mod:`ga_sim.bench.checkpoints`; this file only parses the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from a checkout

from ga_sim.bench.checkpoints import run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the trials, print one JSON line; returns 1 if any damaged state loaded wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=1000, help="one-byte flips of the checkpoint file and of blocks")
    parser.add_argument("--truncations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = run(args.flips, args.truncations, args.seed)
    print(json.dumps(report))
    return 0 if report["loaded_wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
