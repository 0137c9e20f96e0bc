"""The town's constants, its dynamics parameters and the frozen :class:`World` built from its data.

A :class:`World` holds every table built once from a map, personas, groups and a
:class:`Dynamics` (group membership, objective weights, sites, itineraries, shortest-path
tables, clock tables). Both the batched dynamics (:class:`ga_env.batched.BatchedTownEnv`) and
the PettingZoo env (:class:`ga_env.TownEnv`) read it; neither reaches into the other.

:class:`Dynamics` has one field per constant of the dynamics; the defaults are Town-v1's.
``Dynamics.for_version(0)`` gives Town-v0's (the first release), kept for reproducibility.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ga_env.errors import TownDataError
from ga_env.maps import TownMap
from ga_env.personas import OBJECTIVE_TERMS, Group, Persona

__all__ = [
    "ACTION_NAMES",
    "BASE_OBS_DIM",
    "DAY_BLOCKS",
    "LATEST_VERSION",
    "OBS",
    "OBS_FEATURES",
    "Dynamics",
    "World",
]

MOVE, CHAT, TASK, RESEARCH, IDLE = 0, 1, 2, 3, 4
ACTION_NAMES: tuple[str, ...] = ("move", "chat", "task", "research")
N_ACTIONS = 4
TERM = {name: k for k, name in enumerate(OBJECTIVE_TERMS)}
KIND_HOME, KIND_TASK, KIND_RESEARCH, KIND_SOCIAL = 0, 1, 2, 3
OBS_FEATURES: tuple[str, ...] = (
    "x", "y", "time_sin", "time_cos", "night", "energy",
    "at_home", "at_task_site", "at_research_site", "at_social_site", "at_target", "target_distance",
    "target_home", "target_task", "target_research", "target_social",
    "nearby", "nearby_unaware", "partner_available",
    "group_task_progress", "group_knowledge", "community_awareness", "collaboration", "episode_progress",
)  # fmt: skip
"""Names of the first ``BASE_OBS_DIM`` observation entries (then group one-hot, then awareness per cause)."""
OBS = {name: k for k, name in enumerate(OBS_FEATURES)}
BASE_OBS_DIM = len(OBS_FEATURES)
DAY_BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("night", 22, 6),
    ("morning", 6, 12),
    ("afternoon", 12, 18),
    ("evening", 18, 22),
)
"""Time-of-day blocks ``(name, from hour, to hour)`` of the behaviour metrics (action shares)."""
LATEST_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Dynamics:
    """Constants of the town's dynamics; the defaults are Town-v1's (a change bumps the env version).

    ``Dynamics.for_version(0)`` gives Town-v0's. Each v1 mechanism has a neutral value that
    switches it off (given in the field's doc), which is how v0 is expressed.
    """

    move_speed: int = 5
    """Tiles walked per Move step (a 40-tile town is crossed in about an hour)."""
    chat_radius: int = 3
    """Chebyshev distance (tiles, same place) within which personas can chat (talking distance)."""
    vision_radius: int = 6
    """Chebyshev distance within which a persona perceives others (text observation)."""
    spread_rate: float = 0.15
    """Fraction of the remaining unawareness a conversation at full strength removes (v0: 0.05; v1's
    talks are weakened by place, energy and readiness, so a random policy still spreads little)."""
    awareness_decay: float = 0.005
    """Fraction of a non-member's awareness forgotten every step (attention fades; half-life ~23 h)."""
    persuasion: float = 0.8
    """Probability that a conversation moves a listener's awareness at all."""
    advocate_threshold: float = 0.5
    """Awareness at which a non-member starts spreading a cause on."""
    advocate_strength: float = 0.1
    """An advocate's persuasiveness relative to a member's (second-hand word of mouth is weak)."""
    supporter_threshold: float = 0.75
    """Awareness at which a non-member counts as a supporter."""
    relationship_rate: float = 0.15
    """Fraction of the remaining relationship gap a conversation closes (saturates per pair)."""
    task_rate: float = 0.1
    """Task progress per step of work at full energy by day (10 steps of work = 1 unit)."""
    research_rate: float = 0.1
    """Knowledge per step of research at full energy by day, before bonuses."""
    collab_bonus: float = 0.25
    """Extra research output per colleague researching in the same place (up to 4)."""
    chat_trace_bonus: float = 0.5
    """Extra research output at a collaboration trace of 1 (recent conversations)."""
    trace_decay: float = 0.8
    """Per-step decay of the collaboration trace (an hour's memory of a conversation)."""
    night_factor: float = 0.1
    """Output multiplier at night (v0: 0.25, and for work and research only): people are asleep or unreceptive."""
    energy_cost: tuple[float, float, float, float] = (0.003, 0.006, 0.006, 0.006)
    """Energy spent by Move, Chat, Task, Research (v1: a full day of activity costs about 0.6)."""
    energy_drain: float = 0.002
    """Energy lost every step, awake or not (v1: 0.29 a day)."""
    rest_gain_day: float = 0.01
    """Energy recovered by a Task (rest) step at home by day (a nap restores little)."""
    rest_gain_night: float = 0.05
    """Energy recovered by a Task (sleep) step at home at night (8 h of sleep restore more than a day's use)."""
    fatigue_level: float = 0.4
    """Energy below which output falls (output factor ``min(1, energy / fatigue_level)``; v0: 1.0, output ∝ energy).
    A rested persona works at full output all day; one who skipped the night's sleep starts the
    next day below this level."""
    workday_steps: int = 48
    """Steps of Task or Research per persona per day at full output; beyond them output drops to
    ``overtime_factor`` (an 8-hour working day; v0: 0 = unlimited, so working all day was optimal)."""
    overtime_factor: float = 0.1
    """Output of work and research beyond the day's ``workday_steps`` (tired people achieve little, so
    the rest of the day is better spent on people, outreach and sleep)."""
    chat_scaled: bool = True
    """Chat outcomes (persuasion, relationships, conversations) scale with the speaker's output factor
    (energy, night) like work and research (v0: False, chatting all night was free)."""
    passive_credit: float = 0.0
    """Relationship and conversation credit of a partner who did not choose Chat (v0: 1.0)."""
    repeat_decay: float = 0.5
    """Each earlier conversation with the same partner on the same day multiplies the relationship and
    conversation credit by this (v0: 1.0, the hundredth talk paid as the first)."""
    charge_decay: bool = True
    """Awareness pays on the net change of the community's awareness: decay is charged to the cause's
    group (v0: False, decay was free and every regain was paid again)."""
    readiness_floor: float = 0.25
    """Persuasion and knowledge output of a group whose task has made no progress, relative to a ready
    one (an exhibition nobody prepared draws few; v0: 1.0, work did not matter)."""
    readiness_scale: float = 1.5
    """Task progress per group member that makes a group ~76% ready (tanh(1)): 15 steps of work each."""
    readiness_decay: float = 0.004
    """Per-step decay of the readiness stock (materials are used up; half-life ~1.2 days), so work
    matters every day, not only on the first."""
    transit_chat: float = 0.2
    """Chat outcomes in transit places (no one's home, task, research or social site: streets) relative
    to social sites (v0: 1.0)."""
    workplace_chat: float = 0.6
    """Chat outcomes at homes, task and research sites relative to social sites (v0: 1.0)."""
    night_start: int = 22
    """Hour at which night begins."""
    night_end: int = 6
    """Hour at which night ends (and a new day begins for the per-day saturation)."""

    @classmethod
    def for_version(cls, version: int, **overrides: Any) -> Dynamics:
        """The defaults of Town-v``version`` with ``overrides`` applied.

        Raises:
            TownDataError: for an unknown version or field.
        """
        if version == 0:
            base: dict[str, Any] = {
                "spread_rate": 0.05,
                "night_factor": 0.25,
                "energy_cost": (0.01, 0.01, 0.03, 0.03),
                "energy_drain": 0.004,
                "rest_gain_day": 0.08,
                "rest_gain_night": 0.2,
                "fatigue_level": 1.0,
                "workday_steps": 0,
                "chat_scaled": False,
                "passive_credit": 1.0,
                "repeat_decay": 1.0,
                "charge_decay": False,
                "readiness_floor": 1.0,
                "readiness_decay": 0.0,
                "transit_chat": 1.0,
                "workplace_chat": 1.0,
            }
        elif version == 1:
            base = {}
        else:
            raise TownDataError("argument", "version", f"{version!r} is not a town version", "use 0 or 1")
        try:
            return cls(**{**base, **overrides})
        except TypeError as e:
            names = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TownDataError("argument", "dynamics", str(e), f"use fields among {names}") from None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(v, bool):
                    raise TownDataError("dynamics", f.name, f"{v!r} must be true or false", "give a boolean")
                continue
            values = v if isinstance(v, tuple) else (v,)
            if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x >= 0 for x in values):
                raise TownDataError(
                    "dynamics",
                    f.name,
                    f"{v!r} must be a non-negative number",
                    f"see the Dynamics docstring for {f.name}",
                )
        if len(self.energy_cost) != N_ACTIONS:
            raise TownDataError(
                "dynamics", "energy_cost", "needs one cost per action", "give four numbers (Move, Chat, Task, Research)"
            )
        if not (0 <= self.night_start < 24 and 0 <= self.night_end < 24):
            raise TownDataError(
                "dynamics", "night_start/night_end", "must be hours in [0, 24)", "give hours such as 22 and 6"
            )
        if self.move_speed < 1:
            raise TownDataError("dynamics", "move_speed", "must be at least 1", "give a positive number of tiles")
        for name in ("fatigue_level", "readiness_scale"):
            if getattr(self, name) <= 0:
                raise TownDataError("dynamics", name, "must be positive", "give a number above 0")
        for name in (
            "overtime_factor",
            "readiness_floor",
            "repeat_decay",
            "passive_credit",
            "transit_chat",
            "workplace_chat",
        ):
            if getattr(self, name) > 1:
                raise TownDataError("dynamics", name, f"{getattr(self, name)!r} is above 1", "give a number in [0, 1]")


