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

import sys
import warnings
from collections.abc import Sequence

from conf.schema import ConfigError
from trainers import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse (:func:`trainers.cli.parse`), compose the config, train, evaluate, print."""
    from trainers.torchrl_ppo import ALGORITHMS, TorchRLSettings, run

    overrides, settings, out, as_json = cli.parse(
        TorchRLSettings,
        sys.argv[1:] if argv is None else argv,
        description=__doc__.split("\n\n")[0],
        out_help="output folder (default outputs/<experiment>_<algorithm>/<time>)",
        choices={"algorithm": ALGORITHMS},
    )
    warnings.filterwarnings("ignore", message="PettingZoo in TorchRL is tested")  # a version note, not a fault
    try:
        return run(overrides, settings, out, as_json=as_json)
    except ConfigError as e:
        sys.exit(f"train_torchrl: {e}")


if __name__ == "__main__":
    sys.exit(main())
