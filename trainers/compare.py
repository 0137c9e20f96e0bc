"""Our GRPO against other MARL learners on the town, fairly: learning curves, seeds, CIs, equal tuning budgets.

The command line is ``scripts/compare.py`` (``python scripts/compare.py +experiment=artists [--methods ...]
[--seeds 0 1 2 3 4] [--tune-factors 0.3 1 3] [--plot docs/compare_artists.png] [--json]``); this module is
what it calls (:func:`run`).

Methods (:data:`METHODS`), each its own command line run in a child process with the same Hydra overrides, so
that all see the same town (``cfg.env.make()``), the same budget in town steps (``trainer.iterations x
group_size x max_cycles``; a town step moves all N personas) and the same evaluation (``trainers.evaluate`` of
the policy sampled under the action mask, on the same fresh seeds: a curve point every ``trainer.eval_every``
iterations on GRPO's curve seeds, the endpoint on GRPO's final seeds):

- ``grpo``: ours (NumPy, one MLP per group, group-relative advantages);
- ``maskable_ppo``: sb3-contrib MaskablePPO, one policy shared by all personas (``scripts/train_sb3_ppo.py``);
- ``ippo`` / ``mappo``: TorchRL's multi-agent PPO, one actor-critic per group, MAPPO's critic also sees the
  town's global state (``scripts/train_torchrl.py``);
- ``rllib_ppo``: RLlib's PPO with one policy per group on a local Ray runtime (``scripts/train_rllib.py``).

The simple baselines (random, scripted, chat, heuristic) come from GRPO's ``eval.json`` (same seeds).

**Tuning.** ``--tune-factors`` gives every method the same budget: one run per factor on the tuning seed
(``--tune-seed``, not among ``--seeds``) with the learning rate = factor x the method's own default
(:func:`default_lr`: GRPO's 0.01 and the PPOs' 1e-3 are not on one scale: GRPO's loss is a mean over
group-normalised advantages, the PPOs' over GAE advantages with a value loss), the best mean final return
chosen, then the seeds run with it. The grid and each method's choice are in ``compare.json``.

**Figures**, per method over the seeds (mean ± 95% CI, Student's t): the final mean return per agent of each
group, the learning curve (mean over groups) against town steps, the town steps to reach 90% of the run's own
final return (the first curve point at or above it), and wall time (training only, without the evaluations).
Runs go one after the other (``--jobs 1``) so that wall times do not compete for the cores.

**Resume.** Each finished run leaves ``compare_run.json`` in its folder (what it was run with and its result);
running the same command again reuses every finished run whose method, overrides, options and learning rate
are the same, so a killed comparison goes on where it stopped, and a wider ``--tune-factors`` grid runs only
the new points (and the seeds of a method whose choice changed).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conf.compose import compose
from ga_env.checkpoint import atomic_write_bytes
from trainers.evaluate import mean_ci

ROOT = Path(__file__).resolve().parents[1]
METHODS: dict[str, tuple[list[str], str]] = {
    "grpo": ([], "trainer.lr"),
    "maskable_ppo": ([str(ROOT / "scripts" / "train_sb3_ppo.py")], "--learning-rate"),
    "ippo": ([str(ROOT / "scripts" / "train_torchrl.py"), "--algorithm", "ippo"], "--learning-rate"),
    "mappo": ([str(ROOT / "scripts" / "train_torchrl.py"), "--algorithm", "mappo"], "--learning-rate"),
    "rllib_ppo": ([str(ROOT / "scripts" / "train_rllib.py")], "--lr"),
}
"""Each method's command (after ``python``) and how its learning rate is set (a Hydra key or a flag)."""
DEFAULT_LR: dict[str, tuple[str, str, str]] = {
    "maskable_ppo": ("trainers.ppo_sb3", "PPOSettings", "learning_rate"),
    "ippo": ("trainers.torchrl_ppo", "TorchRLSettings", "learning_rate"),
    "mappo": ("trainers.torchrl_ppo", "TorchRLSettings", "learning_rate"),
    "rllib_ppo": ("trainers.rllib_ppo", "RLlibSettings", "lr"),
}
"""Where each library method's default learning rate lives (module, settings class, field); GRPO's is
``trainer.lr`` of the composed config."""
BASELINES = ("random", "scripted", "chat", "heuristic")
KINDS = (*METHODS, *BASELINES)

