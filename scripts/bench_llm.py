"""Benchmark of the LLM backends (issue 4.4); prints one JSON line.

1. ``concurrency``: 25 personas decide in one step through the ``openai`` backend against the
   loopback server with a fixed latency L per answer; the step's wall time divided by L.
2. ``local_latency``: the median latency of one constrained decision of the ``local`` backend
   (SmolLM2-135M-Instruct, llama-cpp-python).
3. ``lesson_shift``: how much lessons favouring one action (``--favour``) shift the ``local``
   backend's choices over >= 100 of the personas' real decision prompts; ``shift_shuffled`` (not
   run by default) lists the options in a random order per prompt.

The figures are measured by :mod:`ga_sim.bench.llm` (which explains each); this file only parses
the command line. Progress goes to stderr.

Usage: ``python scripts/bench_llm.py [--latency 0.5,1.0] [--prompts 100] [--favour chat] [--parts concurrency,local,shift]``
"""

from __future__ import annotations

import argparse
import json
import sys

from ga_sim.bench.llm import FAVOURING, run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the chosen figures, print one JSON line; returns the exit code."""
    parser = argparse.ArgumentParser(description="LLM backend benchmark (one JSON line)")
    parser.add_argument("--latency", default="0.5,1.0", help="loopback latencies L per answer (s), comma-separated")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of 25 decisions")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the local backend")
    parser.add_argument("--prompts", type=int, default=100, help="decision prompts per condition (>= 100)")
    parser.add_argument("--favour", default="chat", choices=sorted(FAVOURING), help="action the lessons favour")
    parser.add_argument("--shift-threads", type=int, default=1, help="threads for the lesson-shift run")
    parser.add_argument(
        "--parts",
        default="concurrency,local,shift",
        help="figures to run: concurrency, local, shift, shift_shuffled (comma-separated)",
    )
    args = parser.parse_args(argv)
    report = run(
        set(args.parts.split(",")),
        latencies=[float(x) for x in args.latency.split(",")],
        steps=args.steps,
        threads=args.threads,
        prompts=args.prompts,
        favour=args.favour,
        shift_threads=args.shift_threads,
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
