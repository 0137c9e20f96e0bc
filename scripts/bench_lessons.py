"""Do trained lessons change what LLM personas do (issue 15)? Prints one JSON line.

The same evaluation seeds played by LLM personas (the neuro-symbolic mind and the generative
personas) with the trained run's lessons, no lessons, or placebo lessons of the same length, with
plain and calibrated choice log-probs: returns, action shares, goal metrics, first-option rate and
the share of decisions the lessons change, each as mean and 95% CI over the seeds. The design and
every figure are explained in :mod:`ga_sim.bench.lessons`; this file only parses the command line.
Progress goes to stderr.

Usage::

    python scripts/bench_lessons.py [--seeds 20] [--jobs 2] [--run RUN_DIR] [OVERRIDE ...]
    python scripts/bench_lessons.py --seeds 20 llm=openai llm.preset=ollama llm.model=qwen2.5:7b
"""

from __future__ import annotations

import argparse
import json
import sys

from ga_sim.bench.lessons import MINDS, run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the conditions, print one JSON line; returns the exit code."""
    parser = argparse.ArgumentParser(description="lessons vs no lessons vs placebo (one JSON line)")
    parser.add_argument("--seeds", type=int, default=20, help="evaluation seeds (>= 2)")
    parser.add_argument("--steps", type=int, default=8, help="steps per neuro-symbolic episode")
    parser.add_argument("--generative-steps", type=int, default=6, help="steps per generative episode")
    parser.add_argument("--generative-agents", type=int, default=4, help="personas of the generative town")
    parser.add_argument("--run", default=None, help="a GRPO run folder or checkpoint.npz (default: train one)")
    parser.add_argument("--minds", default=",".join(MINDS), help="comma-separated: " + ", ".join(MINDS))
    parser.add_argument("--jobs", type=int, default=2, help="processes (one mind each)")
    parser.add_argument("--cache-dir", default=None, help="answer cache (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. llm=openai llm.base_url=...")
    args = parser.parse_args(argv)
    if args.seeds < 2 or min(args.steps, args.generative_steps, args.generative_agents, args.jobs) < 1:
        parser.error("--seeds must be >= 2 and --steps, --generative-steps, --generative-agents, --jobs >= 1")
    out = run(
        seeds=args.seeds,
        steps=args.steps,
        generative_steps=args.generative_steps,
        generative_agents=args.generative_agents,
        run_dir=args.run,
        overrides=args.overrides,
        minds=[m.strip() for m in args.minds.split(",") if m.strip()],
        jobs=args.jobs,
        cache_dir=args.cache_dir,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
