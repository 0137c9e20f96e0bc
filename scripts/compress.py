"""Compress a run for replay and reading: ``ga-compress --name NAME`` (``python -m scripts.compress``).

Writes ``<results>/compressed/NAME/{movement.json,simulation.md,diffusion/}``; see :mod:`ga_sim.compress` and
:mod:`ga_sim.diffusion`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ga_sim.compress import compress
from ga_sim.runstore import DEFAULT_RESULTS, RunError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-compress``."""
    parser = argparse.ArgumentParser(prog="ga-compress", description="Compress a run for replay and reading.")
    parser.add_argument("--name", required=True, help="run name")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    args = parser.parse_args(argv)
    try:
        out = compress(args.results, args.name)
    except (RunError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'movement.json'}, {out / 'simulation.md'} and {out / 'diffusion'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
