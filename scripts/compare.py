"""Our GRPO against other MARL learners on the town: learning curves, seeds, CIs, equal tuning budgets.

Usage::

    python scripts/compare.py +experiment=artists [--methods grpo maskable_ppo ippo mappo rllib_ppo]
        [--seeds 0 1 2 3 4] [--tune-factors 0.3 1 3 --tune-seed 100] [--jobs 1]
        [--plot docs/compare_artists.png] [--json] [--out DIR] [-- METHOD:OPTION ...]
    python scripts/compare.py --merge A/compare.json B/compare.json [--plot ...] [--out DIR]

Every method runs per seed in a child process with the same Hydra overrides (same town, same budget in
town steps, same evaluation on the same fresh seeds). Prints the tables (final returns per group and
overall with the simple baselines, steps to 90% of the final return, wall time), or one JSON line with
``--json``; writes ``compare.json`` and ``compare.png`` (the learning curves) into ``--out``. The
comparison itself is :mod:`trainers.compare`; this file only parses the command line.

``--merge`` joins comparisons of the same town, overrides and seeds (e.g. a slow method run apart) into one:
tables, ``compare.json`` and the plot.

Options after ``--`` go to one method's command line, prefixed by its name (e.g.
``-- maskable_ppo:--n-epochs maskable_ppo:2``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from trainers.compare import METHODS, merge_files, run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run every method per seed, print the tables or one JSON line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, rest = argv[:k], argv[k + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. +experiment=artists trainer.iterations=10")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="trainer seeds (trainer.seed)")
    parser.add_argument(
        "--tune-factors",
        type=float,
        nargs="*",
        default=[],
        help="multiples of each method's default learning rate tried on --tune-seed (none: no tuning)",
    )
    parser.add_argument("--tune-seed", type=int, default=100, help="the seed the tuning runs on (not in --seeds)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (1: wall times do not compete)")
    parser.add_argument("--plot", type=Path, default=None, help="also save the curves' PNG there")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/compare/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the tables")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="compare.json files to join into one")
    args = parser.parse_args(argv)
    if args.merge:
        return merge_files(args.merge, args.out, args.plot, as_json=args.json)
    if any(o.split("=")[0].lstrip("+") == "trainer.seed" for o in args.overrides):
        parser.error("overrides: trainer.seed is set by --seeds. Fix: use --seeds 0 1 2")
    if any(f <= 0 for f in args.tune_factors):
        parser.error("--tune-factors: must be > 0. Fix: e.g. --tune-factors 0.3 1 3")
    if args.jobs < 1:
        parser.error("--jobs: must be >= 1. Fix: 1 runs one after the other")
    extra: dict[str, list[str]] = {}
    for item in rest:
        method, sep, option = item.partition(":")
        if not sep or method not in METHODS:
            parser.error(f"{item!r}: options after -- are METHOD:OPTION. Fix: e.g. maskable_ppo:--n-epochs")
        extra.setdefault(method, []).append(option)
    try:
        return run(
            args.overrides,
            args.seeds,
            args.out,
            extra,
            methods=args.methods,
            tune_factors=args.tune_factors,
            tune_seed=args.tune_seed,
            jobs=args.jobs,
            plot_path=args.plot,
            as_json=args.json,
        )
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
