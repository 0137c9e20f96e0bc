"""Build the trainable policy that a run's configuration asks for.

The trainer, the evaluation and the scripts construct policies only through
:func:`make_policy`, so a new kind of policy is one branch here, not an edit of the trainer.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.softmax import SoftmaxPolicy

if TYPE_CHECKING:
    from conf.schema import Config, LLMConfig
    from ga_env import TownEnv


def make_policy(cfg: Config, env: TownEnv, rng: np.random.Generator, *, greedy: bool = False) -> SoftmaxPolicy:
    """The policy of ``cfg.agent`` for ``env``'s observation layout and groups.

    Args:
        cfg: the whole run configuration (``cfg.agent`` picks the policy and its size).
        env: an env of the run (observation size, groups).
        rng: generator for the initial weights.
        greedy: act by argmax (evaluation) instead of sampling.

    Returns:
        A :class:`SoftmaxPolicy` (one MLP or linear map per group), or for ``agent.kind=neurosymbolic``
        a :class:`agents.neurosymbolic.NeuroSymbolicPolicy` whose LLM (``cfg.llm``) is built on
        first use and shared by every policy of the process. ``agent.checkpoint`` loads the
        parameters of a GRPO checkpoint.
    """
    ac = cfg.agent
    policy: SoftmaxPolicy
    if ac.kind == "neurosymbolic":
        from agents.neurosymbolic import NeuroSymbolicPolicy

        policy = NeuroSymbolicPolicy(
            env.obs_dim,
            len(env.groups),
            make_llm=functools.partial(shared_backend, cfg.llm),
            lam=ac.lam,
            decide_every=ac.decide_every,
            smoothing=ac.smoothing,
            lang=ac.lang,
            hidden=ac.hidden,
            init_scale=ac.init_scale,
            rng=rng,
            greedy=greedy,
        )
    else:
        policy = SoftmaxPolicy(
            env.obs_dim, len(env.groups), hidden=ac.hidden, init_scale=ac.init_scale, rng=rng, greedy=greedy
        )
    if ac.checkpoint:
        ckpt = np.load(ac.checkpoint)
        for k, v in policy.params.items():
            key = f"param/{k}"
            if key not in ckpt or ckpt[key].shape != v.shape:
                raise ValueError(
                    f"{ac.checkpoint}: {key}: missing or of another shape than {v.shape}. "
                    "Fix: use a checkpoint trained with the same env groups and agent.hidden"
                )
            policy.params[k] = ckpt[key].astype(np.float64)
    return policy


@functools.cache
def _backends() -> dict[str, Any]:
    return {}


def shared_backend(llm_cfg: LLMConfig) -> Any:
    """One LLM backend per distinct ``cfg.llm`` in the process (a local model is loaded once)."""
    from agents.llm.factory import make_backend

    key = repr(llm_cfg)
    cache = _backends()
    if key not in cache:
        cache[key] = make_backend(llm_cfg)
    return cache[key]


def shared_llm_usage(cfg: Config) -> dict[str, Any] | None:
    """The usage report of this process's shared backend for ``cfg.llm`` (None without an LLM
    policy or before the backend is built; nothing is built here).

    Every policy of a process (a learner, its evaluation copies, a Ray worker's copy) asks the
    same backend (:func:`shared_backend`), so its meter holds all of the process's calls.
    """
    if cfg.agent.kind != "neurosymbolic":
        return None
    backend = _backends().get(repr(cfg.llm))
    return None if backend is None else dict(backend.usage.report())
