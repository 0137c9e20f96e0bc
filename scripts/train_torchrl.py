"""IPPO / MAPPO from TorchRL on the town, one agent group per town group.

Usage (Hydra overrides of the GRPO trainer's config, then options)::

    python scripts/train_torchrl.py +experiment=artists trainer.seed=0 --algorithm mappo [--json]

Trains on the town that ``trainers.grpo`` builds from the same overrides, with GRPO's budget by
default, and evaluates it like GRPO (learning-curve points every ``trainer.eval_every`` iterations,
the final evaluation on GRPO's seeds). Writes ``config.yaml``, ``actors.pt`` and ``eval.json`` into
``--out`` and prints a table, or one JSON line with ``--json``. The training itself is
:mod:`trainers.torchrl_ppo`; this file only parses the command line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from conf.schema import ConfigError


def parse_args(argv: Sequence[str]) -> tuple[list[str], object, Path | None, bool]:
    """Hydra overrides (``key=value`` words), settings, output folder, ``--json``."""
    from trainers.torchrl_ppo import ALGORITHMS, TorchRLSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of conf/, e.g. +experiment=artists trainer.seed=1"
    )
    defaults = TorchRLSettings()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if name == "algorithm":
            parser.add_argument(flag, choices=ALGORITHMS, default=value)
        elif value is None:
            parser.add_argument(flag, type=float if name == "gamma" else int, default=None)
        else:
            parser.add_argument(flag, type=float if isinstance(value, float) else int, default=value)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default outputs/<experiment>_<algo>/<time>)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(list(argv))
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides: {bad} are not key=value. Fix: write Hydra overrides such as +experiment=artists")
    try:
        settings = TorchRLSettings(**{name: getattr(args, name) for name in asdict(defaults)})
    except ValueError as e:
        parser.error(str(e))
    return args.overrides, settings, args.out, args.json


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: compose the config, train, evaluate, print; returns the exit code."""
    overrides, settings, out, as_json = parse_args(sys.argv[1:] if argv is None else argv)
    from trainers.torchrl_ppo import run

    warnings.filterwarnings("ignore", message="PettingZoo in TorchRL is tested")  # a version note, not a fault
    try:
        return run(overrides, settings, out, as_json=as_json)  # type: ignore[arg-type]
    except ConfigError as e:
        sys.exit(f"train_torchrl: {e}")


if __name__ == "__main__":
    sys.exit(main())
