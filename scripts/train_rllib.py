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

import sys
from collections.abc import Sequence

from conf.schema import ConfigError
from trainers import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse (:func:`trainers.cli.parse`), compose the config, train, evaluate, print."""
    from trainers.rllib_ppo import RLlibSettings, run

    overrides, settings, out, as_json = cli.parse(
        RLlibSettings,
        sys.argv[1:] if argv is None else argv,
        description=__doc__.split("\n\n")[0],
        out_help="output folder (default outputs/<experiment>_rllib_ppo/<time>)",
    )
    try:
        return run(overrides, settings, out, as_json=as_json)
    except ConfigError as e:
        sys.exit(f"train_rllib: {e}")


if __name__ == "__main__":
    sys.exit(main())
