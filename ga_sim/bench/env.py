"""Benchmark: town env throughput (random actions) vs mpe2's simple_spread_v3.

The command line is ``scripts/bench_env.py`` (``python scripts/bench_env.py [--steps 3000]
[--repeats 3] [--group-size 16]``, prints one JSON line); :func:`run` gives its figures.

Figures are agent-steps per second through the public PettingZoo ``step()``
API (dict in, dicts out, numeric observations), best of ``--repeats`` runs,
single process. Random actions are drawn beforehand so that the figure
measures the env, not the sampler. ``batched_vs_single`` compares the G
episodes of a GRPO group (G = ``--group-size``, 25 agents) stepped as one
batched NumPy program (``ga_env.batched.BatchedTownEnv``) with the same G envs
stepped one by one through ``step_arrays``. ``v1_slowdown_vs_v0`` is Town-v0's agent-steps/s
over Town-v1's (the default) with the same random actions, through ``step()`` and through
``step_arrays``: the median ratio of CPU times over alternating rounds. For stable figures run it on one
core: ``OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_env.py``.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

import ga_env
from ga_env.batched import BatchedTownEnv


def bench_parallel(env: Any, steps: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Best-of-``repeats`` env-steps/s and agent-steps/s over ``steps`` random steps."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    agents = list(env.possible_agents)
    spaces = [env.action_space(a) for a in agents]
    sizes = np.array([s.n for s in spaces])
    draws = (rng.random((steps, len(agents))) * sizes).astype(np.int64)
    best = 0.0
    agent_steps = 0
    for _ in range(repeats):
        env.reset(seed=seed)
        count = 0
        start = time.perf_counter()
        for t in range(steps):
            live = env.agents
            if not live:
                env.reset()
                live = env.agents
            row = draws[t].tolist()
            env.step(
                {a: row[i] for i, a in enumerate(agents) if a in live}
                if len(live) != len(agents)
                else dict(zip(agents, row, strict=True))
            )
            count += len(live)
        elapsed = time.perf_counter() - start
        if count / elapsed > best:
            best, agent_steps = count / elapsed, count
    return {
        "agents": len(agents),
        "agent_steps_per_s": round(best, 1),
        "env_steps_per_s": round(best / len(agents), 1),
        "agent_steps": agent_steps,
    }


def bench_arrays(env: ga_env.TownEnv, steps: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """The same through the array fast path (``reset_arrays``/``step_arrays``) that trainers use."""
    n = len(env.possible_agents)
    draws = np.random.default_rng(seed).integers(0, 4, (steps, n))
    best = 0.0
    for _ in range(repeats):
        env.reset_arrays(seed)
        start = time.perf_counter()
        for t in range(steps):
            if env.step_arrays(draws[t])[3]:
                env.reset_arrays()
        best = max(best, steps * n / (time.perf_counter() - start))
    return {"agents": n, "agent_steps_per_s": round(best, 1), "env_steps_per_s": round(best / n, 1)}


def bench_versions(steps: int, rounds: int, seed: int = 0) -> dict[str, float]:
    """Town-v0 vs Town-v1 (25 agents, same random actions), through ``step()`` and ``step_arrays``.

    On a shared machine one best-of figure per version swings by +-30%, so the versions alternate
    in ``rounds`` short rounds, each timed in CPU time of this process (``time.process_time``: time
    the scheduler gives to other processes does not count), and the slowdown is the median of the
    per-round ratios.
    """
    envs = {v: ga_env.parallel_env(version=v) for v in (0, 1)}
    arrays = {v: ga_env.parallel_env(version=v, obs_mode="box") for v in (0, 1)}
    agents = envs[0].possible_agents
    draws = np.random.default_rng(seed).integers(0, 4, (steps, len(agents)))
    dict_draws = [dict(zip(agents, row.tolist(), strict=True)) for row in draws]
    times: dict[str, list[float]] = {k: [] for k in ("step0", "step1", "arrays0", "arrays1")}
    for _ in range(rounds):
        for v in (0, 1):
            env = envs[v]
            env.reset(seed=seed)
            start = time.process_time()
            for t in range(steps):
                if not env.agents:
                    env.reset()
                env.step(dict_draws[t])
            times[f"step{v}"].append(time.process_time() - start)
            env_a = arrays[v]
            env_a.reset_arrays(seed)
            start = time.process_time()
            for t in range(steps):
                if env_a.step_arrays(draws[t])[3]:
                    env_a.reset_arrays()
            times[f"arrays{v}"].append(time.process_time() - start)
    rate = {k: round(steps * len(agents) / min(v), 1) for k, v in times.items()}
    ratio = {k: float(np.median(np.array(times[f"{k}1"]) / np.array(times[f"{k}0"]))) for k in ("step", "arrays")}
    return {
        "rounds": rounds,
        "v0_step_agent_steps_per_s": rate["step0"],
        "v1_step_agent_steps_per_s": rate["step1"],
        "v0_arrays_agent_steps_per_s": rate["arrays0"],
        "v1_arrays_agent_steps_per_s": rate["arrays1"],
        "v1_slowdown_vs_v0_step": round(ratio["step"], 3),
        "v1_slowdown_vs_v0_arrays": round(ratio["arrays"], 3),
    }


def bench_batched(group_size: int, steps: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """G episodes of 25 agents: one ``BatchedTownEnv`` vs G ``TownEnv``s stepped one by one (best of ``repeats``)."""
    batch = BatchedTownEnv(ga_env.parallel_env(obs_mode="box"), group_size)
    envs = [ga_env.parallel_env(obs_mode="box") for _ in range(group_size)]
    n = batch.num_agents
    draws = np.random.default_rng(seed).integers(0, 4, (steps, group_size, n))
    best_batched = best_single = 0.0
    for _ in range(repeats):
        batch.reset_arrays(seed)
        start = time.perf_counter()
        for t in range(steps):
            if batch.step_arrays(draws[t])[3]:
                batch.reset_arrays(seed)
        best_batched = max(best_batched, steps * group_size * n / (time.perf_counter() - start))
        for e in envs:
            e.reset_arrays(seed)
        start = time.perf_counter()
        for t in range(steps):
            for g, e in enumerate(envs):
                if e.step_arrays(draws[t, g])[3]:
                    e.reset_arrays(seed)
        best_single = max(best_single, steps * group_size * n / (time.perf_counter() - start))
    return {
        "group_size": group_size,
        "agents": n,
        "batched_agent_steps_per_s": round(best_batched, 1),
        "one_by_one_agent_steps_per_s": round(best_single, 1),
        "speedup": round(best_batched / best_single, 2),
    }


def run(steps: int = 3000, repeats: int = 3, group_size: int = 16) -> dict[str, Any]:
    """Every figure of ``scripts/bench_env.py``, as the one JSON object it prints.

    Args:
        steps: random steps per timed run (the batched comparison uses a tenth, at least 10).
        repeats: timed runs per figure (the best is kept; Town-v0 vs v1 alternates ``max(7, repeats)`` rounds).
        group_size: G, the episodes stepped together in the batched comparison.
    """
    out: dict[str, Any] = {"bench": "env", "python": platform.python_version(), "numpy": np.__version__}
    for n in (8, 25):
        out[f"town_{n}"] = bench_parallel(ga_env.parallel_env(max_agents=n), steps, repeats)
    out["town_25_arrays"] = bench_arrays(ga_env.parallel_env(), steps, repeats)
    out["town_25_v0_vs_v1"] = bench_versions(steps, rounds=max(7, repeats))
    out["batched_vs_single"] = bench_batched(group_size, max(steps // 10, 10), repeats)
    try:
        from mpe2 import simple_spread_v3
    except ImportError:
        out["mpe2"] = "not installed (pip install mpe2)"
    else:
        for n in (3, 25):
            mpe = simple_spread_v3.parallel_env(N=n, max_cycles=25, continuous_actions=False)
            out[f"mpe2_simple_spread_{n}"] = bench_parallel(mpe, steps // 3 if n > 3 else steps, repeats)
        out["ratio_town25_vs_mpe2_25"] = round(
            out["town_25"]["agent_steps_per_s"] / out["mpe2_simple_spread_25"]["agent_steps_per_s"], 2
        )
    return out
