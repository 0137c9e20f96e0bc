"""Town: a town of generative-agent personas as a PettingZoo ``ParallelEnv``.

=====================  ==============================================================
Import                 ``from ga_env import town_v1`` or ``ga_env.parallel_env()``
Registered id          ``pettingzoo.make("parallel", "ga/Town-v1")`` (and ``"aec"``; ``"ga/Town-v0"``)
Actions                ``Discrete(4)``: 0 Move, 1 Chat, 2 Task, 3 Research
Parallel API           Yes
Agents                 one per persona (25 in the default town of Willowbrook)
Observation            ``Dict(observation=Box(-1, 1, (D,)), action_mask=Box(0, 1, (4,), int8))``
State                  ``Box(-1, 1, (N * D + G * N,))``
=====================  ==============================================================

**The town.** Personas live in a tile map (``ga_env.maps``) whose walkable
tiles belong to places addressed ``town:sector:arena[:object]``. Each persona
belongs to a group (``ga_env.personas``): a YAML file naming the group's
cause, its objective and its task, research and social sites.

**Actions** (the env resolves each action's parameter itself, so any numeric
MARL policy can act):

* ``0 Move``: walk ``move_speed`` tiles along a shortest path to the persona's
  current target place. By day the target cycles through the persona's
  itinerary (its task sites, then research sites, then social sites): moving
  while already at the target advances to the next place. At night (22:00 to
  06:00 by default) the target is home.
* ``1 Chat``: talk with the nearest persona in the same place within
  ``chat_radius`` tiles. Both remember it; relationships grow; each side
  hears the other's cause, so awareness of a cause spreads from speaker to
  listener, and listeners whose awareness passes ``advocate_threshold`` become
  advocates who spread it on (at ``advocate_strength``).
* ``2 Task``: work at one of the persona's task sites (task progress) or, at
  home, rest (recover energy).
* ``3 Research``: produce knowledge at one of the group's research sites,
  more with colleagues researching in the same place and after recent
  conversations (collaboration).

Every action costs energy; output (of work, research and, in v1, chat) is full above
``fatigue_level`` energy, falls below it and drops at night (``night_factor``). Energy comes
back from rest at home (Task at home), far more at night (sleep) than by day, so a night
without sleep costs the next day's output. In v1 work and research beyond an 8-hour working
day (``workday_steps``) achieve only ``overtime_factor``.

**Incentives (Town-v1).** Conversations persuade most at social sites (any group's social
sites), less at homes and workplaces (``workplace_chat``) and little in transit places such as
the main street (``transit_chat``). Relationship and conversation credit go only to a side that
chose Chat (``passive_credit``) and halve with each earlier talk with the same partner that day
(``repeat_decay``). A group's recent work (a decaying readiness stock) multiplies what its
members' and advocates' talk persuades and what its research yields (``readiness_floor`` when
nothing is prepared). The awareness term pays the net change of the community's awareness:
decay is charged to the cause's group (``charge_decay``), so awareness lost and regained is
not paid twice. Every constant and the reason for its default: :class:`ga_env.world.Dynamics`.
``action_mask`` marks the actions that are possible now (Move always; Chat if
a partner is near; Task at a task site or home; Research at a research site).
A masked action is a no-op. An action outside ``Discrete(4)`` is a
``ValueError`` naming the agent.

With ``action_mode="rich"`` an action is a dict
``{"action": int, "target": int, "partner": int, "utterance": str}`` where
``target`` is a place index (``env.places``; ``len(places)`` = automatic),
``partner`` an agent index (``len(possible_agents)`` = nearest) and the
utterance (at most 280 characters) is delivered to the partner's next text
observation. A bare int is accepted too.

**Observation** (``D = 24 + 2G`` floats, ``G`` = number of groups in the town):
position (2), time of day sin/cos (2), night (1), energy (1), at home /
task site / research site / social site / target (5), distance to target (1),
target kind one-hot home/task/research/social (4), personas within chat range
(1), fraction of them unaware of my cause (1), a partner is available (1),
my group's task progress, knowledge and community awareness of its cause (3),
collaboration trace (1), episode progress (1), my group one-hot (G), my
awareness of each group's cause (G). ``obs_mode="box"`` gives the bare Box.

With ``text_obs=True``, ``infos[agent]["text"]`` describes what the persona
perceives: time, place, energy, the personas within ``vision_radius`` and what
they are doing, and what was said to it.

**Rewards.** Per step, the env measures for every persona its contribution to
each objective term (``ga_env.personas.OBJECTIVE_TERMS``); a group's reward
weights them by its YAML ``objective``. A persona receives
``individual_share`` of its own weighted contribution plus the rest of its
group's total divided by the group's size; what advocates (non-members)
achieve for a cause is shared by the whole group. A group's summed reward is
therefore exactly its objective applied to its measured terms.

**Arguments** (``parallel_env(**kwargs)``):

* ``town``: a shipped town name (``"willowbrook"``) or a folder with
  ``map.yaml`` (or ``map.json``, Tiled), ``personas.yaml`` and ``groups/``.
* ``map_file``, ``personas_file``, ``groups_dir``: override one part.
* ``groups``: keep only personas of these groups (e.g. ``["artist_collective", "residents"]``).
* ``max_agents``: keep the first N personas.
* ``version`` (1; 0 = the first release's dynamics, kept for reproducibility).
* ``max_cycles`` (144, one day at stride 10; the experiments use 432, three days), ``stride`` (minutes per step, 10),
  ``start`` (``"2023-02-13 07:00"``).
* ``obs_mode`` (``"dict"`` | ``"box"``), ``action_mode`` (``"discrete"`` | ``"rich"``),
  ``text_obs`` (False), ``render_mode`` (``"ansi"`` | ``"rgb_array"`` | ``"human"``).
* ``dynamics``: a :class:`Dynamics` or a mapping of its fields.

**Batched episodes.** The dynamics are implemented once, on ``(E, N, ...)`` arrays, in
:class:`ga_env.batched.BatchedTownEnv`; this env is its one-episode case. ``BatchedTownEnv(env, G)``
steps G episodes as one NumPy program (a GRPO group) with the same trajectories as G envs.

**Version history**

* v0: first release.
* v1: incentives whose optimum looks like town life (the trained v0 policies chatted 60-90% of
  all steps, mostly on the main street, all night, and never worked): chat costs energy and
  scales with energy, night and place; per-partner, per-day saturation of conversations and
  relationships, none for a passive partner; awareness paid on its net change; a group's work
  conditions its outreach and research; sleep at night restores far more than a nap; an
  8-hour working day; ``spread_rate`` 0.05 -> 0.15 (talks are weaker otherwise). Goal metrics
  (:meth:`TownEnv.goal_metrics`). v0 stays available as ``version=0`` / ``ga/Town-v0`` and
  reproduces the first release's trajectories exactly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
import numpy.typing as npt
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from ga_env.batched import BatchedTownEnv
from ga_env.errors import ActionError, TownDataError
from ga_env.maps import TownMap, load_map
from ga_env.personas import Group, Persona, load_groups, load_personas
from ga_env.world import (
    ACTION_NAMES,
    BASE_OBS_DIM,
    CHAT,
    IDLE,
    LATEST_VERSION,
    MOVE,
    N_ACTIONS,
    OBS,
    OBS_FEATURES,
    RESEARCH,
    TASK,
    Dynamics,
    World,
)

__all__ = ["ACTION_NAMES", "OBS", "OBS_FEATURES", "Dynamics", "TownEnv", "env", "parallel_env", "raw_env"]

MAX_UTTERANCE = 280


def _town_folder(town: str | Path) -> Path:
    candidate = Path(town)
    if candidate.is_dir():
        return candidate
    shipped = resources.files("ga_env") / "data" / str(town)
    if shipped.is_dir():
        return Path(str(shipped))
    available = sorted(p.name for p in (resources.files("ga_env") / "data").iterdir() if p.is_dir())
    raise TownDataError(
        "argument",
        "town",
        f"{town!r} is neither a folder nor a shipped town",
        f"use one of {available} or a folder with map.yaml, personas.yaml and groups/",
    )


@functools.lru_cache(maxsize=8)
def _cached_map(path: str, mtime: float) -> TownMap:
    # One BFS per destination, shared by every env of the process (maps are immutable).
    town_map = load_map(path)
    town_map.next_hop_table()
    return town_map


def env(**kwargs: Any) -> Any:
    """The AEC version of the town (``parallel_to_aec`` of :func:`parallel_env`)."""
    return parallel_to_aec(parallel_env(**kwargs))


def _regrouped(personas: tuple[Persona, ...], regroup: Mapping[str, str], used: list[str]) -> tuple[Persona, ...]:
    """The personas with some moved to another group (``{persona name: group}``), validated."""
    names = [p.name for p in personas]
    for name, group in regroup.items():
        if name not in names:
            raise TownDataError("argument", f"regroup.{name}", "is not a persona of this town", f"use one of {names}")
        if group not in used:
            raise TownDataError(
                "argument", f"regroup.{name}", f"{group!r} is not a group of this town", f"use one of {used}"
            )
    moved = tuple(dataclasses.replace(p, group=regroup[p.name]) if p.name in regroup else p for p in personas)
    empty = [g for g in used if not any(p.group == g for p in moved)]
    if empty:
        raise TownDataError(
            "argument",
            "regroup",
            f"moving these personas leaves {empty} without members",
            "keep one persona in each group",
        )
    return moved


def _reweighted(group: Group, weights: Mapping[str, float] | None) -> Group:
    """``group`` with some objective weights replaced (``{term: weight}``; 0 removes the term), validated."""
    if not weights:
        return group
    objective = {**group.objective, **{str(k): float(v) for k, v in weights.items()}}
    return dataclasses.replace(group, objective={k: v for k, v in objective.items() if v != 0.0})


def parallel_env(**kwargs: Any) -> TownEnv:
    """The town as a PettingZoo ``ParallelEnv``; see the module docstring for arguments."""
    return TownEnv(**kwargs)


class _EpisodeArray:
    """A per-episode array of the env's one-episode core, read and written through (``core.<name>[0]``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._core, self.name)[0]

    def __set__(self, obj: Any, value: Any) -> None:
        getattr(obj._core, self.name)[0] = value


