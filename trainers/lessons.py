"""Reward-to-prompt: turn each group's best trajectories into plain-language lessons.

After every iteration the trainer hands :func:`make_lessons` one group's rollouts; the lessons
go to every policy of that group through ``policy.set_lessons(group, lessons)`` (the LLM
personas put them into their system prompt) and to TensorBoard as text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ga_env import ACTION_NAMES


def make_lessons(
    *,
    names: Sequence[str],
    places: Sequence[str],
    actions: npt.NDArray[np.integer],
    place_idx: npt.NDArray[np.integer],
    partners: npt.NDArray[np.integer],
    rewards: npt.NDArray[np.floating],
    advantages: npt.NDArray[np.floating],
    top_k: int,
) -> list[str]:
    """A few lessons from one group's rollouts.

    Args:
        names: ``(n,)`` persona names of the group's agents.
        places: place names (``env.places``).
        actions: ``(G, T, n)`` effective actions (4 = no-op).
        place_idx: ``(G, T, n)`` place of each agent when it acted.
        partners: ``(G, T, n)`` chat partner index or -1.
        rewards: ``(G, T, n)`` per-step rewards.
        advantages: ``(G, T, n)`` advantages of the taken actions.
        top_k: trajectories (rollout, agent) summarised.

    Returns:
        Plain-language lessons: one per top trajectory, then what the best did differently.
    """
    g, t, n = actions.shape
    returns = rewards.sum(1)  # (G, n)
    order = np.argsort(returns, axis=None)[::-1]  # flat (G * n) best first
    top = order[: max(top_k, 1)]
    lessons = []
    for flat in top:
        r, i = divmod(int(flat), n)
        acts = actions[r, :, i]
        share = np.bincount(acts, minlength=5)[:4] / t  # (4,)
        main = np.argsort(share)[::-1][:2]
        earned = rewards[r, :, i]
        # Where the reward came from: the place with the largest total reward.
        by_place = np.bincount(place_idx[r, :, i], weights=earned, minlength=len(places))
        best_place = places[int(np.argmax(by_place))]
        met = len(set(partners[r, :, i][partners[r, :, i] >= 0].tolist()))
        doing = " and ".join(f"{ACTION_NAMES[a]} {share[a]:.0%} of the time" for a in main)
        lessons.append(
            f"{names[i]} earned {returns[r, i]:.1f} (advantage {advantages[r, :, i].mean():+.2f}) by {doing}, "
            f"talking with {met} different people; most of the reward came at {best_place}."
        )
    # Contrast the top trajectories with the rest: which actions did the best use more?
    per_traj = np.zeros((g * n, 4))
    for a in range(4):
        per_traj[:, a] = (actions == a).mean(1).ravel()  # (G * n,) share of action a
    rest = order[max(top_k, 1) :]
    if len(rest):
        diff = per_traj[top].mean(0) - per_traj[rest].mean(0)  # (4,)
        a = int(np.argmax(np.abs(diff)))
        more = "more" if diff[a] > 0 else "less"
        lessons.append(
            f"The best of the group chose {ACTION_NAMES[a]} {more} often than the others "
            f"({per_traj[top, a].mean():.0%} vs {per_traj[rest, a].mean():.0%} of steps)."
        )
    return lessons
