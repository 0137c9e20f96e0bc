"""Benchmark: town env throughput (random actions) vs mpe2's simple_spread_v3.

Prints one JSON line. Usage::

    python scripts/bench_env.py [--steps 3000] [--repeats 3] [--group-size 16]

Figures are agent-steps per second through the public PettingZoo ``step()`` API, best of
``--repeats`` runs, single process; the batched GRPO group (``--group-size`` episodes) against the
same envs stepped one by one; and Town-v0 against Town-v1 (see :mod:`ga_sim.bench.env`, which
measures; this file only parses the command line). For stable figures run it on one core:
``OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_env.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ga_sim.bench.env import run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the benchmark, print one JSON line; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=16)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.steps, args.repeats, args.group_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
