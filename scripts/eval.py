"""Evaluate runs: objective metrics and a pairwise LLM judge (``ga-eval``, ``python -m scripts.eval``).

    ga-eval --name monday                                     # metrics of one run
    ga-eval --name monday --against tuesday                   # metrics side by side
    ga-eval --name monday --against tuesday --judge llm=openai llm.preset=ollama
    ga-eval --name monday --interview                         # believability interview of the personas
    ga-eval --name monday --against tuesday --interview llm=openai llm.preset=ollama   # ...judged pairwise

The metrics and the judge are :mod:`ga_sim.metrics`, the interviews :mod:`ga_sim.interview`; this file only parses the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ga_sim.metrics import command
from ga_sim.runstore import DEFAULT_RESULTS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-eval``."""
    parser = argparse.ArgumentParser(prog="ga-eval", description="Metrics of runs and a pairwise LLM judge.")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides choosing the judge's LLM (llm=openai ...)")
    parser.add_argument("--name", required=True, help="run A")
    parser.add_argument("--against", default=None, help="run B (for side-by-side metrics and the judge)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    parser.add_argument("--judge", action="store_true", help="ask the LLM judge (needs --against)")
    parser.add_argument("--context-chars", type=int, default=None, help="judge prompt budget in characters")
    parser.add_argument(
        "--interview",
        action="store_true",
        help="interview the personas (five categories); judged pairwise with --against",
    )
    parser.add_argument("--sample", type=int, default=None, help="interview this many personas (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="which personas --sample picks")
    args = parser.parse_args(argv)
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
