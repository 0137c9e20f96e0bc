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

import sys
from collections.abc import Sequence

from conf.schema import ConfigError
from trainers import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse (:func:`trainers.cli.parse`), compose the config, train, evaluate, print."""
    from trainers.ppo_sb3 import PPOSettings, run

    overrides, settings, out, as_json = cli.parse(
        PPOSettings,
        sys.argv[1:] if argv is None else argv,
        description=__doc__.split("\n\n")[0],
        out_help="output folder (default outputs/<experiment>_sb3_ppo/<time>)",
    )
    try:
        return run(overrides, settings, out, as_json=as_json)
    except ConfigError as e:
        sys.exit(f"train_sb3_ppo: {e}")


if __name__ == "__main__":
    sys.exit(main())
