"""Simulate the town as a named run: ``ga-simulate --name NAME --step 144`` (``python -m scripts.simulate``).

The workflow of the original Generative Agents, made reliable::

    ga-simulate --name monday --start "2023-02-13 07:00" --step 144 --stride 10
    ga-simulate --name monday --resume --step 144          # continue exactly where it stopped
    ga-simulate --name tuesday --fork monday --step 72     # a new run from monday's latest checkpoint
    ga-simulate --name monday --resume --interactive       # the console (type help)
    ga-simulate --name watch --mind trained agent.checkpoint=outputs/artists/<run>/checkpoint.npz
    ga-simulate --name mine env.town=path/to/my_town      # a town folder of your own
    ga-simulate --name taught --lessons outputs/artists/<run>   # a GRPO run's lessons in the prompts

Positional arguments are Hydra overrides of the config (``conf/``). The simulation itself lives in
:mod:`ga_sim.simulation`; this file only parses the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ga_sim.runstore import DEFAULT_RESULTS
from ga_sim.simulation import MINDS, command


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """``(options, Hydra overrides)``."""
    parser = argparse.ArgumentParser(
        prog="ga-simulate",
        description="Simulate the town as a named run (see the module docstring).",
        epilog="Positional KEY=VALUE arguments are Hydra overrides, e.g. env.max_agents=8 llm=scripted.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (KEY=VALUE) of conf/config.yaml")
    parser.add_argument("--name", required=True, help="unique run name (letters, digits, _ - .)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    parser.add_argument("--start", default="2023-02-13 07:00", help="start date and time, 'YYYY-MM-DD HH:MM'")
    parser.add_argument("--step", type=int, default=0, help="steps to simulate now (default 0)")
    parser.add_argument("--until", type=int, default=None, help="simulate until the run has this many steps")
    parser.add_argument("--stride", type=int, default=None, help="minutes per step (default: env.stride, 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the town and the minds")
    parser.add_argument("--mind", choices=MINDS, default=None, help="who decides (default: generative if installed)")
    parser.add_argument(
        "--lessons",
        metavar="RUN_OR_CHECKPOINT",
        default=None,
        help="put a GRPO run's lessons (its folder or checkpoint.npz) into the personas' prompts",
    )
    parser.add_argument("--resume", action="store_true", help="continue the named run from its last checkpoint")
    parser.add_argument("--fork", metavar="OTHER", default=None, help="start from run OTHER's latest checkpoint")
    parser.add_argument("--interactive", action="store_true", help="open the console (commands on stdin)")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="checkpoint every N steps (0 = only at end)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unknown options {unknown}; Hydra overrides are written KEY=VALUE without dashes")
    return args, list(args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-simulate``; returns the exit code."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args, overrides = parse_args(argv)
    return command(args, overrides)


if __name__ == "__main__":
    sys.exit(main())
