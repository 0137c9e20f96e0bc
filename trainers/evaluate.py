"""Evaluation: returns and goal metrics of any policy on fresh seeds, and confidence intervals.

A policy that acts on plain observations is evaluated on all seeds at once (one
:class:`ga_env.batched.BatchedTownEnv` with one episode per seed, identical to separate envs);
one that needs per-agent env context (``trainers.rollout.EnvAwarePolicy``) runs the episodes one
by one and gets ``policy.augment_obs([env], obs[None])[0]`` each step, as in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

import ga_env
from agents import Policy
from ga_env.batched import BatchedTownEnv
from trainers.rollout import EnvAwarePolicy

Float = npt.NDArray[np.float64]

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal 1.96).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def mean_ci(values: npt.ArrayLike) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student's t; 0 for a single value)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci: no values")
    if x.size == 1:
        return float(x[0]), 0.0
    df = x.size - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return float(x.mean()), float(t * x.std(ddof=1) / np.sqrt(x.size))


@dataclass
class Evaluation:
    """Per-episode results of one policy: ``returns[group]`` and ``goals[group][metric]``, each ``(E,)``."""

    returns: dict[str, Float]
    goals: dict[str, dict[str, Float]]

    def mean_returns(self) -> dict[str, float]:
        """Mean per-agent episode return of each group."""
        return {g: float(v.mean()) for g, v in self.returns.items()}

    def mean_goals(self) -> dict[str, dict[str, float]]:
        """Mean of each goal metric of each group."""
        return {g: {k: float(v.mean()) for k, v in m.items()} for g, m in self.goals.items()}


def run_episodes(env: ga_env.TownEnv, policy: Policy, seeds: Sequence[int], rng: np.random.Generator) -> Evaluation:
    """One episode of ``env``'s town per seed under ``policy``; returns and goal metrics per episode."""
    if isinstance(policy, EnvAwarePolicy):
        parts = []
        for seed in seeds:
            obs, mask = env.reset_arrays(int(seed))
            done = False
            while not done:
                obs = policy.augment_obs([env], obs[None])[0]
                obs, mask, _, done = env.step_arrays(policy.act(obs, mask, rng))
            metrics = env.goal_metrics()
            parts.append(
                (env.episode_rewards.copy(), {g: {k: np.array([v]) for k, v in m.items()} for g, m in metrics.items()})
            )
        rewards = np.stack([p[0] for p in parts])  # (E, N)
        goals = {g: {k: np.concatenate([p[1][g][k] for p in parts]) for k in parts[0][1][g]} for g in parts[0][1]}
    else:
        batch = BatchedTownEnv(env, len(seeds))
        obs, mask = batch.reset_arrays(seeds=[int(s) for s in seeds])
        e, n = batch.num_envs, batch.num_agents
        done = False
        while not done:
            actions = policy.act(obs.reshape(e * n, -1), mask.reshape(e * n, -1), rng).reshape(e, n)
            obs, mask, _, done = batch.step_arrays(actions)
        rewards, goals = batch.episode_rewards, batch.goal_metrics()
    returns = {grp.name: rewards[:, env.group_of == k].mean(1) for k, grp in enumerate(env.groups)}
    return Evaluation(returns, goals)


def evaluate(env: ga_env.TownEnv, policy: Policy, seeds: Sequence[int], rng: np.random.Generator) -> dict[str, float]:
    """Mean per-agent episode return of each group over one episode per seed.

    Returns:
        ``{group name: mean return of its agents}`` averaged over the seeds.
    """
    return run_episodes(env, policy, seeds, rng).mean_returns()


def summarise(evaluations: Mapping[str, Evaluation]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{policy: {group: {"return" | metric: [mean, 95% CI half-width]}}}`` over the episodes."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, ev in evaluations.items():
        out[name] = {}
        for group, ret in ev.returns.items():
            row = {"return": list(mean_ci(ret))}
            row.update({k: list(mean_ci(v)) for k, v in ev.goals[group].items()})
            out[name][group] = row
    return out
