"""The README's result tables: GRPO over several trainer seeds beside every baseline, with 95% CIs.

    python scripts/results.py                                   # artists + society, seeds 0-4
    python scripts/results.py --experiments artists --seeds 0 1 --jobs 2 --out /tmp/res

Each (experiment, seed) is one default run of the main command (``python -m trainers.grpo
+experiment=NAME trainer.seed=S``), whose final evaluation plays the trained policy and the
baselines (random, scripted, chat-when-possible, the tuned heuristic and the CEM upper reference)
on the same ``trainer.eval_episodes`` fresh seeds. The table gives, per policy and group, the mean
over trainer seeds of the mean per-agent return and the 95% CI over seeds (Student's t), the
ratios of trained to the best simple baseline (random, scripted, chat) and to the tuned
heuristic, trained as a % of the upper reference, and the goal metrics. Writes
``<out>/results.json``, ``<out>/results.md`` and ``<out>/results_<experiment>.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.report import run


def main(argv: list[str] | None = None) -> int:
    """Entry point: train (or re-evaluate) the runs, write and print the tables; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["artists", "society"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--runs", type=Path, default=Path("outputs/results"), help="where the runs are written")
    ap.add_argument(
        "--reuse", action="store_true", help="evaluate finished runs again instead of training (after re-tuning)"
    )
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args(argv)
    print(
        run(
            args.experiments,
            args.seeds,
            jobs=args.jobs,
            out=args.out,
            runs=args.runs,
            reuse=args.reuse,
            overrides=args.overrides,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
