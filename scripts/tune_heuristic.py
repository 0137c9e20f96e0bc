"""Tune the heuristic baseline per experiment on training seeds; writes agents/data/heuristic_params.json.

    python scripts/tune_heuristic.py                       # artists and society, 16 training seeds
    python scripts/tune_heuristic.py --experiments artists --seeds 8

"tuned" is a coordinate grid search (the tuned heuristic of the result tables), "upper" a CEM
search started from it (the upper reference); see trainers/heuristic_search.py. Seeds are
training seeds (0..N-1), never the evaluation seeds (>= trainers.grpo.EVAL_SEED_BASE).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainers.heuristic_search import PARAMS_FILE, tune


def main(argv: list[str] | None = None) -> int:
    """Entry point: tune each experiment and write the table; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["artists", "society"])
    ap.add_argument("--seeds", type=int, default=16, help="training seeds 0..N-1")
    ap.add_argument("--cem-iterations", type=int, default=8)
    ap.add_argument("--cem-population", type=int, default=24)
    ap.add_argument("--out", type=Path, default=PARAMS_FILE)
    args = ap.parse_args(argv)
    tune(
        args.experiments,
        args.seeds,
        cem_iterations=args.cem_iterations,
        cem_population=args.cem_population,
        out=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
