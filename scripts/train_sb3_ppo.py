"""Stable-Baselines3 PPO on the town, with parameter sharing through SuperSuit.

Usage (Hydra overrides of the GRPO trainer's config, then PPO options)::

    python scripts/train_sb3_ppo.py +experiment=artists trainer.seed=0 [--env-steps 46080] [--json]

Trains one PPO policy shared by every persona on the town that ``trainers.grpo`` builds from the
same overrides, with GRPO's budget by default, and evaluates it like GRPO. Writes ``config.yaml``,
``ppo_model.zip`` and ``eval.json`` into ``--out`` and prints a table, or one JSON line with
``--json``. The training itself is :mod:`trainers.ppo_sb3`; this file only parses the command line.
"""

from __future__ import annotations

import os

# Same threading policy as the GRPO trainer: small matrices, 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from conf.schema import ConfigError
from trainers.ppo_sb3 import PPOSettings, run


def parse_args(argv: Sequence[str]) -> tuple[list[str], PPOSettings, Path | None, bool]:
    """Hydra overrides (``key=value`` words), PPO settings, output folder, ``--json``."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of conf/, e.g. +experiment=artists trainer.seed=1"
    )
    defaults = PPOSettings()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        elif name == "net_arch":
            parser.add_argument(flag, type=int, nargs="+", default=list(value))
        elif value is None:
            parser.add_argument(flag, type=float if name == "gamma" else int, default=None)
        else:
            kind = float if isinstance(value, float) else int
            parser.add_argument(flag, type=kind, default=value)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default outputs/<experiment>_sb3_ppo/<time>)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(list(argv))
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides: {bad} are not key=value. Fix: write Hydra overrides such as +experiment=artists")
    values = {name: getattr(args, name) for name in asdict(defaults)}
    values["net_arch"] = tuple(values["net_arch"])
    try:
        settings = PPOSettings(**values)
    except ValueError as e:
        parser.error(str(e))
    return args.overrides, settings, args.out, args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: compose the config, train, evaluate, print; returns the exit code."""
    overrides, settings, out, as_json = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(overrides, settings, out, as_json=as_json)
    except ConfigError as e:
        sys.exit(f"train_sb3_ppo: {e}")


if __name__ == "__main__":
    sys.exit(main())
