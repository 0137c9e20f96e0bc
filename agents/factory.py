"""Build the trainable policy that a run's configuration asks for.

The trainer, the evaluation and the scripts construct policies only through
:func:`make_policy`, so a new kind of policy is one branch here, not an edit of the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.softmax import SoftmaxPolicy

if TYPE_CHECKING:
    from conf.schema import Config
    from ga_env import TownEnv


def make_policy(cfg: Config, env: TownEnv, rng: np.random.Generator, *, greedy: bool = False) -> SoftmaxPolicy:
    """The policy of ``cfg.agent`` for ``env``'s observation layout and groups.

    Args:
        cfg: the whole run configuration (``cfg.agent`` picks the policy and its size).
        env: an env of the run (observation size, groups).
        rng: generator for the initial weights.
        greedy: act by argmax (evaluation) instead of sampling.

    Returns:
        Today a :class:`SoftmaxPolicy` (one MLP or linear map per group).
    """
    return SoftmaxPolicy(
        env.obs_dim,
        len(env.groups),
        hidden=cfg.agent.hidden,
        init_scale=cfg.agent.init_scale,
        rng=rng,
        greedy=greedy,
    )
