"""Typed configuration: one dataclass per concern, registered as Hydra structured configs.

The YAML groups in ``conf/`` only pick values; a key that is not a field here, or a value of
the wrong type, is rejected by Hydra/OmegaConf at composition, naming the key. Values are then
checked by ``__post_init__`` when :func:`to_config` builds the typed objects, with a message
that says how to fix them. Library code receives these objects, never a ``DictConfig``.

(The dataclasses are not frozen: Hydra merges YAML and command-line overrides into them.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import ga_env
from ga_env.town import Dynamics


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str, fix: str) -> None:
        super().__init__(f"config: {field_name}: {problem}. Fix: {fix}")


def _positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(
                f"{section}.{name}", f"{value!r} must be > 0", f"set {section}.{name} to a positive value"
            )


@dataclass(kw_only=True)
class EnvConfig:
    """The town (arguments of ``ga_env.parallel_env``)."""

    groups: list[str] = field(default_factory=lambda: ["artist_collective", "residents"])
    """Groups whose personas live in the town (see ``ga_env/data/willowbrook/groups``)."""
    max_agents: int | None = None
    """Keep only the first N personas (None = all of the chosen groups)."""
    max_cycles: int = 144
    """Episode length in steps (144 = one day at a 10-minute stride)."""
    stride: int = 10
    """Minutes per step."""
    dynamics: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``ga_env.town.Dynamics`` fields (e.g. ``{spread_rate: 0.1}``)."""

    def __post_init__(self) -> None:
        if not self.groups:
            raise ConfigError("env.groups", "is empty", "list at least one group, e.g. [artist_collective, residents]")
        unknown = set(self.dynamics) - {f.name for f in dataclasses.fields(Dynamics)}
        if unknown:
            names = ", ".join(f.name for f in dataclasses.fields(Dynamics))
            raise ConfigError("env.dynamics", f"unknown fields {sorted(unknown)}", f"use fields of Dynamics: {names}")
        _positive("env", self, "max_cycles", "stride")

    def make(self) -> ga_env.TownEnv:
        """Build the env (array API; observations as a bare Box)."""
        dyn = {k: tuple(v) if isinstance(v, list) else v for k, v in self.dynamics.items()}
        return ga_env.parallel_env(
            groups=list(self.groups),
            max_agents=self.max_agents,
            max_cycles=self.max_cycles,
            stride=self.stride,
            obs_mode="box",
            dynamics=dyn or None,
        )


@dataclass(kw_only=True)
class AgentConfig:
    """The trainable policy (``agents.SoftmaxPolicy``)."""

    hidden: int = 32
    """Hidden units of the per-group MLP (0 = linear softmax policy)."""
    init_scale: float = 0.01
    """Std of the output layer at initialisation (small: a near-uniform first policy)."""
    eval_greedy: bool = False
    """Evaluate the trained policy by argmax (True) or by sampling (False)."""

    def __post_init__(self) -> None:
        if self.hidden < 0:
            raise ConfigError("agent.hidden", f"{self.hidden} is negative", "use 0 (linear) or a positive width")
        _positive("agent", self, "init_scale")


@dataclass(kw_only=True)
class LLMConfig:
    """The personas' language model. Only the offline ``scripted`` stand-in exists so far."""

    backend: str = "scripted"
    """``scripted`` (rule-based, not a language model); other backends are a later issue."""

    def __post_init__(self) -> None:
        if self.backend != "scripted":
            raise ConfigError("llm.backend", f"{self.backend!r} is not available yet", "use llm=scripted")


@dataclass(kw_only=True)
class GRPOConfig:
    """GRPO trainer settings (``trainers.grpo``)."""

    seed: int = 0
    """Seed of the trainer's generator (env seeds, sampling, minibatches, initial weights)."""
    iterations: int = 40
    """Training iterations; each rolls out one GRPO group."""
    group_size: int = 8
    """G: episodes rolled out from the same env seed per iteration."""
    gamma: float = 0.95
    """Discount of the per-agent reward-to-go used as the return (1 = undiscounted)."""
    group_by: str = "rollout"
    """Advantage baseline: ``rollout`` (same agent and step across the G rollouts), ``team`` or ``both``."""
    scale: str = "group"
    """Advantage scaling: ``group`` std (GRPO), ``batch`` std, or ``none`` (Dr. GRPO)."""
    adv_eps: float = 1e-4
    """Added to the std in the advantage denominator."""
    epsilon: float = 0.2
    """Clip range of the probability ratio."""
    beta: float = 0.01
    """KL coefficient toward the frozen reference (initial) policy (k3 estimator)."""
    lr: float = 0.01
    """Adam learning rate."""
    epochs: int = 4
    """Passes over each iteration's samples."""
    minibatches: int = 4
    """Minibatches per epoch."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip (0 = off)."""
    top_k: int = 3
    """Trajectories per group summarised into lessons."""
    eval_episodes: int = 5
    """Episodes (fresh seeds) per policy in the evaluations."""
    eval_every: int = 10
    """Evaluate the trained policy every N iterations (0 = only at the end)."""
    checkpoint_every: int = 10
    """Checkpoint every N iterations (and always at the end)."""
    resume: str | None = None
    """Path of a checkpoint (``.npz``) to continue from exactly."""

    def __post_init__(self) -> None:
        from trainers.grpo_math import GROUP_BY, SCALES

        if self.group_by not in GROUP_BY:
            raise ConfigError("trainer.group_by", f"{self.group_by!r} is unknown", f"use one of {', '.join(GROUP_BY)}")
        if self.scale not in SCALES:
            raise ConfigError("trainer.scale", f"{self.scale!r} is unknown", f"use one of {', '.join(SCALES)}")
        _positive(
            "trainer", self, "iterations", "group_size", "epsilon", "lr", "epochs", "minibatches", "eval_episodes"
        )
        if self.group_size < 2 and self.group_by != "team":
            raise ConfigError("trainer.group_size", "1 rollout has no group baseline", "use group_size >= 2")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError("trainer.gamma", f"{self.gamma} is not in [0, 1]", "use e.g. 0.95")
        for name in ("beta", "max_grad_norm", "eval_every", "checkpoint_every", "top_k", "adv_eps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"trainer.{name}", "is negative", f"set trainer.{name} >= 0")


@dataclass(kw_only=True)
class Config:
    """The whole run."""

    experiment: str = "default"
    """Name of the experiment (output folder, TensorBoard)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    trainer: GRPOConfig = field(default_factory=GRPOConfig)


def register_configs() -> None:
    """Register the schema so ``config.yaml``'s defaults list can start from it."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)


def to_config(cfg: DictConfig) -> Config:
    """Typed, validated :class:`Config` from a composed Hydra config."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):
        raise ConfigError("config", f"composed to {type(obj).__name__}", "put '- schema' first in the defaults list")
    return obj