class _Shared:
    """A quantity the core shares across its episodes (the clock), read and written through."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._core, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj._core, self.name, value)


class _WorldField:
    """A read-only table of the env's :class:`~ga_env.world.World` (``env.group_of`` is ``env.world.group_of``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.world, self.name)


class TownEnv(ParallelEnv):  # type: ignore[misc]
    """The town as a PettingZoo ParallelEnv (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "rgb_array", "human"],
        "name": f"town_v{LATEST_VERSION}",
        "is_parallelizable": True,
        "render_fps": 4,
    }

    # Episode state lives in a one-episode ga_env.batched.BatchedTownEnv (the dynamics); these
    # names read and write its arrays, so ``env.energy[i] = 0.3`` still edits the live state.
    pos_flat = _EpisodeArray("pos_flat")  # (N,) flat tile index y * W + x
    energy = _EpisodeArray("energy")  # (N,)
    aware = _EpisodeArray("aware")  # (G, N) awareness of each group's cause
    supporter = _EpisodeArray("supporter")  # (G, N) non-members won over (counted once)
    relationship = _EpisodeArray("relationship")  # (N, N)
    trace = _EpisodeArray("trace")  # (N,) collaboration trace
    itinerary_idx = _EpisodeArray("itinerary_idx")  # (N,)
    override = _EpisodeArray("override")  # (N,) rich-mode target, -1 = none
    group_progress = _EpisodeArray("group_progress")  # (G,)
    group_knowledge = _EpisodeArray("group_knowledge")  # (G,)
    last_action = _EpisodeArray("last_action")  # (N,) effective action of the last step (4 = no-op)
    last_partner = _EpisodeArray("last_partner")  # (N,) -1 = none
    episode_terms = _EpisodeArray("episode_terms")  # (K, G) team totals
    episode_rewards = _EpisodeArray("episode_rewards")  # (N,)
    action_counts = _EpisodeArray("action_counts")  # (N, 5)
    _place = _EpisodeArray("place")
    _target = _EpisodeArray("target")
    _cheb = _EpisodeArray("cheb")
    _reach = _EpisodeArray("reach")
    _partner = _EpisodeArray("partner")
    _mask = _EpisodeArray("mask")
    _obs = _EpisodeArray("obs")
    _t = _Shared("t")
    _night = _Shared("night")

    # Tables built once from the town's data (ga_env.world.World), shared with the dynamics.
    group_of = _WorldField("group_of")  # (N,)
    members = _WorldField("members")  # (G, N)
    n_members = _WorldField("n_members")  # (G,)
    has_cause = _WorldField("has_cause")  # (G,)
    weights = _WorldField("weights")  # (G, K)
    share = _WorldField("share")  # (G,)
    home = _WorldField("home")  # (N,)
    home_tiles = _WorldField("home_tiles")
    is_task_site = _WorldField("is_task_site")  # (N, P)
    is_research_site = _WorldField("is_research_site")  # (N, P)
    is_social_site = _WorldField("is_social_site")  # (N, P)
    itinerary = _WorldField("itinerary")  # (N, L)
    itinerary_len = _WorldField("itinerary_len")  # (N,)
    spawn = _WorldField("spawn")  # (N, 2)
    place_flat = _WorldField("place_flat")  # (H*W,)

    def __init__(
        self,
        *,
        town: str | Path = "willowbrook",
        map_file: str | Path | None = None,
        personas_file: str | Path | None = None,
        groups_dir: str | Path | None = None,
        groups: Sequence[str] | None = None,
        max_agents: int | None = None,
        max_cycles: int = 144,
        stride: int = 10,
        start: str | dt.datetime = "2023-02-13 07:00",
        obs_mode: str = "dict",
        action_mode: str = "discrete",
        text_obs: bool = False,
        render_mode: str | None = None,
        dynamics: Dynamics | Mapping[str, Any] | None = None,
        version: int = LATEST_VERSION,
        regroup: Mapping[str, str] | None = None,
        objective: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        # -- arguments --------------------------------------------------------------------
        if obs_mode not in ("dict", "box"):
            raise TownDataError("argument", "obs_mode", f"{obs_mode!r} is unknown", "use 'dict' or 'box'")
        if action_mode not in ("discrete", "rich"):
            raise TownDataError("argument", "action_mode", f"{action_mode!r} is unknown", "use 'discrete' or 'rich'")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise TownDataError(
                "argument",
                "render_mode",
                f"{render_mode!r} is unknown",
                f"use one of {self.metadata['render_modes']} or None",
            )
        if isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 1:
            raise TownDataError(
                "argument",
                "max_cycles",
                f"{max_cycles!r} is not a positive integer",
                "give the episode length in steps, e.g. 144",
            )
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= 1440:
            raise TownDataError(
                "argument", "stride", f"{stride!r} is not minutes in [1, 1440]", "give minutes per step, e.g. 10"
            )
        if isinstance(start, str):
            try:
                start = dt.datetime.fromisoformat(start)
            except ValueError:
                raise TownDataError(
                    "argument", "start", f"{start!r} is not a date and time", "write it as 'YYYY-MM-DD HH:MM'"
                ) from None
        if not isinstance(dynamics, Dynamics):  # the version's defaults, with the given overrides
            dynamics = Dynamics.for_version(version, **(dynamics or {}))
        self.version = version
        self.metadata = {**self.metadata, "name": f"town_v{version}"}  # type: ignore[misc]  # per version
        self.dynamics: Dynamics = dynamics
        self.max_cycles = max_cycles
        self.stride = stride
        self.start_time: dt.datetime = start
        self.obs_mode = obs_mode
        self.action_mode = action_mode
        self.text_obs = text_obs
        self.render_mode = render_mode

        # -- data: map, groups, personas ---------------------------------------------------
        folder = _town_folder(town)
        if map_file is None:
            map_file = folder / "map.yaml" if (folder / "map.yaml").exists() else folder / "map.json"
        map_path = Path(map_file)
        self.town_map: TownMap = _cached_map(
            str(map_path.resolve()), map_path.stat().st_mtime if map_path.exists() else 0.0
        )
        all_groups = load_groups(groups_dir if groups_dir is not None else folder / "groups")
        personas_path = Path(personas_file) if personas_file is not None else folder / "personas.yaml"
        personas = load_personas(personas_path)
        for p in personas:
            if p.group not in all_groups:
                raise TownDataError(
                    personas_path,
                    f"persona {p.name!r}.group",
                    f"{p.group!r} has no group file",
                    f"add {p.group}.yaml to the groups folder or use one of {sorted(all_groups)}",
                )
        if groups is not None:
            unknown = [g for g in groups if g not in all_groups]
            if unknown:
                raise TownDataError(
                    "argument", "groups", f"unknown group(s) {unknown}", f"use groups among {sorted(all_groups)}"
                )
            personas = tuple(p for p in personas if p.group in groups)
        if max_agents is not None:
            if isinstance(max_agents, bool) or not isinstance(max_agents, int) or max_agents < 1:
                raise TownDataError(
                    "argument", "max_agents", f"{max_agents!r} is not a positive integer", "give a number of personas"
                )
            personas = personas[:max_agents]
        if len(personas) < 1:
            raise TownDataError("argument", "groups/max_agents", "no persona is left", "keep at least one persona")
        used = sorted({p.group for p in personas}, key=list(all_groups).index)
        personas = _regrouped(personas, regroup or {}, used)
        self.personas: tuple[Persona, ...] = personas
        self.groups: tuple[Group, ...] = tuple(_reweighted(all_groups[g], (objective or {}).get(g)) for g in used)
        for group in objective or {}:
            if group not in used:
                raise TownDataError(
                    "argument", f"objective.{group}", "is not a group of this town", f"use one of {used}"
                )
        self.possible_agents: list[str] = [p.agent_id for p in personas]
        self.agent_index: dict[str, int] = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self.world = World.build(self.town_map, personas, self.groups, self.dynamics, source=personas_path)

        # -- spaces (fixed at construction, returned as the same objects) ------------------
        n, g = len(personas), len(self.groups)
        self.obs_dim = BASE_OBS_DIM + 2 * g
        box = gymnasium.spaces.Box(-1.0, 1.0, (self.obs_dim,), np.float32)
        mask = gymnasium.spaces.Box(0, 1, (N_ACTIONS,), np.int8)
        self._obs_space: gymnasium.spaces.Space[Any] = (
            gymnasium.spaces.Dict({"observation": box, "action_mask": mask}) if obs_mode == "dict" else box
        )
        if action_mode == "rich":
            self._act_space: gymnasium.spaces.Space[Any] = gymnasium.spaces.Dict(
                {
                    "action": gymnasium.spaces.Discrete(N_ACTIONS),
                    "target": gymnasium.spaces.Discrete(self.town_map.n_places + 1),
                    "partner": gymnasium.spaces.Discrete(n + 1),
                    "utterance": gymnasium.spaces.Text(MAX_UTTERANCE),
                }
            )
        else:
            self._act_space = gymnasium.spaces.Discrete(N_ACTIONS)
        self.state_space = gymnasium.spaces.Box(-1.0, 1.0, (n * self.obs_dim + g * n,), np.float32)
        self.np_random, self.np_random_seed = seeding.np_random()
        # The dynamics: one implementation for E = 1 (this env) and E = G (a GRPO group).
        self._core = BatchedTownEnv(self.world, 1, max_cycles=max_cycles, stride=stride, start=start)
        self._ready = False

    # -- spaces -------------------------------------------------------------------------------
    @functools.cache  # noqa: B019 - spaces are fixed per instance, as in PettingZoo
    def observation_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        return self._obs_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gymnasium.spaces.Space[Any]:
        return self._act_space

    @property
    def places(self) -> tuple[str, ...]:
        """Place addresses (``Sector:arena``) indexed as in rich actions and ``target``."""
        return self.town_map.places

    @property
    def now(self) -> dt.datetime:
        """The town's clock."""
        return self.start_time + dt.timedelta(minutes=self.stride * self._t)

    @property
    def current_places(self) -> npt.NDArray[np.int64]:
        """``(N,)`` index (into ``places``) of each agent's current place."""
        return self._place.copy()

    @property
    def current_targets(self) -> npt.NDArray[np.int64]:
        """``(N,)`` index of each agent's current Move target."""
        return self._target.copy()

    @property
    def is_night(self) -> bool:
        """Whether it is night now (output drops, Move heads home)."""
        return self._night

    # -- reset --------------------------------------------------------------------------------
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        obs, _ = self.reset_arrays(seed)
        self.agents = list(self.possible_agents)
        return self._obs_dict(obs), self._infos()

    def reset_arrays(self, seed: int | None = None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
        """Reset and return ``(obs (N, D), action_mask (N, 4))`` without building dicts."""
        if seed is not None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        n = len(self.personas)
        obs, mask = self._core.reset_arrays(rngs=[self.np_random])
        self.last_utterance: list[str | None] = [None] * n
        self.inbox: list[list[tuple[int, str]]] = [[] for _ in range(n)]
        self._ready = True
        return obs[0], mask[0]

    # -- step ---------------------------------------------------------------------------------
    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]]:
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        a, targets, partners = self._parse_actions(actions)
        obs, _, rewards, truncated = self.step_arrays(a, targets=targets, partners=partners)
        agents = self.agents
        obs_d = self._obs_dict(obs)
        rew_d = dict(zip(agents, rewards.tolist(), strict=True))
        term_d = dict.fromkeys(agents, False)
        trunc_d = dict.fromkeys(agents, truncated)
        infos = self._infos()
        if truncated:
            self.agents = []
        return obs_d, rew_d, term_d, trunc_d, infos

    def step_arrays(
        self,
        actions: npt.NDArray[np.int64],
        *,
        targets: npt.NDArray[np.int64] | None = None,
        partners: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], npt.NDArray[np.float64], bool]:
        """Advance one step from an ``(N,)`` action array (4 = idle); no dicts, no validation.

        This is the hot path that :meth:`step` wraps; vectorised trainers call it directly.

        Returns:
            ``(obs (N, D), action_mask (N, 4), rewards (N,), truncated)``.
        """
        core = self._core
        core.rngs[0] = self.np_random  # honour a generator replaced since reset
        obs, mask, rewards, truncated = core.step_arrays(
            actions,
            targets=None if targets is None else targets[None],
            partners=None if partners is None else partners[None],
        )
        return obs[0], mask[0], rewards[0], truncated

    def _parse_actions(
        self, actions: Mapping[str, Any]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | None, npt.NDArray[np.int64] | None]:
        n = len(self.possible_agents)
        if self.action_mode == "discrete" and type(actions) is dict and list(actions) == self.possible_agents:
            # Fast path (every agent, in order): one C-level conversion; the dtype says whether all
            # values are integers, and a uint64 view turns negatives into huge values.
            vals = list(actions.values())
            arr = np.array(vals)
            if arr.dtype == np.int64 and arr.view(np.uint64).max() < N_ACTIONS and bool not in map(type, vals):
                return arr, None, None
        a = np.full(n, IDLE, dtype=np.int64)
        if not isinstance(actions, Mapping):
            raise ActionError(
                "*",
                "actions",
                f"must be a dict of agent -> action, got {type(actions).__name__}",
                "pass {agent: action}",
            )
        index = self.agent_index
        for agent in actions:
            if agent not in index:
                raise ActionError(str(agent), "agent", "is not an agent of this env", f"use agents among {self.agents}")
        if self.action_mode == "discrete":
            for agent, v in actions.items():
                a[index[agent]] = self._check_action(agent, v)
            return a, None, None
        targets = np.full(n, -1, dtype=np.int64)
        partners = np.full(n, -1, dtype=np.int64)
        for agent, v in actions.items():
            i = index[agent]
            if isinstance(v, Mapping):
                unknown = set(v) - {"action", "target", "partner", "utterance"}
                if unknown or "action" not in v:
                    raise ActionError(
                        agent,
                        "keys",
                        f"rich action has keys {sorted(map(str, v))}",
                        "give 'action' and optionally 'target', 'partner', 'utterance'",
                    )
                a[i] = self._check_action(agent, v["action"])
                if v.get("target") is not None:
                    targets[i] = self._check_index(agent, "target", v["target"], self.town_map.n_places + 1)
                if v.get("partner") is not None:
                    partners[i] = self._check_index(agent, "partner", v["partner"], n + 1)
                text = v.get("utterance")
                if text is not None and not isinstance(text, str):
                    raise ActionError(agent, "utterance", f"must be a string, got {type(text).__name__}", "pass text")
                self.last_utterance[i] = text[:MAX_UTTERANCE] if text else None
            else:
                a[i] = self._check_action(agent, v)
                self.last_utterance[i] = None
        return a, targets, partners

    @staticmethod
    def _check_action(agent: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < N_ACTIONS:
            raise ActionError(
                agent, "action", f"{v!r:.80} is not in Discrete(4)", "use 0 Move, 1 Chat, 2 Task or 3 Research"
            )
        return int(v)

    @staticmethod
    def _check_index(agent: str, key: str, v: Any, size: int) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < size:
            raise ActionError(
                agent,
                key,
                f"{v!r:.80} is not an index in [0, {size})",
                f"give an index below {size - 1}, or {size - 1} for automatic",
            )
        return int(v)

    def set_positions(self, xy: npt.ArrayLike) -> None:
        """Teleport agents to tiles ``xy`` (``(N, 2)`` of ``(x, y)``), e.g. to restore a saved run.

        Raises:
            ValueError: if a tile is off the map or a wall, naming the agent.
        """
        xy = np.asarray(xy, dtype=np.int64)
        m = self.town_map
        if xy.shape != (len(self.personas), 2):
            raise ValueError(f"positions must have shape ({len(self.personas)}, 2), got {xy.shape}")
        for i, (x, y) in enumerate(xy):
            if not (0 <= x < m.width and 0 <= y < m.height) or not m.walkable[y, x]:
                raise ValueError(f"agent {self.possible_agents[i]!r}: tile ({x}, {y}) is off the map or a wall")
        self.pos_flat = xy[:, 1] * m.width + xy[:, 0]
        self._refresh()

    # -- exact save / restore ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The episode's exact state (plain data and arrays): the dynamics' arrays and generator,
        the live agents and the rich mode's pending utterances.

        ``load_state_dict`` on an env built with the same arguments continues exactly as this one
        would; the simulation's checkpoints are made of it.
        """
        if not self._ready:
            raise RuntimeError("state_dict() before reset(): there is no episode to save")
        return {
            "version": self.version,
            "core": self._core.state_dict(),
            "agents": list(self.agents),
            "np_random_seed": self.np_random_seed,
            "last_utterance": list(self.last_utterance),
            "inbox": [[[int(j), str(text)] for j, text in box] for box in self.inbox],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (of :meth:`state_dict`).

        Raises:
            ValueError: if the state is of another town version or size (naming the field and the fix).
        """
        if int(state["version"]) != self.version:
            raise ValueError(
                f"env state: version: saved by Town-v{state['version']}, this env is Town-v{self.version}. "
                f"Fix: set env.version={state['version']}"
            )
        n = len(self.personas)
        if len(state["last_utterance"]) != n:
            raise ValueError(f"env state: last_utterance: {len(state['last_utterance'])} agents, the town has {n}")
        if not self._ready:
            self.reset_arrays(seed=0)
        self._core.rngs = [self.np_random]  # the env's generator is the dynamics' generator
        self._core.load_state_dict(state["core"])
        self.np_random_seed = int(state["np_random_seed"])
        self.agents = [a for a in state["agents"] if a in self.agent_index]
        self.last_utterance = [None if u is None else str(u) for u in state["last_utterance"]]
        self.inbox = [[(int(j), str(text)) for j, text in box] for box in state["inbox"]]
        self._ready = True

    # -- derived quantities ----------------------------------------------------------------------
    def _refresh(self) -> None:
        """Recompute targets, chat partners, the action mask and observations after a change."""
        self._core.refresh()

    def _obs_dict(self, obs: npt.NDArray[np.float32]) -> dict[str, Any]:
        if self.obs_mode == "box":
            return dict(zip(self.possible_agents, obs, strict=True))
        return {
            a: {"observation": o, "action_mask": m}
            for a, o, m in zip(self.possible_agents, obs, self._mask, strict=True)
        }

    def _infos(self) -> dict[str, dict[str, Any]]:
        if not self.text_obs:
            return {a: {} for a in self.possible_agents}
        infos = {a: {"text": self.perceive(i), "place": self.address_of(i)} for i, a in enumerate(self.possible_agents)}
        self.inbox = [[] for _ in self.possible_agents]
        return infos

    # -- goal metrics -----------------------------------------------------------------------------
    def goal_metrics(self) -> dict[str, dict[str, float]]:
        """What each group's objective names and how its members behaved, in this episode so far.

        ``{group: {metric: value}}``; the metrics are those of
        :meth:`ga_env.batched.BatchedTownEnv.goal_metrics` (e.g. ``awareness_end``, ``supporters``,
        ``knowledge``, ``task_progress``, ``night_at_home``, ``chat_at_social_sites``,
        ``distinct_partners_per_day``, ``share/<block>/<action>``).
        """
        return {
            group: {k: float(v[0]) for k, v in metrics.items()} for group, metrics in self._core.goal_metrics().items()
        }

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> npt.NDArray[np.float32]:
        """Global state for centralised critics: every agent's observation and all awareness."""
        return np.concatenate([self._obs.ravel(), self.aware.ravel().astype(np.float32)])

    # -- natural language ---------------------------------------------------------------------------
    def position(self, i: int) -> tuple[int, int]:
        """Tile ``(x, y)`` of agent ``i``."""
        w = self.town_map.width
        return int(self.pos_flat[i] % w), int(self.pos_flat[i] // w)

    def address_of(self, i: int) -> str:
        """Full address of agent ``i``'s tile."""
        return self.town_map.address(*self.position(i))

    def describe(self, i: int) -> str:
        """What agent ``i`` did in the last step, in a few words."""
        a, place = int(self.last_action[i]), self.places[int(self._place[i])]
        if a == MOVE:
            return f"walking toward {self.places[int(self._target[i])]}"
        if a == CHAT and self.last_partner[i] >= 0:
            return f"chatting with {self.personas[int(self.last_partner[i])].name}"
        if a == TASK:
            return (
                "resting at home" if self._place[i] == self.home[i] else f"working ({self.personas[i].task}) at {place}"
            )
        if a == RESEARCH:
            return f"researching at {place}"
        return f"idle at {place}"

    def perceive(self, i: int) -> str:
        """The persona's view of the world: time, place, who is around, what it heard."""
        p = self.personas[i]
        now = self.now
        when = f"{now:%A %B %d, %Y, %H:%M}" + (" (night)" if self._night else "")
        lines = [f"It is {when}. You are {p.name} at {self.address_of(i)}; your energy is {self.energy[i]:.0%}."]
        seen = np.nonzero((self._cheb[i] <= self.dynamics.vision_radius) & (np.arange(len(self.personas)) != i))[0]
        if len(seen):
            lines.append(
                "You see: " + "; ".join(f"{self.personas[j].name} is {self.describe(int(j))}" for j in seen) + "."
            )
        else:
            lines.append("Nobody is around.")
        for j in np.nonzero(self.last_partner == i)[0]:
            text = self.last_utterance[int(j)]
            if text:
                lines.append(f'{self.personas[int(j)].name} said to you: "{text}"')
        lines.append(f"You are heading to {self.places[int(self._target[i])]}.")
        return " ".join(lines)

    # -- render --------------------------------------------------------------------------------------
    def render(self) -> str | npt.NDArray[np.uint8] | None:
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        if not self._ready:
            raise RuntimeError("render() called before reset(); call env.reset(seed=...) first")
        from ga_env import render as _render

        if self.render_mode == "rgb_array":
            return _render.rgb_array(self)
        text = _render.ansi(self)
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        pass


raw_env = TownEnv
