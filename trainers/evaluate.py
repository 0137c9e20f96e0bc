"""Episode rollouts for evaluation: mean return per group of any batched policy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import ga_env
from agents import Policy
from trainers.rollout import EnvAwarePolicy


def evaluate(env: ga_env.TownEnv, policy: Policy, seeds: Sequence[int], rng: np.random.Generator) -> dict[str, float]:
    """Mean per-agent episode return of each group over one episode per seed.

    A policy that needs per-agent env context (``trainers.rollout.EnvAwarePolicy``) gets it each
    step, as in training: ``policy.augment_obs([env], obs[None])[0]`` before acting.

    Returns:
        ``{group name: mean return of its agents}`` averaged over the seeds.
    """
    aware = isinstance(policy, EnvAwarePolicy)
    returns = np.zeros((len(seeds), len(env.groups)))  # (E, K)
    for e, seed in enumerate(seeds):
        obs, mask = env.reset_arrays(int(seed))
        done = False
        while not done:
            if aware:
                obs = policy.augment_obs([env], obs[None])[0]  # type: ignore[attr-defined]
            obs, mask, _, done = env.step_arrays(policy.act(obs, mask, rng))
        returns[e] = np.bincount(env.group_of, weights=env.episode_rewards) / np.bincount(env.group_of)
    return {grp.name: float(v) for grp, v in zip(env.groups, returns.mean(0), strict=True)}
