"""Build the trainable policy that a run's configuration asks for.

The trainer, the evaluation and the scripts construct policies only through
:func:`make_policy`, so a new kind of policy is one branch here, not an edit of the trainer.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.softmax import SoftmaxPolicy
from ga_env.checkpoint import CheckpointError, load_checkpoint

if TYPE_CHECKING:
    from conf.schema import AgentConfig, LLMConfig
    from ga_env import TownEnv


def make_policy(
    agent: AgentConfig,
    llm: LLMConfig,
    env: TownEnv,
    rng: np.random.Generator,
    *,
    greedy: bool = False,
    make_llm: Callable[[], Any] | None = None,
) -> SoftmaxPolicy:
    """The policy of ``agent`` (``cfg.agent``) for ``env``'s observation layout and groups.

    Args:
        agent: the policy's kind and size (``cfg.agent``).
        llm: the language model of a neuro-symbolic policy (``cfg.llm``; unused otherwise).
        env: an env of the run (observation size, groups).
        rng: generator for the initial weights.
        greedy: act by argmax (evaluation) instead of sampling.
        make_llm: builds the neuro-symbolic policy's LLM on first use (default: the process's
            shared backend of ``llm``, :func:`shared_backend`); e.g. a simulation's backend with
            the run's own cache and usage meter.

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
            make_llm=make_llm or functools.partial(shared_backend, llm),
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


def checkpoint_agent(arrays: Mapping[str, Any], path: str | os.PathLike[str]) -> AgentConfig | None:
    """The ``agent`` section of the config a checkpoint was trained with (its ``config_yaml``).

    ``agent.checkpoint`` is cleared (the parameters are the checkpoint's own). None when the
    checkpoint stores no config (a bare ``param/`` file).

    Raises:
        CheckpointError: the stored config is not YAML or its ``agent`` section is invalid,
            naming the file, the field and the fix.
    """
    import dataclasses

    from omegaconf import OmegaConf

    from conf.schema import AgentConfig, ConfigError

    if "config_yaml" not in arrays:
        return None
    try:
        cfg = OmegaConf.to_container(OmegaConf.create(str(arrays["config_yaml"])), resolve=True)
    except Exception as e:  # any parse failure is the same problem for the user
        raise CheckpointError(
            f"{path}: config_yaml: is not a readable config ({type(e).__name__}). Fix: give the checkpoint.npz of a "
            "GRPO run (python -m trainers.grpo)"
        ) from None
    section = cfg.get("agent") if isinstance(cfg, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise CheckpointError(f"{path}: config_yaml: agent: is not a mapping. Fix: give the checkpoint of a GRPO run")
    names = {f.name for f in dataclasses.fields(AgentConfig)}
    try:
        return AgentConfig(**{k: v for k, v in section.items() if k in names and k != "checkpoint"})
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: config_yaml: agent: {e}. Fix: give the checkpoint of a GRPO run of this version"
        ) from None


def checkpoint_lessons(arrays: Mapping[str, Any], path: str | os.PathLike[str]) -> dict[str, list[str]] | None:
    """The lessons a GRPO checkpoint stores (``lessons``: JSON ``{group: [lesson, ...]}``); None if it has none.

    Raises:
        CheckpointError: the ``lessons`` field is not such a JSON object, naming the file and the fix.
    """
    if "lessons" not in arrays:
        return None
    try:
        lessons = json.loads(str(arrays["lessons"]))
    except ValueError:
        lessons = None
    if not isinstance(lessons, dict) or not all(
        isinstance(g, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for g, v in lessons.items()
    ):
        raise CheckpointError(
            f"{path}: lessons: is not a JSON object {{group: [lesson, ...]}}. Fix: give the checkpoint.npz of a "
            "GRPO run (python -m trainers.grpo)"
        )
    return {g: list(v) for g, v in lessons.items()}


def load_policy(
    source: str | os.PathLike[str],
    env: TownEnv,
    rng: np.random.Generator,
    *,
    greedy: bool = False,
    llm: LLMConfig | None = None,
    make_llm: Callable[[], Any] | None = None,
    lessons: bool = True,
) -> SoftmaxPolicy:
    """The policy of a GRPO checkpoint, with its parameters.

    A checkpoint whose stored config says ``agent.kind: neurosymbolic`` gives a
    :class:`agents.neurosymbolic.NeuroSymbolicPolicy` (:func:`make_policy` with the checkpoint's
    agent config; its LLM is ``make_llm()``, else the shared backend of ``llm``); any other gives a
    :class:`SoftmaxPolicy` whose width is read from the checkpoint.

    Args:
        source: a ``checkpoint.npz`` or a GRPO run folder holding one.
        env: the town the policy acts in (its layout must be the checkpoint's).
        rng: generator for the (overwritten) initial weights.
        greedy: act by argmax.
        llm: the LLM config of a neuro-symbolic policy.
        make_llm: builds a neuro-symbolic policy's LLM (overrides ``llm``).
        lessons: put the checkpoint's lessons into the policy (``set_lessons`` per group).

    Raises:
        CheckpointError: as :func:`load_params`; also when the file holds no policy, or is
            neuro-symbolic and neither ``llm`` nor ``make_llm`` is given.
    """
    arrays, path = load_checkpoint(source)
    if not any(k.startswith("param/") for k in arrays):
        raise CheckpointError(f"{path}: param/: has no policy arrays. Fix: give the checkpoint.npz of a GRPO run")
    agent = checkpoint_agent(arrays, path)
    policy: SoftmaxPolicy
    if agent is not None and agent.kind == "neurosymbolic":
        if llm is None and make_llm is None:
            raise CheckpointError(
                f"{path}: config_yaml: agent.kind is neurosymbolic, whose policy asks an LLM. Fix: pass llm= "
                "(the run's cfg.llm) or make_llm= to load_policy"
            )
        from conf.schema import LLMConfig as _LLMConfig

        policy = make_policy(agent, llm or _LLMConfig(), env, rng, greedy=greedy, make_llm=make_llm)
    else:
        hidden = int(np.asarray(arrays["param/w1"]).shape[2]) if "param/w1" in arrays else 0
        policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=hidden, rng=rng, greedy=greedy)
    load_params(policy, path, arrays)
    if lessons:
        for group, texts in (checkpoint_lessons(arrays, path) or {}).items():
            policy.set_lessons(group, texts)
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
