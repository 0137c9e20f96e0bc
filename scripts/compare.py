"""GRPO (ours, NumPy) vs Stable-Baselines3 PPO on the town, at equal env steps and the same seeds.

Usage::

    python scripts/compare.py +experiment=artists [--seeds 0 1 2] [--json] [--out DIR] [-- PPO options]

For each trainer seed it runs ``trainers.grpo.train`` in this process and
``scripts/train_sb3_ppo.py`` in a child process (torch stays out of the GRPO process), with the
same Hydra overrides, so both see the same town, the same number of town steps and the same
evaluation. Prints one table: final mean return per agent per group (mean ± 95% CI over the
seeds) for GRPO, PPO and the baselines, env steps and wall time; with ``--json``, one JSON line
instead (the benchmark figure). The comparison itself is :mod:`trainers.compare`; this file only
parses the command line.

Extra options after ``--`` go to ``train_sb3_ppo.py`` (e.g. ``-- --learning-rate 3e-4``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from trainers.compare import run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run both trainers per seed, print the table or one JSON line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. +experiment=artists trainer.iterations=10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="trainer seeds (trainer.seed)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/compare/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args(argv)
    if any(o.split("=")[0].lstrip("+") == "trainer.seed" for o in args.overrides):
        parser.error("overrides: trainer.seed is set by --seeds. Fix: use --seeds 0 1 2")
    return run(args.overrides, args.seeds, args.out, extra, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
