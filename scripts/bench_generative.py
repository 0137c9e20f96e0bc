"""A simulated day of the 25 generative personas on a real model (issue 17): time, calls, tokens, sense.

    python scripts/bench_generative.py                        # 25 personas, 24 h from 07:00, llm=local (SmolLM2)
    python scripts/bench_generative.py --personas 4 --hours 2 # a CI-sized check
    python scripts/bench_generative.py llm=openai llm.preset=llamacpp llm.concurrency=4   # a llama.cpp server

Prints ONE JSON line (see :mod:`ga_sim.bench.generative` for what it holds); each simulated hour is
also reported on stderr as it ends. Extra arguments are Hydra overrides of the config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from a checkout

from ga_sim.bench.generative import run


def main(argv: list[str] | None = None) -> int:
    """Entry point: simulate and measure, print one JSON line; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--personas", type=int, default=25)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (6 steps of 10 minutes each)")
    parser.add_argument("--start", default="2025-02-13T07:00", help="simulated start time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line to this file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. llm=openai llm.preset=llamacpp")
    args = parser.parse_args(argv)
    report = run(args.overrides, personas=args.personas, hours=args.hours, start=args.start, seed=args.seed)
    line = json.dumps(report)
    print(line)
    if args.out is not None:
        args.out.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
