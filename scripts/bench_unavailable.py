"""How fast a run learns that its LLM endpoint is dead, silent or misconfigured; prints one JSON line.

    python scripts/bench_unavailable.py [--personas 10] [--steps 12]

Preflight of a closed port, a refused key and a silent server; a generative run whose server is
killed (SIGKILL) or frozen (SIGSTOP) after 3 steps: seconds to a clean stop, the checkpointed step,
and whether ``--resume`` completes the run. The cases are :mod:`ga_sim.bench.unavailable`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from a checkout

from ga_sim.bench.unavailable import run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the cases, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=10)
    parser.add_argument("--steps", type=int, default=12, help="steps of the runs (the server fails after 3)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.personas, args.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
