"""Build the trainable policy that a run's configuration asks for.

The trainer, the evaluation and the scripts construct policies only through
:func:`make_policy`, so a new kind of policy is one branch here, not an edit of the trainer.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.softmax import SoftmaxPolicy
from ga_env.checkpoint import CheckpointError, load_checkpoint

if TYPE_CHECKING:
    from conf.schema import AgentConfig, LLMConfig
    from ga_env import TownEnv


def make_policy(
    agent: AgentConfig, llm: LLMConfig, env: TownEnv, rng: np.random.Generator, *, greedy: bool = False
) -> SoftmaxPolicy:
    """The policy of ``agent`` (``cfg.agent``) for ``env``'s observation layout and groups.

    Args:
        agent: the policy's kind and size (``cfg.agent``).
        llm: the language model of a neuro-symbolic policy (``cfg.llm``; unused otherwise).
        env: an env of the run (observation size, groups).
        rng: generator for the initial weights.
        greedy: act by argmax (evaluation) instead of sampling.

    Returns:
        A :class:`SoftmaxPolicy` (one MLP or linear map per group), or for ``agent.kind=neurosymbolic``
        a :class:`agents.neurosymbolic.NeuroSymbolicPolicy` whose LLM (``llm``) is built on
        first use and shared by every policy of the process. ``agent.checkpoint`` loads the
        parameters of a GRPO checkpoint (verified, :func:`load_params`).

    Raises:
        CheckpointError: ``agent.checkpoint`` is missing, damaged or of another town layout.
    """
    ac = agent
    policy: SoftmaxPolicy
    if ac.kind == "neurosymbolic":
        from agents.neurosymbolic import NeuroSymbolicPolicy

        policy = NeuroSymbolicPolicy(
            env.obs_dim,
            len(env.groups),
            make_llm=functools.partial(shared_backend, llm),
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
        load_params(policy, ac.checkpoint)
    return policy


def load_params(
    policy: SoftmaxPolicy,
    source: str | os.PathLike[str],
    arrays: Mapping[str, Any] | None = None,
    *,
    prefix: str = "param/",
) -> Path:
    """Put a checkpoint's policy parameters (``<prefix><name>`` arrays) into ``policy``: the one verified loader.

    The simulation's trained mind, the trainer's resume and ``agent.checkpoint`` all load through
    here: the file is read by :func:`ga_env.checkpoint.load_checkpoint` (checksum; the previous
    checkpoint if the newest is damaged) and every array must fit the policy's shape.

    Args:
        policy: the policy to fill (its shapes are the town's and the config's).
        source: a ``checkpoint.npz`` or a run folder holding one.
        arrays: the checkpoint's arrays when the caller has already read ``source``.
        prefix: which parameter set (``param/`` = the trained policy, ``ref/`` = the trainer's reference).

    Returns:
        The file actually read.

    Raises:
        CheckpointError: the file is missing or damaged, or an array is missing or of another shape,
            naming the file, the array and the fix.
    """
    path = Path(source)
    if arrays is None:
        arrays, path = load_checkpoint(path)
    new: dict[str, np.ndarray] = {}
    for k, v in policy.params.items():
        key = f"{prefix}{k}"
        got = np.asarray(arrays[key]) if key in arrays else None
        if got is None or got.shape != v.shape:
            shape = "missing" if got is None else f"shape {got.shape}"
            raise CheckpointError(
                f"{path}: {key}: {shape} does not fit this town and agent (expected {v.shape}: "
                f"{policy.n_groups} groups, obs size {policy.obs_dim}, agent.hidden {policy.hidden}). Fix: use the "
                "env.groups and agent.hidden the policy was trained with (see config.yaml next to the checkpoint)"
            )
        new[k] = got.astype(np.float64, copy=True)
    policy.params.update(new)
    return path


def load_policy(
    source: str | os.PathLike[str], env: TownEnv, rng: np.random.Generator, *, greedy: bool = False
) -> SoftmaxPolicy:
    """A :class:`SoftmaxPolicy` with a GRPO checkpoint's parameters; its width is read from the checkpoint.

    Raises:
        CheckpointError: as :func:`load_params`; also when the file holds no policy.
    """
    arrays, path = load_checkpoint(source)
    if not any(k.startswith("param/") for k in arrays):
        raise CheckpointError(f"{path}: param/: has no policy arrays. Fix: give the checkpoint.npz of a GRPO run")
    hidden = int(np.asarray(arrays["param/w1"]).shape[2]) if "param/w1" in arrays else 0
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=hidden, rng=rng, greedy=greedy)
    load_params(policy, path, arrays)
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


def shared_llm_usage(agent: AgentConfig, llm: LLMConfig) -> dict[str, Any] | None:
    """The usage report of this process's shared backend for ``llm`` (None without an LLM
    policy or before the backend is built; nothing is built here).

    Every policy of a process (a learner, its evaluation copies, a Ray worker's copy) asks the
    same backend (:func:`shared_backend`), so its meter holds all of the process's calls.
    """
    if agent.kind != "neurosymbolic":
        return None
    backend = _backends().get(repr(llm))
    return None if backend is None else dict(backend.usage.report())