def _frozen(a: npt.ArrayLike, dtype: Any = None) -> Any:
    out = np.array(a, dtype=dtype)
    out.setflags(write=False)
    return out


def _hours_mask(start: int, end: int) -> npt.NDArray[np.bool_]:
    hours = np.arange(1440) // 60
    return (hours >= start) | (hours < end) if start > end else (hours >= start) & (hours < end)


@dataclass(frozen=True, kw_only=True, eq=False)
class World:
    """The immutable tables of one town: built once, shared by every episode and env (arrays read-only).

    Build it with :meth:`World.build`; shapes use N agents, G groups, P places, K objective terms.
    """

    town_map: TownMap
    personas: tuple[Persona, ...]
    groups: tuple[Group, ...]
    dynamics: Dynamics
    group_of: npt.NDArray[np.int64]  # (N,) group index of each agent
    members: npt.NDArray[np.float64]  # (G, N) membership
    nonmember: npt.NDArray[np.float64]  # (G, N) 1 - members
    n_members: npt.NDArray[np.float64]  # (G,)
    has_cause: npt.NDArray[np.bool_]  # (G,)
    weights: npt.NDArray[np.float64]  # (G, K) objective weights
    share: npt.NDArray[np.float64]  # (G,) individual share of the reward
    agent_weights: npt.NDArray[np.float64]  # (K, N) each agent's group weights
    agent_share: npt.NDArray[np.float64]  # (N,)
    agent_cause: npt.NDArray[np.float64]  # (N,) 1 if the agent's group has a cause
    other_group: npt.NDArray[np.float64]  # (N, N) 1 if i and j are in different groups
    home: npt.NDArray[np.int64]  # (N,) place index of each agent's home
    home_tiles: tuple[npt.NDArray[np.int64], ...]  # per agent, (T_i, 2) tiles of its home
    is_task_site: npt.NDArray[np.bool_]  # (N, P)
    is_research_site: npt.NDArray[np.bool_]  # (N, P)
    is_social_site: npt.NDArray[np.bool_]  # (N, P)
    kind_table: npt.NDArray[np.float32]  # (N, P, 4) place p is i's home / task / research / social site
    social_place: npt.NDArray[np.bool_]  # (P,) a social site of some group
    chat_weight: npt.NDArray[np.float64]  # (P,) chat outcomes at place p relative to a social site
    itinerary: npt.NDArray[np.int64]  # (N, L) day-time Move targets, padded with -1
    itinerary_len: npt.NDArray[np.int64]  # (N,)
    spawn: npt.NDArray[np.int64]  # (N, 2) explicit spawn tile, or (-1, -1) = a random home tile
    hop: npt.NDArray[np.int32]  # (P, H*W) next tile toward place p
    dist: npt.NDArray[np.float64]  # (P, H*W) normalised shortest-path distance to place p
    place_flat: npt.NDArray[np.int64]  # (H*W,) place index of each tile
    cost: npt.NDArray[np.float64]  # (5,) energy cost per effective action (idle free)
    night_by_minute: npt.NDArray[np.bool_]  # (1440,)
    block_by_minute: npt.NDArray[np.int64]  # (1440,) index into DAY_BLOCKS
    sincos_by_minute: npt.NDArray[np.float64]  # (1440, 2)

    @property
    def n_agents(self) -> int:
        return len(self.personas)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def obs_dim(self) -> int:
        """Length of an observation vector: the base features, group one-hot, awareness per cause."""
        return BASE_OBS_DIM + 2 * len(self.groups)

    @classmethod
    def build(
        cls,
        town_map: TownMap,
        personas: Sequence[Persona],
        groups: Sequence[Group],
        dynamics: Dynamics,
        *,
        source: str | Path = "personas",
    ) -> World:
        """Index the town's data for the vectorised dynamics.

        Args:
            town_map: the map (its BFS tables are computed here if not yet).
            personas: the residents, in agent order.
            groups: the groups of these personas, in observation order.
            dynamics: the constants.
            source: the personas file, named in errors.

        Raises:
            TownDataError: a site, home or spawn that the map does not have, naming the file and field.
        """
        m, ps, gs = town_map, tuple(personas), tuple(groups)
        n, g, p_count = len(ps), len(gs), m.n_places
        gidx = {grp.name: i for i, grp in enumerate(gs)}
        group_of = np.array([gidx[p.group] for p in ps], dtype=np.int64)
        members = np.zeros((g, n))
        members[group_of, np.arange(n)] = 1.0
        has_cause = np.array([grp.cause is not None for grp in gs], dtype=bool)
        weights = np.array([[grp.objective.get(t, 0.0) for t in OBJECTIVE_TERMS] for grp in gs], dtype=np.float64)
        share = np.array([grp.individual_share for grp in gs], dtype=np.float64)

        def sites(grp: Group, key: str) -> list[int]:
            return [m.place_index(s, source=grp.source, field_name=key) for s in getattr(grp, key)]

        group_task = [sites(grp, "task_sites") for grp in gs]
        group_research = [sites(grp, "research_sites") for grp in gs]
        group_social = [sites(grp, "social_sites") for grp in gs]
        home = np.array(
            [m.place_index(p.living_area, source=source, field_name=f"persona {p.name!r}.living_area") for p in ps],
            dtype=np.int64,
        )
        is_task = np.zeros((n, p_count), dtype=bool)
        is_research = np.zeros((n, p_count), dtype=bool)
        is_social = np.zeros((n, p_count), dtype=bool)
        itineraries: list[list[int]] = []
        for i, p in enumerate(ps):
            gi = group_of[i]
            own_task = (
                [m.place_index(p.task_site, source=source, field_name=f"persona {p.name!r}.task_site")]
                if p.task_site
                else group_task[gi]
            )
            is_task[i, own_task] = True
            is_research[i, group_research[gi]] = True
            is_social[i, group_social[gi]] = True
            itineraries.append(list(dict.fromkeys(own_task + group_research[gi] + group_social[gi])))
        itinerary = np.full((n, max(len(it) for it in itineraries)), -1, dtype=np.int64)
        for i, it in enumerate(itineraries):
            itinerary[i, : len(it)] = it
        spawn = np.full((n, 2), -1, dtype=np.int64)
        for i, p in enumerate(ps):
            if p.spawn is None:
                continue
            x, y = p.spawn
            if not (0 <= x < m.width and 0 <= y < m.height) or not m.walkable[y, x]:
                raise TownDataError(
                    source,
                    f"persona {p.name!r}.spawn",
                    f"tile ({x}, {y}) is a wall or off the map {m.source}",
                    "choose a walkable tile inside the persona's home",
                )
            spawn[i] = (x, y)
        dist = m.distance_table().astype(np.float64)  # (P, H*W)
        kind_table = np.stack(
            [np.arange(p_count)[None, :] == home[:, None], is_task, is_research, is_social], axis=2
        ).astype(np.float32)
        # Places: social sites of any group, "workplaces" (someone's home, task or research site),
        # and the rest (streets), which are for passing through.
        social_place = is_social.any(0)
        used = kind_table[:, :, :3].any(axis=(0, 2))
        d = dynamics
        chat_weight = np.where(social_place, 1.0, np.where(used, d.workplace_chat, d.transit_chat))
        block = np.zeros(1440, dtype=np.int64)
        for b, (_, start, end) in enumerate(DAY_BLOCKS):
            block[_hours_mask(start, end)] = b
        angle = 2.0 * np.pi * np.arange(1440) / 1440.0
        return cls(
            town_map=m,
            personas=ps,
            groups=gs,
            dynamics=d,
            group_of=_frozen(group_of),
            members=_frozen(members),
            nonmember=_frozen(1.0 - members),
            n_members=_frozen(members.sum(1)),
            has_cause=_frozen(has_cause),
            weights=_frozen(weights),
            share=_frozen(share),
            agent_weights=_frozen(weights[group_of].T),
            agent_share=_frozen(share[group_of]),
            agent_cause=_frozen(has_cause[group_of], np.float64),
            other_group=_frozen(group_of[:, None] != group_of[None, :], np.float64),
            home=_frozen(home),
            home_tiles=tuple(_frozen(m.place_tiles(int(h))) for h in home),
            is_task_site=_frozen(is_task),
            is_research_site=_frozen(is_research),
            is_social_site=_frozen(is_social),
            kind_table=_frozen(kind_table),
            social_place=_frozen(social_place),
            chat_weight=_frozen(chat_weight),
            itinerary=_frozen(itinerary),
            itinerary_len=_frozen([len(it) for it in itineraries], np.int64),
            spawn=_frozen(spawn),
            hop=m.next_hop_table(),
            dist=_frozen(dist / max(float(dist.max()), 1.0)),
            place_flat=_frozen(m.place_of.ravel(), np.int64),
            cost=_frozen(np.append(np.asarray(d.energy_cost, dtype=np.float64), 0.0)),
            night_by_minute=_frozen(_hours_mask(d.night_start, d.night_end)),
            block_by_minute=_frozen(block),
            sincos_by_minute=_frozen(np.stack([np.sin(angle), np.cos(angle)], axis=1)),
        )

    def describe_places(self) -> Mapping[str, str]:
        """Each place's kind for chat (``social`` / ``workplace`` / ``transit``), for docs and tests."""
        names = self.town_map.places
        used = np.asarray(self.kind_table[:, :, :3].any(axis=(0, 2)))
        return {
            names[p]: "social" if self.social_place[p] else ("workplace" if used[p] else "transit")
            for p in range(len(names))
        }
