"""Tuning the heuristic baseline on training seeds: a coordinate grid ("tuned") and CEM ("upper").

Both search :class:`agents.heuristic.HeuristicParams` per group, scoring each candidate by the
group's own mean per-agent return over ``seeds`` (training seeds only, below
``trainers.grpo.EVAL_SEED_BASE``), with every other group playing its current parameters:

* :func:`coordinate_search` (the *tuned heuristic*): for each group and parameter in turn, try a
  few values on a grid and keep the best; two sweeps. About ``groups x 5 x 5 x 2`` evaluations.
* :func:`cem_search` (the *upper reference*): the cross-entropy method (Rubinstein 1999) from the
  tuned parameters; each candidate draws every group's parameters at once and each group's
  Gaussian is refit on the candidates that scored best *for that group*. A group's upper
  reference is the best whole candidate for that group (the tuned one included), so it is never
  below the tuned heuristic on the training seeds.

:func:`tune` runs both per experiment and writes ``agents/data/heuristic_params.json``; its command
line is ``scripts/tune_heuristic.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import ga_env
from agents.heuristic import HeuristicParams, HeuristicPolicy
from conf.compose import compose
from ga_env.checkpoint import atomic_write_bytes
from trainers.evaluate import Evaluation, run_episodes

PARAMS_FILE = Path(__file__).resolve().parents[1] / "agents" / "data" / "heuristic_params.json"
"""The shipped table of tuned and upper-reference parameters (read by ``agents.heuristic``)."""

GRID: dict[str, tuple[float, ...]] = {
    "work_target": (0.0, 0.25, 0.5, 0.75, 1.0),
    "min_unaware": (0.0, 0.1, 0.3, 0.5, 0.8),
    "max_chat": (1.0, 2.0, 3.0, 5.0, 8.0),
    "rest_below": (0.0, 0.1, 0.2, 0.35, 0.5),
    "chat_anywhere": (0.0, 1.0),
    "max_work": (24.0, 36.0, 48.0, 60.0, 144.0),
}


def score(env: ga_env.TownEnv, params: dict[str, HeuristicParams], seeds: Sequence[int]) -> dict[str, float]:
    """Mean per-agent return of each group when every group plays ``params``."""
    return run_episodes(env, HeuristicPolicy(env.groups, params), seeds, np.random.default_rng(0)).mean_returns()


def coordinate_search(
    env: ga_env.TownEnv, seeds: Sequence[int], sweeps: int = 2, log: Callable[[str], None] = print
) -> tuple[dict[str, HeuristicParams], dict[str, float]]:
    """The tuned heuristic: per group and parameter, the best grid value (``sweeps`` passes)."""
    params = {g.name: HeuristicParams() for g in env.groups}
    best = score(env, params, seeds)
    for sweep in range(sweeps):
        for group in params:
            for name, values in GRID.items():
                for v in values:
                    fields: dict[str, Any] = {**_as_dict(params[group]), name: v}
                    trial = {**params, group: HeuristicParams(**fields)}
                    s = score(env, trial, seeds)
                    if s[group] > best[group] + 1e-9:
                        params, best = trial, s
            log(f"sweep {sweep + 1} {group}: {best[group]:.3f} {_as_dict(params[group])}")
    return params, best


def cem_search(
    env: ga_env.TownEnv,
    seeds: Sequence[int],
    start: dict[str, HeuristicParams],
    *,
    iterations: int = 8,
    population: int = 24,
    elite: int = 6,
    rng: np.random.Generator | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, dict[str, HeuristicParams]], dict[str, float]]:
    """The upper reference: CEM over every group's parameters, started at ``start``.

    A group's score depends on what the other groups play, so the result is, per group, the best
    whole candidate *for that group* (all groups' parameters, ``start`` included) and its score.
    """
    rng = rng or np.random.default_rng(0)
    lo, hi = np.array(HeuristicParams().BOUNDS).T
    names = list(start)
    mean = {g: start[g].vector() for g in names}
    std = {g: (hi - lo) / 4 for g in names}
    first = score(env, start, seeds)
    best = {g: dict(start) for g in names}
    best_score = {g: first[g] for g in names}
    for it in range(iterations):
        cands = [
            {g: HeuristicParams.from_vector(rng.normal(mean[g], std[g])) for g in names} for _ in range(population)
        ]
        scores = [score(env, c, seeds) for c in cands]
        for g in names:
            order = np.argsort([-s[g] for s in scores])[:elite]
            vecs = np.array([cands[i][g].vector() for i in order])
            mean[g], std[g] = vecs.mean(0), np.maximum(vecs.std(0), 0.02 * (hi - lo))
            if scores[order[0]][g] > best_score[g]:
                best[g], best_score[g] = cands[order[0]], scores[order[0]][g]
        log(f"cem {it + 1}/{iterations}: " + ", ".join(f"{g} {best_score[g]:.3f}" for g in names))
    return best, best_score


def upper_reference(
    env: ga_env.TownEnv, by_group: dict[str, dict[str, HeuristicParams]], seeds: Sequence[int], rng: np.random.Generator
) -> Evaluation:
    """The upper reference on ``seeds``: each group's return and goals under its own best candidate."""
    returns, goals = {}, {}
    for group, params in by_group.items():
        ev = run_episodes(env, HeuristicPolicy(env.groups, params), seeds, rng)
        returns[group], goals[group] = ev.returns[group], ev.goals[group]
    return Evaluation(returns, goals)


def tune(
    experiments: Sequence[str],
    n_seeds: int = 16,
    *,
    cem_iterations: int = 8,
    cem_population: int = 24,
    out: Path = PARAMS_FILE,
) -> None:
    """Tune the heuristic per experiment on training seeds ``0..n_seeds-1``; write the table to ``out``.

    For each experiment, :func:`coordinate_search` gives the tuned parameters and :func:`cem_search`
    (started from them) the upper reference; both, with their training returns and wall times,
    replace that experiment's entry of ``out`` (other experiments' entries are kept). ``out`` is
    written after each experiment, and progress is printed.

    Args:
        experiments: experiment names (``+experiment=NAME``).
        n_seeds: number of training seeds (never the evaluation seeds, >= ``trainers.grpo.EVAL_SEED_BASE``).
        cem_iterations: CEM iterations.
        cem_population: CEM candidates per iteration.
        out: the JSON table to update.

    Raises:
        ConfigError: an experiment's config does not compose.
    """
    table: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    seeds = list(range(n_seeds))
    for exp in experiments:
        env = compose([f"+experiment={exp}"]).env.make()
        t0 = time.perf_counter()
        log = _prefixed_log(exp)
        tuned, tuned_score = coordinate_search(env, seeds, log=log)
        t1 = time.perf_counter()
        upper, upper_score = cem_search(
            env,
            seeds,
            tuned,
            iterations=cem_iterations,
            population=cem_population,
            rng=np.random.default_rng(0),
            log=log,
        )
        t2 = time.perf_counter()
        table[exp] = {
            "seeds": seeds,
            "episode_steps": env.max_cycles,
            "tuned": {
                "method": "coordinate grid, 2 sweeps",
                "params": {g: _as_dict(p) for g, p in tuned.items()},
                "train_return": tuned_score,
                "seconds": round(t1 - t0, 1),
            },
            "upper": {
                "method": f"CEM from tuned, {cem_iterations} x {cem_population}, 6 elites per group",
                "params_by_group": {g: {h: _as_dict(p) for h, p in c.items()} for g, c in upper.items()},
                "train_return": upper_score,
                "seconds": round(t2 - t1, 1),
            },
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(table, indent=1) + "\n").encode())
        print(f"[{exp}] tuned {tuned_score}\n[{exp}] upper {upper_score}")


def _prefixed_log(experiment: str) -> Callable[[str], None]:
    """A progress printer that prefixes each line with ``[experiment]``."""

    def log(line: str) -> None:
        print(f"[{experiment}] {line}", flush=True)

    return log


def _as_dict(p: HeuristicParams) -> dict[str, float]:
    return {name: float(getattr(p, name)) for name in HeuristicParams.names()}
