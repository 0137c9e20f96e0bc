"""Benchmark of small-model decisions (issue 15 part 3); prints one JSON line.

On the ``local`` backend (SmolLM2-135M-Instruct), N of the personas' real decide prompts answered
with and without ``llm.calibrate`` (contextual calibration) and ``llm.shuffle_options``: the
first-option rate, the mean decision entropy and the choice distribution of each setting. The
figures are measured by :mod:`ga_sim.bench.choices` (which explains each); this file only parses
the command line. Progress goes to stderr.

Usage: ``python scripts/bench_choices.py [--prompts 48] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import sys

from ga_sim.bench.choices import run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the settings, print one JSON line; returns the exit code."""
    parser = argparse.ArgumentParser(description="small-model decision benchmark (one JSON line)")
    parser.add_argument("--prompts", type=int, default=48, help="decide prompts per setting")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.threads < 1:
        parser.error("--prompts and --threads must be >= 1")
    print(json.dumps(run(args.prompts, threads=args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
