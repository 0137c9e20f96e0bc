"""Interventions with confidence intervals: ``ga-experiment SPEC.yaml`` (``python -m scripts.experiment SPEC.yaml``).

Branches a base run at a step, applies each branch's interventions, runs every branch for N seeds from the same
checkpoint and writes ``<results>/experiments/NAME/report.{json,md}`` (each figure per branch with mean ± 95% CI
and the paired difference to the control) and the branches' transcripts; see :mod:`ga_sim.experiment` for the
spec's format.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from ga_env.errors import TownDataError
from ga_sim.experiment import load_spec, report_markdown, run
from ga_sim.runstore import DEFAULT_RESULTS, RunError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-experiment``; returns the exit code (2 for a bad spec or run)."""
    parser = argparse.ArgumentParser(prog="ga-experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="the experiment's YAML (see ga_sim/experiment.py)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    parser.add_argument("--jobs", type=int, default=None, help="branch runs at once (default: the spec's jobs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar for the base run")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs: must be >= 1. Fix: 1 runs the branches one after the other")
    try:
        spec = load_spec(args.spec)
        if args.jobs is not None:
            spec = dataclasses.replace(spec, jobs=args.jobs)
        summary = run(args.results, spec, progress=not args.quiet)
    except (RunError, TownDataError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report_markdown(summary))
    print(f"wrote {args.results}/experiments/{spec.name}/report.json, report.md and transcripts/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
