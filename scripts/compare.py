"""GRPO (ours, NumPy) vs Stable-Baselines3 PPO on the town, at equal env steps and the same seeds.

Usage::

    python scripts/compare.py +experiment=artists [--seeds 0 1 2] [--json] [--out DIR] [-- PPO options]

For each trainer seed it runs ``trainers.grpo.train`` in this process and
``scripts/train_sb3_ppo.py`` in a child process (torch stays out of the GRPO process), with the
same Hydra overrides, so both see the same town (``cfg.env.make()``), the same number of town
steps (``trainer.iterations x group_size x max_cycles``; each town step moves all N personas) and
the same evaluation (``trainers.evaluate.evaluate`` on the same fresh seeds). The random and
scripted baselines come from GRPO's ``eval.json`` (same seeds). Runs go one after the other so
that their wall times do not compete for the cores.

Prints one table: final mean return per agent per group (mean ± 95% CI over the seeds) for GRPO,
PPO and the baselines (random, scripted, chat, heuristic), env steps and wall time; with ``--json``, one JSON line instead (the
benchmark figure). Wall time ``train_s`` is training only (GRPO: the sum of its iterations,
without the periodic evaluations; PPO: ``model.learn``); ``total_s`` is the whole run including
start-up and evaluation.

Extra options after ``--`` go to ``train_sb3_ppo.py`` (e.g. ``-- --learning-rate 3e-4``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import datetime as dt
import io
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conf.schema import register_configs, to_config
from trainers.evaluate import mean_ci
from trainers.grpo import train

PPO_SCRIPT = Path(__file__).resolve().parent / "train_sb3_ppo.py"
KINDS = ("grpo", "ppo", "random", "scripted", "chat", "heuristic")


def run_grpo(overrides: Sequence[str], out_dir: Path) -> dict[str, Any]:
    """One GRPO run (quiet); returns returns per kind, env steps and times."""
    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        dcfg = compose(config_name="config", overrides=list(overrides))
    cfg = to_config(dcfg)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the progress bar and GRPO's own table
        report = train(cfg, out_dir, OmegaConf.to_yaml(dcfg, resolve=True))
    total = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    tc = cfg.trainer
    return {
        "experiment": cfg.experiment,
        "returns": {
            "grpo": report["returns"]["trained"],
            "random": report["returns"]["random"],
            "scripted": report["returns"]["scripted"],
            "chat": report["returns"]["chat"],
            "heuristic": report["returns"]["heuristic"],
        },
        "eval_seeds": report["eval_seeds"],
        "env_steps": tc.iterations * tc.group_size * cfg.env.max_cycles,
        "train_s": float(sum(r["charts/iteration_seconds"] for r in rows)),
        "total_s": total,
    }


def run_ppo(overrides: Sequence[str], out_dir: Path, extra: Sequence[str]) -> dict[str, Any]:
    """One SB3 PPO run in a child process (``train_sb3_ppo.py --json``)."""
    cmd = [sys.executable, str(PPO_SCRIPT), *overrides, "--out", str(out_dir), "--json", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compare: {' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "returns": {"ppo": report["returns"]["trained"]},
        "eval_seeds": report["eval_seeds"],
        "env_steps": report["env_steps"],
        "train_s": report["train_seconds"],
        "total_s": report["total_seconds"],
    }


def summarise(runs: dict[str, list[dict[str, Any]]], seeds: Sequence[int]) -> dict[str, Any]:
    """Mean, std and 95% CI half-width over seeds of every (kind, group) return; env steps and times."""
    grpo, ppo = runs["grpo"], runs["ppo"]
    groups = list(grpo[0]["returns"]["grpo"])
    per_kind: dict[str, list[dict[str, float]]] = {
        "grpo": [r["returns"]["grpo"] for r in grpo],
        "ppo": [r["returns"]["ppo"] for r in ppo],
        "random": [r["returns"]["random"] for r in grpo],
        "scripted": [r["returns"]["scripted"] for r in grpo],
        "chat": [r["returns"]["chat"] for r in grpo],
        "heuristic": [r["returns"]["heuristic"] for r in grpo],
    }
    returns = {
        kind: {
            g: {
                "mean": float(np.mean([v[g] for v in vals])),
                "std": float(np.std([v[g] for v in vals])),
                "ci95": mean_ci([v[g] for v in vals])[1],
            }
            for g in groups
        }
        for kind, vals in per_kind.items()
    }
    algos = {
        name: {
            "env_steps": int(np.mean([r["env_steps"] for r in rs])),
            "train_s": float(np.mean([r["train_s"] for r in rs])),
            "total_s": float(np.mean([r["total_s"] for r in rs])),
        }
        for name, rs in runs.items()
    }
    return {"seeds": list(seeds), "groups": groups, "returns": returns, "algorithms": algos}


def table(summary: dict[str, Any], experiment: str) -> str:
    """The comparison as a Markdown table."""
    lines = [
        f"GRPO vs SB3 PPO on {experiment}: mean return per agent (mean ± 95% CI over seeds {summary['seeds']})",
        "",
        "| group | " + " | ".join(KINDS) + " |",
        "|-|" + "-|" * len(KINDS),
    ]
    for g in summary["groups"]:
        cells = [f"{summary['returns'][k][g]['mean']:.1f} ± {summary['returns'][k][g]['ci95']:.1f}" for k in KINDS]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += ["", "| algorithm | env steps | train wall time (s) | total wall time (s) |", "|-|-|-|-|"]
    for name, a in summary["algorithms"].items():
        lines.append(f"| {name} | {a['env_steps']} | {a['train_s']:.1f} | {a['total_s']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run both trainers per seed, print the table or one JSON line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. +experiment=artists trainer.iterations=10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="trainer seeds (trainer.seed)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/compare/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args(argv)
    if any(o.split("=")[0].lstrip("+") == "trainer.seed" for o in args.overrides):
        parser.error("overrides: trainer.seed is set by --seeds. Fix: use --seeds 0 1 2")
    out = args.out or Path("outputs") / "compare" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    runs: dict[str, list[dict[str, Any]]] = {"grpo": [], "ppo": []}
    for seed in args.seeds:
        overrides = [*args.overrides, f"trainer.seed={seed}"]
        runs["grpo"].append(run_grpo(overrides, out / f"grpo_seed{seed}"))
        runs["ppo"].append(run_ppo(overrides, out / f"ppo_seed{seed}", extra))
        if runs["grpo"][-1]["eval_seeds"] != runs["ppo"][-1]["eval_seeds"]:
            raise RuntimeError("compare: GRPO and PPO were evaluated on different seeds (a bug: they must match)")
    summary = summarise(runs, args.seeds)
    experiment = runs["grpo"][0]["experiment"]
    summary = {"benchmark": "grpo_vs_sb3_ppo", "experiment": experiment, "overrides": args.overrides, **summary}
    (out / "compare.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary))
    else:
        print(table(summary, experiment))
        print(f"\nWrote {out / 'compare.json'}")


if __name__ == "__main__":
    main()
