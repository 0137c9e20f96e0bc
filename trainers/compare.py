"""GRPO (ours, NumPy) vs Stable-Baselines3 PPO on the town, at equal env steps and the same seeds.

The command line is ``scripts/compare.py`` (``python scripts/compare.py +experiment=artists
[--seeds 0 1 2] [--json] [--out DIR] [-- PPO options]``); this module is what it calls (:func:`run`).

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
from omegaconf import OmegaConf

from conf.compose import compose
from ga_env.checkpoint import atomic_write_bytes
from trainers.evaluate import mean_ci
from trainers.grpo import train

PPO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_sb3_ppo.py"
"""The PPO command line, run in a child process so that torch stays out of the GRPO process."""
KINDS = ("grpo", "ppo", "random", "scripted", "chat", "heuristic")


def run_grpo(overrides: Sequence[str], out_dir: Path) -> dict[str, Any]:
    """One GRPO run (quiet); returns returns per kind, env steps and times.

    Raises:
        ConfigError: the overrides do not compose.
    """
    cfg = compose(overrides)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the progress bar and GRPO's own table
        report = train(cfg, out_dir, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
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


def default_out() -> Path:
    """``outputs/compare/<time>``: where a comparison goes without ``--out``."""
    return Path("outputs") / "compare" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run(
    overrides: Sequence[str],
    seeds: Sequence[int],
    out: Path | None = None,
    extra: Sequence[str] = (),
    *,
    as_json: bool = False,
) -> int:
    """What ``scripts/compare.py`` does: both trainers per seed, then the table or one JSON line; the exit code.

    Args:
        overrides: Hydra overrides for both trainers (without ``trainer.seed``, which ``seeds`` sets).
        seeds: trainer seeds; each gets one GRPO and one PPO run, one after the other.
        out: output folder (None = :func:`default_out`); gets ``grpo_seed<S>/``, ``ppo_seed<S>/``, ``compare.json``.
        extra: options for ``train_sb3_ppo.py`` (e.g. ``["--learning-rate", "3e-4"]``).
        as_json: print the summary as one JSON line instead of the table.

    Raises:
        ConfigError: the overrides do not compose.
        RuntimeError: the PPO child process failed, or the two were evaluated on different seeds.
    """
    out = out or default_out()
    runs: dict[str, list[dict[str, Any]]] = {"grpo": [], "ppo": []}
    for seed in seeds:
        seed_overrides = [*overrides, f"trainer.seed={seed}"]
        runs["grpo"].append(run_grpo(seed_overrides, out / f"grpo_seed{seed}"))
        runs["ppo"].append(run_ppo(seed_overrides, out / f"ppo_seed{seed}", extra))
        if runs["grpo"][-1]["eval_seeds"] != runs["ppo"][-1]["eval_seeds"]:
            raise RuntimeError("compare: GRPO and PPO were evaluated on different seeds (a bug: they must match)")
    summary = summarise(runs, seeds)
    experiment = runs["grpo"][0]["experiment"]
    summary = {"benchmark": "grpo_vs_sb3_ppo", "experiment": experiment, "overrides": list(overrides), **summary}
    atomic_write_bytes(out / "compare.json", (json.dumps(summary, indent=2)).encode())
    if as_json:
        print(json.dumps(summary))
    else:
        print(table(summary, experiment))
        print(f"\nWrote {out / 'compare.json'}")
    return 0
