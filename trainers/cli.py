"""What the other-library trainers' command lines share: settings dataclass -> flags, and compose/train/print.

``scripts/train_sb3_ppo.py``, ``scripts/train_torchrl.py`` and ``scripts/train_rllib.py`` each take Hydra overrides
of ``conf/`` (the GRPO trainer's town and budget) followed by the flags of one frozen settings dataclass
(:class:`trainers.ppo_sb3.PPOSettings`, :class:`trainers.torchrl_ppo.TorchRLSettings`,
:class:`trainers.rllib_ppo.RLlibSettings`), then ``--out`` and ``--json``. :func:`parse` builds that command line
from the dataclass (one flag per field, its docstring-free default shown by ``--help``) and :func:`run` does what
every trainer does with it: compose the config, write ``config.yaml``, train, print a table or one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from conf.compose import compose
from conf.schema import Config
from ga_env.checkpoint import atomic_write_bytes

S = TypeVar("S")


def _kind(field: dataclasses.Field[Any], value: Any) -> type:
    """The argparse type of a field: from its default, or from its annotation when the default is None."""
    if value is not None:
        return type(value)
    annotation = str(field.type)
    return float if "float" in annotation else int if "int" in annotation else str


def flag_of(name: str) -> str:
    """``learning_rate`` -> ``--learning-rate``; ``lambda_`` -> ``--lambda`` (a trailing _ dodges a keyword)."""
    return "--" + name.rstrip("_").replace("_", "-")


def parse(
    settings_cls: type[S],
    argv: Sequence[str],
    *,
    description: str,
    out_help: str,
    choices: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], S, Path | None, bool]:
    """Hydra overrides (``key=value`` words), settings, output folder and ``--json`` from a command line.

    Every field of ``settings_cls`` becomes a flag (:func:`flag_of`): booleans are switches, tuples take several
    integers, fields defaulting to None take the type their annotation names. A value the dataclass rejects
    (its ``__post_init__`` raises ValueError) or an override without ``=`` exits with the message.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of conf/, e.g. +experiment=artists trainer.seed=1"
    )
    defaults = settings_cls()
    fields = dataclasses.fields(defaults)  # type: ignore[arg-type]
    for field in fields:
        value = getattr(defaults, field.name)
        flag = flag_of(field.name)
        if choices and field.name in choices:
            parser.add_argument(flag, dest=field.name, choices=list(choices[field.name]), default=value)
        elif isinstance(value, bool):
            parser.add_argument(flag, dest=field.name, action="store_true")
        elif isinstance(value, tuple):
            parser.add_argument(flag, dest=field.name, type=int, nargs="+", default=list(value))
        else:
            parser.add_argument(flag, dest=field.name, type=_kind(field, value), default=value)
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(list(argv))
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides: {bad} are not key=value. Fix: write Hydra overrides such as +experiment=artists")
    values = {
        f.name: tuple(getattr(args, f.name)) if isinstance(getattr(args, f.name), list) else getattr(args, f.name)
        for f in fields
    }
    try:
        settings = settings_cls(**values)
    except ValueError as e:
        parser.error(str(e))
    return args.overrides, settings, args.out, args.json


def default_out(experiment: str, method: str) -> Path:
    """``outputs/<experiment>_<method>/<time>``: where a run goes without ``--out``."""
    return Path("outputs") / f"{experiment}_{method}" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run(
    overrides: Sequence[str],
    out: Path | None,
    *,
    method: str,
    title: str,
    train: Callable[[Config, Path], dict[str, Any]],
    as_json: bool = False,
) -> int:
    """Compose the config, write ``config.yaml`` into ``out`` (None = :func:`default_out`), train, print.

    Args:
        overrides: Hydra overrides of ``conf/``.
        out: the run's folder.
        method: the folder name's suffix (``sb3_ppo``, ``mappo``, ``rllib_ppo``).
        title: the table's heading (``MaskablePPO``).
        train: ``(cfg, out) -> report`` with ``returns["trained"]``, ``env_steps``, ``train_seconds``,
            ``eval_seeds``.
        as_json: print the report as one JSON line instead of a table.

    Raises:
        ConfigError: the overrides do not compose (nothing is written then).
    """
    cfg = compose(overrides)
    out = out or default_out(cfg.experiment, method)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)).encode())
    report = train(cfg, out)
    if as_json:
        print(json.dumps(report))
        return 0
    print(
        f"{title} ({cfg.experiment}, trainer.seed={cfg.trainer.seed}): {report['env_steps']} env steps in "
        f"{report['train_seconds']:.1f} s; mean return per agent on {len(report['eval_seeds'])} fresh seeds"
    )
    for name, value in report["returns"]["trained"].items():
        print(f"  {name:<20}{value:>10.2f}")
    print(f"Wrote {out}")
    return 0
