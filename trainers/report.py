"""The README's result tables: GRPO over several trainer seeds beside every baseline, with 95% CIs.

The command line is ``scripts/results.py`` (``python scripts/results.py [--experiments artists]
[--seeds 0 1] [--jobs 2] [--out DIR]``); this module is what it calls (:func:`run`).

Each (experiment, seed) is one default run of the main command (``python -m trainers.grpo
+experiment=NAME trainer.seed=S``), whose final evaluation plays the trained policy and the
baselines (random, scripted, chat-when-possible, the tuned heuristic and the CEM upper reference)
on the same ``trainer.eval_episodes`` fresh seeds. The table gives, per policy and group, the mean
over trainer seeds of the mean per-agent return and the 95% CI over seeds (Student's t), the
ratios of trained to the best simple baseline (random, scripted, chat) and to the tuned
heuristic, trained as a % of the upper reference, and the goal metrics. Writes
``<out>/results.json``, ``<out>/results.md`` and ``<out>/results_<experiment>.png``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ga_env.checkpoint import atomic_write_bytes
from trainers.evaluate import mean_ci

POLICIES = ("trained", "random", "scripted", "chat", "heuristic", "upper")
SIMPLE = ("random", "scripted", "chat")
GOALS = ("night_at_home", "task_progress", "chat_at_social_sites", "awareness_end", "supporters", "knowledge")


def _one_run(job: tuple[str, int, str, list[str], bool]) -> dict[str, Any]:
    """One (experiment, seed) run in a worker process: train (or re-evaluate with ``reuse``); its report."""
    experiment, seed, out, extra, reuse = job
    from conf.compose import compose
    from trainers.grpo import evaluate_checkpoint, train

    cfg = compose([f"+experiment={experiment}", f"trainer.seed={seed}", *extra])
    run_dir = Path(out) / f"{experiment}_seed{seed}"
    if reuse and (run_dir / "checkpoint.npz").exists():
        report = evaluate_checkpoint(cfg, run_dir)  # the trained policy as it was; baselines as they are now
        atomic_write_bytes(run_dir / "eval.json", (json.dumps(report, indent=2)).encode())
    else:
        report = train(cfg, run_dir)
    # Training wall time: the iterations (rollouts + updates), without the evaluations.
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    report["train_seconds"] = float(sum(r["charts/iteration_seconds"] for r in rows))
    return report


def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per policy and group: mean and CI over trainer seeds of returns and goal metrics, and ratios."""
    groups = list(reports[0]["returns"]["trained"])
    out: dict[str, Any] = {"seeds": [r["seed"] for r in reports], "episodes": len(reports[0]["eval_seeds"])}
    out["train_seconds"] = list(mean_ci([r["train_seconds"] for r in reports]))
    table: dict[str, Any] = {}
    for g in groups:
        row: dict[str, Any] = {}
        for p in POLICIES:
            row[p] = list(mean_ci([r["returns"][p][g] for r in reports]))
            row[f"goals/{p}"] = {
                k: list(mean_ci([r["goals"][p][g][k] for r in reports]))
                for k in reports[0]["goals"][p][g]
                if not k.startswith("share/")
            }
        best_simple = max(SIMPLE, key=lambda p: row[p][0])
        row["best_simple"] = best_simple
        trained = np.array([r["returns"]["trained"][g] for r in reports])
        for name, ref in (("vs_best_simple", best_simple), ("vs_heuristic", "heuristic"), ("of_upper", "upper")):
            base = np.array([r["returns"][ref][g] for r in reports])
            row[name] = list(mean_ci(trained / np.where(np.abs(base) > 1e-9, base, np.nan)))
        table[g] = row
    out["groups"] = table
    return out


def markdown(results: dict[str, Any]) -> str:
    """The tables of the README."""
    lines = []
    for exp, res in results.items():
        lines.append(
            f"**{exp}** (trainer seeds {res['seeds']}, {res['episodes']} fresh evaluation episodes per policy "
            f"and seed; mean per-agent return over the episode, mean ± 95% CI over seeds; "
            f"training {res['train_seconds'][0]:.0f} ± {res['train_seconds'][1]:.0f} s per seed)\n"
        )
        lines.append(
            "| group | " + " | ".join(POLICIES) + " | trained / best simple | trained / heuristic | % of upper |"
        )
        lines.append("|-" * (len(POLICIES) + 4) + "|")
        for g, row in res["groups"].items():
            cells = [f"{row[p][0]:.2f} ± {row[p][1]:.2f}" for p in POLICIES]
            ratio = [
                f"{row['vs_best_simple'][0]:.2f}× ({row['best_simple']})",
                f"{row['vs_heuristic'][0]:.2f}×",
                f"{100 * row['of_upper'][0]:.0f}%",
            ]
            lines.append(f"| {g} | " + " | ".join(cells + ratio) + " |")
        lines.append("")
        lines.append("| group | policy | " + " | ".join(GOALS) + " |")
        lines.append("|-" * (len(GOALS) + 2) + "|")
        for g, row in res["groups"].items():
            for p in ("trained", "heuristic", "chat"):
                goals = row[f"goals/{p}"]
                cells = [f"{goals[k][0]:.2f}" if k in goals else "" for k in GOALS]
                lines.append(f"| {g} | {p} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(exp: str, res: dict[str, Any], path: Path) -> None:
    """Bar chart of one experiment's returns per group and policy, with 95% CIs, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(res["groups"])
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(groups), 3.6))
    width = 0.8 / len(POLICIES)
    for k, p in enumerate(POLICIES):
        means = [res["groups"][g][p][0] for g in groups]
        cis = [res["groups"][g][p][1] for g in groups]
        ax.bar(np.arange(len(groups)) + (k - len(POLICIES) / 2 + 0.5) * width, means, width, yerr=cis, label=p)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("mean return per agent (3 days)")
    ax.set_title(f"Town-v1, {exp}: seeds {res['seeds']}, {res['episodes']} episodes each, 95% CI")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    experiments: Sequence[str],
    seeds: Sequence[int],
    *,
    jobs: int = 2,
    out: Path = Path("docs"),
    runs: Path = Path("outputs/results"),
    reuse: bool = False,
    overrides: Sequence[str] = (),
) -> str:
    """What ``scripts/results.py`` does: train (or re-evaluate) every run, write the tables; returns the Markdown.

    Args:
        experiments: experiment names (``+experiment=NAME``).
        seeds: trainer seeds; one run per experiment and seed.
        jobs: runs in parallel (processes).
        out: folder of ``results.json`` (other experiments' results in it are kept), ``results.md``
            and ``results_<experiment>.png``.
        runs: folder where the runs are written (``<experiment>_seed<S>/``).
        reuse: evaluate finished runs again instead of training (after re-tuning the baselines).
        overrides: extra Hydra overrides for every run.
    """
    todo = [(e, s, str(runs), list(overrides), reuse) for e in experiments for s in seeds]
    with mp.get_context("spawn").Pool(jobs) as pool:
        reports = pool.map(_one_run, todo)
    results_file = out / "results.json"  # other experiments' results are kept
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results.update({e: aggregate([r for r in reports if r["experiment"] == e]) for e in experiments})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.json", (json.dumps(results, indent=1) + "\n").encode())
    text = markdown(results)
    atomic_write_bytes(out / "results.md", (text + "\n").encode())
    for exp in experiments:
        plot(exp, results[exp], out / f"results_{exp}.png")
    return text
