"""RLlib multi-agent PPO on the town: one policy per town group, on a local Ray runtime or a cluster.

Usage (Hydra overrides of the GRPO trainer's config, then options)::

    python scripts/train_rllib.py +experiment=artists trainer.seed=0 [--json]
    python scripts/train_rllib.py +experiment=artists --address auto --env-runners 8   # on a Ray cluster

Trains on the town that ``trainers.grpo`` builds from the same overrides, with GRPO's budget by
default, and evaluates it like GRPO. Writes ``config.yaml``, ``rllib_checkpoint/`` and ``eval.json``
into ``--out`` and prints a table, or one JSON line with ``--json``. The training itself is
:mod:`trainers.rllib_ppo`; this file only parses the command line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from conf.schema import ConfigError


def parse_args(argv: Sequence[str]) -> tuple[list[str], object, Path | None, bool]:
    """Hydra overrides (``key=value`` words), settings, output folder, ``--json``."""
    from trainers.rllib_ppo import RLlibSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of conf/, e.g. +experiment=artists trainer.seed=1"
    )
    defaults = RLlibSettings()
    for name, value in asdict(defaults).items():
        flag = "--" + name.rstrip("_").replace("_", "-")
        if name == "address":
            parser.add_argument(flag, dest=name, default=None, help="Ray cluster (auto, ray://host:10001)")
        elif value is None:
            parser.add_argument(flag, dest=name, type=float if name == "gamma" else int, default=None)
        else:
            parser.add_argument(flag, dest=name, type=float if isinstance(value, float) else int, default=value)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default outputs/<experiment>_rllib_ppo/<time>)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(list(argv))
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides: {bad} are not key=value. Fix: write Hydra overrides such as +experiment=artists")
    try:
        settings = RLlibSettings(**{name: getattr(args, name) for name in asdict(defaults)})
    except ValueError as e:
        parser.error(str(e))
    return args.overrides, settings, args.out, args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: compose the config, train, evaluate, print; returns the exit code."""
    overrides, settings, out, as_json = parse_args(sys.argv[1:] if argv is None else argv)
    from trainers.rllib_ppo import run

    try:
        return run(overrides, settings, out, as_json=as_json)  # type: ignore[arg-type]
    except ConfigError as e:
        sys.exit(f"train_rllib: {e}")


if __name__ == "__main__":
    sys.exit(main())