_GRPO_CHILD = """
import contextlib, io, json, sys
from omegaconf import OmegaConf
from conf.compose import compose
from trainers.grpo import train
overrides, out = json.loads(sys.argv[1]), sys.argv[2]
cfg = compose(overrides)
with contextlib.redirect_stdout(io.StringIO()):
    train(cfg, __import__("pathlib").Path(out), OmegaConf.to_yaml(OmegaConf.structured(cfg)))
"""


def _child(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"compare: {' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done


def run_grpo(overrides: Sequence[str], out_dir: Path, lr: float | None = None) -> dict[str, Any]:
    """One GRPO run in a child process; its final returns (and the baselines'), curve, env steps and times."""
    import time

    overrides = [*overrides, *([f"trainer.lr={lr}"] if lr is not None else [])]
    t0 = time.perf_counter()
    _child([sys.executable, "-c", _GRPO_CHILD, json.dumps(list(overrides)), str(out_dir)])
    return grpo_result(overrides, out_dir, time.perf_counter() - t0)


def grpo_result(overrides: Sequence[str], out_dir: Path, total: float) -> dict[str, Any]:
    """:func:`run_grpo`'s fields from a finished GRPO run's folder (``total``: its wall time in seconds)."""
    report = json.loads((out_dir / "eval.json").read_text())
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    cfg = compose(overrides)
    tc = cfg.trainer
    per_iteration = tc.group_size * cfg.env.max_cycles
    groups = list(report["returns"]["trained"])
    curve = [
        {"env_steps": r["iteration"] * per_iteration, "returns": {g: r[f"eval/{g}/trained"] for g in groups}}
        for r in rows
        if f"eval/{groups[0]}/trained" in r
    ]
    return {
        "experiment": cfg.experiment,
        "returns": {"grpo": report["returns"]["trained"], **{k: report["returns"][k] for k in BASELINES}},
        "curve": curve,
        "eval_seeds": report["eval_seeds"],
        "env_steps": tc.iterations * per_iteration,
        "train_s": float(sum(r["charts/iteration_seconds"] for r in rows)),
        "total_s": total,
    }


RECORD = "compare_run.json"
"""A finished run's record in its folder: ``{"key": what it was run with, "result": what run_method returned}``."""


def run_method(
    method: str, overrides: Sequence[str], out_dir: Path, extra: Sequence[str] = (), lr: float | None = None
) -> dict[str, Any]:
    """One run of ``method`` (a child process); the same fields as :func:`run_grpo` (its own returns only).

    A finished run in ``out_dir`` with the same method, overrides, options and learning rate (its
    :data:`RECORD`) is reused instead of run again; a folder without one (a run killed before its end, or made
    with other settings) is cleared first, so that no file of the earlier run mixes into the new one.
    """
    key = {"method": method, "overrides": list(overrides), "extra": list(extra), "lr": lr}
    record = out_dir / RECORD
    if record.exists():
        try:
            saved = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            saved = {}
        if saved.get("key") == key:
            print(f"compare: {out_dir}: reusing the finished run (delete the folder to run it again)", file=sys.stderr)
            return dict(saved["result"])
    if out_dir.exists():
        shutil.rmtree(out_dir)
    result = _run_once(method, overrides, out_dir, extra, lr)
    atomic_write_bytes(record, json.dumps({"key": key, "result": result}, indent=2).encode())
    return result


def _run_once(
    method: str, overrides: Sequence[str], out_dir: Path, extra: Sequence[str], lr: float | None
) -> dict[str, Any]:
    """:func:`run_method` without the record: always runs."""
    if method == "grpo":
        return run_grpo(overrides, out_dir, lr)
    cmd, lr_flag = METHODS[method]
    lr_args = [lr_flag, str(lr)] if lr is not None else []
    done = _child([sys.executable, *cmd, *overrides, *lr_args, "--out", str(out_dir), "--json", *extra])
    return library_result(method, json.loads(done.stdout.strip().splitlines()[-1]))


def library_result(method: str, report: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_method`'s fields from a library method's report (what it prints and writes to ``eval.json``)."""
    return {
        "returns": {method: report["returns"]["trained"]},
        "curve": report.get("curve", []),
        "eval_seeds": report["eval_seeds"],
        "env_steps": report["env_steps"],
        "train_s": report["train_seconds"],
        "total_s": report["total_seconds"],
    }


def overall(returns: dict[str, float]) -> float:
    """One number per run: the mean over groups of the mean return per agent."""
    return float(np.mean(list(returns.values())))


def seed_curve(run: dict[str, Any], method: str) -> dict[int, float]:
    """``{town steps: mean return over groups}`` of one run: its curve points and its endpoint."""
    points = {int(p["env_steps"]): overall(p["returns"]) for p in run["curve"]}
    points[int(run["env_steps"])] = overall(run["returns"][method])
    return dict(sorted(points.items()))


def steps_to_90(run: dict[str, Any], method: str) -> float:
    """Town steps of the first curve point (the endpoint included) at or above 90% of the run's final return."""
    points = seed_curve(run, method)
    final = points[int(run["env_steps"])]
    return float(next(s for s, v in points.items() if v >= 0.9 * final))


def _cell(values: Sequence[float]) -> dict[str, float]:
    mean, ci = mean_ci(values)
    return {"mean": mean, "std": float(np.std(values)), "ci95": ci}


def summarise(runs: dict[str, list[dict[str, Any]]], seeds: Sequence[int]) -> dict[str, Any]:
    """Per method and baseline over the seeds: final returns, curves, steps to 90%, budgets and times."""
    methods = list(runs)
    groups = list(runs[methods[0]][0]["returns"][methods[0]])
    grpo = runs.get("grpo", [])
    per_kind = {m: [r["returns"][m] for r in runs[m]] for m in methods}
    if grpo:
        per_kind.update({k: [r["returns"][k] for r in grpo] for k in BASELINES})
    returns = {kind: {g: _cell([v[g] for v in vals]) for g in groups} for kind, vals in per_kind.items()}
    for kind, vals in per_kind.items():
        returns[kind]["overall"] = _cell([overall(v) for v in vals])
    curves = {}
    for m in methods:
        per_seed = [seed_curve(r, m) for r in runs[m]]
        steps = sorted(set.intersection(*(set(c) for c in per_seed)))
        curves[m] = [{"env_steps": st, **_cell([c[st] for c in per_seed])} for st in steps]
    algorithms = {
        m: {
            "env_steps": int(np.mean([r["env_steps"] for r in rs])),
            "train_s": _cell([r["train_s"] for r in rs]),
            "total_s": float(np.mean([r["total_s"] for r in rs])),
            "steps_to_90": _cell([steps_to_90(r, m) for r in rs]),
        }
        for m, rs in runs.items()
    }
    return {
        "seeds": list(seeds),
        "groups": groups,
        "returns": returns,
        "curves": curves,
        "algorithms": algorithms,
    }


def table(summary: dict[str, Any], experiment: str) -> str:
    """The comparison as Markdown tables."""
    kinds = [k for k in KINDS if k in summary["returns"]]
    lines = [
        f"Methods on {experiment}: mean return per agent at the end of training (mean ± 95% CI over seeds "
        f"{summary['seeds']})",
        "",
        "| group | " + " | ".join(kinds) + " |",
        "|-|" + "-|" * len(kinds),
    ]
    for g in [*summary["groups"], "overall"]:
        cells = [f"{summary['returns'][k][g]['mean']:.2f} ± {summary['returns'][k][g]['ci95']:.2f}" for k in kinds]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| method | town steps | steps to 90% of final | train wall time (s) | lr |",
        "|-|-|-|-|-|",
    ]
    for name, a in summary["algorithms"].items():
        lr = summary.get("tuning", {}).get("chosen", {}).get(name, "default (not tuned)")
        lines.append(
            f"| {name} | {a['env_steps']} | {a['steps_to_90']['mean']:.0f} ± {a['steps_to_90']['ci95']:.0f} | "
            f"{a['train_s']['mean']:.1f} ± {a['train_s']['ci95']:.1f} | {lr} |"
        )
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path, experiment: str) -> None:
    """Learning curves (mean over groups, mean ± 95% CI over seeds) with the baselines as lines; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for m, points in summary["curves"].items():
        x = np.array([p["env_steps"] for p in points])
        y = np.array([p["mean"] for p in points])
        c = np.array([p["ci95"] for p in points])
        ax.plot(x, y, marker="o", ms=3, label=m)
        ax.fill_between(x, y - c, y + c, alpha=0.2)
    for k, style in (("heuristic", "--"), ("random", ":")):
        if k in summary["returns"]:
            ax.axhline(summary["returns"][k]["overall"]["mean"], color="grey", ls=style, lw=1, label=k)
    ax.set_xlabel("town steps (each moves every persona)")
    ax.set_ylabel("mean return per agent (mean over groups)")
    ax.set_title(f"{experiment}: learning curves, mean ± 95% CI over seeds {summary['seeds']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def merge(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One comparison from several of the same town, seeds and evaluation (e.g. a slow method run apart).

    Methods and baselines are taken from the first summary that has them; a method's tuning (grid and choice)
    comes with it, and a method run without tuning is listed under ``tuning.untuned``.

    Raises:
        ValueError: the summaries differ in experiment, overrides or seeds (naming which).
    """
    first = summaries[0]
    for other in summaries[1:]:
        for key in ("experiment", "overrides", "seeds", "groups"):
            if other[key] != first[key]:
                raise ValueError(
                    f"compare --merge: {key} differs ({first[key]!r} vs {other[key]!r}). "
                    "Fix: merge comparisons of the same town, overrides and seeds"
                )
    out = {**first, "returns": {}, "curves": {}, "algorithms": {}}
    tuning: dict[str, Any] = {"chosen": {}, "tried": {}, "default_lr": {}, "untuned": []}
    for summ in summaries:
        for kind, cells in summ["returns"].items():
            out["returns"].setdefault(kind, cells)
        for m in summ["algorithms"]:
            if m in out["algorithms"]:
                continue
            out["algorithms"][m] = summ["algorithms"][m]
            out["curves"][m] = summ["curves"][m]
            t = summ.get("tuning")
            if t and m in t["chosen"]:
                tuning["chosen"][m] = t["chosen"][m]
                tuning["tried"][m] = t["tried"][m]
                tuning["default_lr"][m] = t.get("default_lr", {}).get(m)
                tuning.update({k: t[k] for k in ("seed", "factors") if k in t})
            else:
                tuning["untuned"].append(m)
    out["tuning"] = tuning
    out["merged_from"] = len(summaries)
    return out


def merge_files(paths: Sequence[Path], out: Path | None, plot_path: Path | None, *, as_json: bool = False) -> int:
    """What ``scripts/compare.py --merge`` does: join the ``compare.json`` files, write and print the result."""
    summary = merge([json.loads(Path(p).read_text()) for p in paths])
    out = out or default_out()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "compare.json", json.dumps(summary, indent=2).encode())
    plot(summary, out / "compare.png", summary["experiment"])
    if plot_path is not None:
        plot(summary, plot_path, summary["experiment"])
    print(json.dumps(summary) if as_json else table(summary, summary["experiment"]))
    return 0


def default_out() -> Path:
    """``outputs/compare/<time>``: where a comparison goes without ``--out``."""
    return Path("outputs") / "compare" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def default_lr(method: str, overrides: Sequence[str]) -> float:
    """The learning rate ``method`` trains with when none is given (GRPO: ``trainer.lr`` after the overrides)."""
    if method == "grpo":
        return float(compose(overrides).trainer.lr)
    module, cls, field = DEFAULT_LR[method]
    return float(getattr(getattr(importlib.import_module(module), cls)(), field))


def tune(
    methods: Sequence[str],
    overrides: Sequence[str],
    factors: Sequence[float],
    seed: int,
    out: Path,
    extra: dict[str, list[str]],
    jobs: int,
) -> dict[str, Any]:
    """Each method with each factor x its default learning rate on the tuning seed; the best final return wins."""
    defaults = {m: default_lr(m, overrides) for m in methods}
    jobs_list = [(m, float(f"{f * defaults[m]:.3g}")) for m in methods for f in factors]

    def one(job: tuple[str, float]) -> float:
        m, lr = job
        r = run_method(m, [*overrides, f"trainer.seed={seed}"], out / "tuning" / f"{m}_lr{lr}", extra.get(m, []), lr)
        return overall(r["returns"][m])

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        scores = list(pool.map(one, jobs_list))
    tried = {m: {str(lr): s for (mm, lr), s in zip(jobs_list, scores, strict=True) if mm == m} for m in methods}
    chosen = {m: float(max(tried[m], key=lambda k: tried[m][k])) for m in methods}
    return {"seed": seed, "factors": list(factors), "default_lr": defaults, "tried": tried, "chosen": chosen}


def run(
    overrides: Sequence[str],
    seeds: Sequence[int],
    out: Path | None = None,
    extra: dict[str, list[str]] | None = None,
    *,
    methods: Sequence[str] = tuple(METHODS),
    tune_factors: Sequence[float] = (),
    tune_seed: int = 100,
    jobs: int = 1,
    plot_path: Path | None = None,
    as_json: bool = False,
) -> int:
    """What ``scripts/compare.py`` does: (tuning,) every method per seed, then the tables or one JSON line.

    Args:
        overrides: Hydra overrides for every method (without ``trainer.seed``, which ``seeds`` sets).
        seeds: trainer seeds; each method runs once per seed.
        out: output folder (None = :func:`default_out`); gets ``<method>_seed<S>/``, ``compare.json``, ``compare.png``.
        extra: per method, options for its command line (e.g. ``{"maskable_ppo": ["--n-epochs", "2"]}``).
        methods: which of :data:`METHODS`.
        tune_factors: multiples of each method's default learning rate tried on ``tune_seed`` (empty = no
            tuning: each method's default).
        jobs: runs at once (1 = one after the other: wall times comparable).
        plot_path: also save the curves' PNG there (e.g. ``docs/compare_artists.png``).
        as_json: print the summary as one JSON line instead of the tables.

    Raises:
        ConfigError: the overrides do not compose.
        RuntimeError: a method's child process failed, or two methods were evaluated on different seeds.
    """
    out = out or default_out()
    extra = extra or {}
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"compare: --methods: {unknown} unknown. Fix: use some of {list(METHODS)}")
    if tune_seed in seeds and tune_factors:
        raise ValueError(f"compare: --tune-seed {tune_seed} is among --seeds. Fix: tune on a seed not evaluated")
    tuning = tune(methods, overrides, tune_factors, tune_seed, out, extra, jobs) if tune_factors else None
    jobs_list = [(m, s) for s in seeds for m in methods]

    def one(job: tuple[str, int]) -> dict[str, Any]:
        m, s = job
        lr = tuning["chosen"][m] if tuning else None
        return run_method(m, [*overrides, f"trainer.seed={s}"], out / f"{m}_seed{s}", extra.get(m, []), lr)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, jobs_list))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for (m, _), r in zip(jobs_list, results, strict=True):
        runs[m].append(r)
    for k in range(len(seeds)):
        if len({tuple(runs[m][k]["eval_seeds"]) for m in methods}) != 1:
            raise RuntimeError("compare: methods were evaluated on different seeds (a bug: they must match)")
    summary = summarise(runs, seeds)
    experiment = compose(overrides).experiment
    summary = {
        "benchmark": "marl_methods",
        "experiment": experiment,
        "overrides": list(overrides),
        **summary,
        **({"tuning": tuning} if tuning else {}),
        "jobs": jobs,
    }
    atomic_write_bytes(out / "compare.json", json.dumps(summary, indent=2).encode())
    plot(summary, out / "compare.png", experiment)
    if plot_path is not None:
        plot(summary, plot_path, experiment)
    if as_json:
        print(json.dumps(summary))
    else:
        print(table(summary, experiment))
        print(f"\nWrote {out / 'compare.json'} and {out / 'compare.png'}")
    return 0
