"""E copies of the town stepped as one NumPy program: the dynamics on ``(E, N, ...)`` arrays.

This module holds the town's only implementation of the dynamics and rewards (Town-v1, and
Town-v0 through ``Dynamics.for_version(0)``). :class:`ga_env.TownEnv` runs it with ``E = 1``;
a GRPO trainer runs the G rollouts of a group with ``E = G``, so that one step of all G
episodes costs about as many NumPy calls as one step of a single env. Both therefore give the
same trajectories for the same seeds, bit for bit: episode ``e`` draws its randomness (spawn
tiles, initial energy and awareness, persuasion) from its own generator ``rngs[e]``, in the same
order as a single env seeded alike would.

Usage::

    env = ga_env.parallel_env(obs_mode="box")
    batch = BatchedTownEnv(env, 16)                   # or BatchedTownEnv(world, 16, max_cycles=144)
    obs, mask = batch.reset_arrays(seed=0)            # (E, N, D), (E, N, 4); all from seed 0
    while True:
        obs, mask, rewards, done = batch.step_arrays(actions)   # actions (E, N), rewards (E, N)
        if done:
            break
    batch.goal_metrics()                              # {group: {metric: (E,) array}}

``reset_arrays(seed)`` seeds every episode alike (the GRPO group); ``reset_arrays(seeds=[...])``
one seed per episode; ``reset_arrays(rngs=[...])`` takes the generators themselves. All episodes
share the clock (they advance in lockstep). The per-episode state (``energy``, ``aware``,
``episode_rewards``...) is public, with the leading axis ``E``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from gymnasium.utils import seeding

from ga_env.personas import OBJECTIVE_TERMS
from ga_env.world import (
    ACTION_NAMES,
    BASE_OBS_DIM,
    CHAT,
    DAY_BLOCKS,
    IDLE,
    KIND_HOME,
    KIND_RESEARCH,
    KIND_TASK,
    MOVE,
    N_ACTIONS,
    RESEARCH,
    TASK,
    TERM,
    World,
)

if TYPE_CHECKING:
    from ga_env.town import TownEnv

__all__ = ["BatchedTownEnv"]

Float = npt.NDArray[np.float64]
Int = npt.NDArray[np.int64]
AW, SUP, REL, CONV = TERM["awareness"], TERM["supporters"], TERM["relationships"], TERM["conversations"]
TASK_P, KNOW, REST = TERM["task_progress"], TERM["knowledge"], TERM["rest"]
N_BLOCKS = len(DAY_BLOCKS)


class BatchedTownEnv:
    """``num_envs`` episodes of one town, stepped together on ``(E, N, ...)`` arrays.

    Args:
        world: the town's :class:`~ga_env.world.World`, or a ``TownEnv`` (its world, episode length,
            stride and start are used; its own episode state is not touched).
        num_envs: ``E``, the number of episodes.
        max_cycles, stride, start: the episode's length, minutes per step and start time when
            ``world`` is a World (ignored for a ``TownEnv``, whose own settings are used).
    """

    def __init__(
        self,
        world: World | TownEnv,
        num_envs: int,
        *,
        max_cycles: int = 144,
        stride: int = 10,
        start: dt.datetime | str = "2023-02-13 07:00",
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive integer")
        if not isinstance(world, World):
            max_cycles, stride, start = world.max_cycles, world.stride, world.start_time
            world = world.world
        start_time = dt.datetime.fromisoformat(start) if isinstance(start, str) else start
        self.world = world
        self.num_envs = num_envs
        self.num_agents = world.n_agents
        self.max_cycles = max_cycles
        self.stride = stride
        self.obs_dim = world.obs_dim
        self.rngs: list[np.random.Generator] = []
        self.t = 0
        self.night = False
        self.sincos: Float = np.zeros(2)
        self._e = np.arange(num_envs)[:, None]  # (E, 1) row index for fancy indexing
        self._ar = np.arange(self.num_agents)  # (N,)
        self._rows = np.arange(num_envs * self.num_agents)  # (E * N,)
        self._start_minute = start_time.hour * 60 + start_time.minute
        # v1 mechanisms that are switched off cost nothing (Town-v0 runs its original program).
        d = world.dynamics
        self._readiness = d.readiness_floor < 1.0
        self._readiness_scale = d.readiness_scale * world.n_members  # (G,)
        self._chat_weighted = d.chat_scaled or bool((world.chat_weight != 1.0).any())
        self._per_pair = d.repeat_decay != 1.0 or d.passive_credit != 1.0 or self._chat_weighted
        self._ready = False

    # -- reset --------------------------------------------------------------------------------------
    def reset_arrays(
        self,
        seed: int | None = None,
        *,
        seeds: Sequence[int] | None = None,
        rngs: Sequence[np.random.Generator] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
        """Start new episodes; returns ``(obs (E, N, D), action_mask (E, N, 4))``.

        Args:
            seed: seed of every episode (they start from the same state).
            seeds: one seed per episode.
            rngs: one generator per episode (used as they are, e.g. a ``TownEnv``'s ``np_random``).
                With none of the three, the generators of the previous episode go on.
        """
        e = self.num_envs
        if sum(x is not None for x in (seed, seeds, rngs)) > 1:
            raise ValueError("reset_arrays: give at most one of seed, seeds, rngs")
        if seed is not None:
            seeds = [seed] * e
        if seeds is not None:
            rngs = [seeding.np_random(int(s))[0] for s in seeds]
        if rngs is not None:
            if len(rngs) != e:
                raise ValueError(f"reset_arrays: {len(rngs)} generators for {e} envs")
            self.rngs = list(rngs)
        elif not self.rngs:
            self.rngs = [seeding.np_random()[0] for _ in range(e)]
        w = self.world
        n, g, k = self.num_agents, w.n_groups, len(OBJECTIVE_TERMS)
        width = w.town_map.width
        pos = np.empty((e, n), dtype=np.int64)
        self.energy: Float = np.empty((e, n))  # (E, N)
        self.aware: Float = np.empty((e, g, n))  # (E, G, N) awareness of each group's cause
        for i, rng in enumerate(self.rngs):  # per episode, in the single env's order of draws
            xy = w.spawn.copy()
            for j in np.nonzero(xy[:, 0] < 0)[0]:
                tiles = w.home_tiles[j]
                xy[j] = tiles[rng.integers(len(tiles))]
            pos[i] = xy[:, 1] * width + xy[:, 0]
            self.energy[i] = rng.uniform(0.8, 1.0, n)
            aware = np.where(w.has_cause[:, None], rng.uniform(0.0, 0.1, (g, n)), 0.0)
            self.aware[i] = np.maximum(aware, w.members * w.has_cause[:, None])
        self.t = 0
        self.pos_flat: Int = pos  # (E, N) flat tile index y * W + x
        self.supporter = np.zeros((e, g, n), dtype=bool)  # (E, G, N) non-members won over (counted once)
        self.relationship: Float = np.zeros((e, n, n))  # (E, N, N)
        self.trace: Float = np.zeros((e, n))  # (E, N) collaboration trace
        self.itinerary_idx: Int = np.zeros((e, n), dtype=np.int64)
        self.override: Int = np.full((e, n), -1, dtype=np.int64)  # (E, N) rich-mode target, -1 = none
        self.group_progress: Float = np.zeros((e, g))  # (E, G) work done in the episode
        self.group_knowledge: Float = np.zeros((e, g))
        self.readiness_stock: Float = np.zeros((e, g))  # (E, G) recent work, decaying (v1)
        self.last_action: Int = np.full((e, n), IDLE, dtype=np.int64)
        self.last_partner: Int = np.full((e, n), -1, dtype=np.int64)
        self.episode_terms: Float = np.zeros((e, k, g))  # (E, K, G) team totals
        self.episode_rewards: Float = np.zeros((e, n))
        # Behaviour counters (goal metrics): effective actions by time-of-day block, nights at home,
        # chats at social sites, conversations with each partner today and partners met per day.
        self.block_counts: Int = np.zeros((e, n, N_BLOCKS, N_ACTIONS + 1), dtype=np.int64)  # (E, N, B, 5)
        self.night_home: Int = np.zeros((e, n), dtype=np.int64)
        self.night_steps = 0
        self.social_chats: Int = np.zeros((e, n), dtype=np.int64)
        self.pair_today: Float = np.zeros((e, n, n))  # (E, N, N) conversations today per pair
        self.worked_today: Int = np.zeros((e, n), dtype=np.int64)  # (E, N) Task/Research steps today
        self.partners_met: Int = np.zeros((e, n), dtype=np.int64)  # distinct partners, summed over past days
        self.day = self._day_index()
        self.days_started = 1
        self.refresh()
        self._ready = True
        return self.obs, self.mask

    # -- step ---------------------------------------------------------------------------------------
    def step_arrays(
        self,
        actions: npt.ArrayLike,
        *,
        targets: Int | None = None,
        partners: Int | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], Float, bool]:
        """Advance every episode one step from ``(E, N)`` actions (4 = idle); no validation.

        Args:
            actions: ``(E, N)`` ints in ``[0, 4]``.
            targets: ``(E, N)`` rich-mode Move targets (place index; ``-1`` keep, ``n_places`` automatic).
            partners: ``(E, N)`` rich-mode chat partners (agent index; ``-1``/``N`` nearest).

        Returns:
            ``(obs (E, N, D), action_mask (E, N, 4), rewards (E, N), truncated)``.
        """
        if not self._ready:
            raise RuntimeError("step_arrays() called before reset_arrays()")
        w = self.world
        d = w.dynamics
        n, g, p_count = self.num_agents, w.n_groups, w.town_map.n_places
        ar, ee = self._ar, self._e
        e = self.num_envs
        night = self.night
        actions = np.asarray(actions, dtype=np.int64).reshape(e, n)
        # A masked (impossible) action is a no-op.
        allowed = self.mask.reshape(e * n, N_ACTIONS)[self._rows, np.minimum(actions, RESEARCH).ravel()]
        eff = np.where(allowed.reshape(e, n) & (actions < IDLE), actions, IDLE)  # (E, N)
        place = w.place_flat[self.pos_flat]  # (E, N)
        # Output factor: energy (full above the fatigue level), lowered at night.
        factor = np.minimum(self.energy / d.fatigue_level, 1.0) * (d.night_factor if night else 1.0)  # (E, N)
        if d.workday_steps:  # work and research beyond the working day achieve little
            work_factor = factor * np.where(self.worked_today < d.workday_steps, 1.0, d.overtime_factor)
        else:
            work_factor = factor
        q = np.zeros((e, len(OBJECTIVE_TERMS), n))  # (E, K, N) individual contributions
        pool = np.zeros((e, len(OBJECTIVE_TERMS), g))  # (E, K, G) contributions by non-members
        if self._readiness:  # a group's recent work multiplies what its outreach and research achieve
            ready = d.readiness_floor + (1.0 - d.readiness_floor) * self.readiness_level  # (E, G)
        else:
            ready = None

        # -- rich-mode overrides (targets persist until changed) --
        if targets is not None:
            given = targets >= 0
            self.override[given] = np.where(targets[given] < p_count, targets[given], -1)
        partner = self.partner.copy()
        if partners is not None:
            ok = (partners >= 0) & (partners < n)
            ei, ai = np.nonzero(ok)
            ok[ei, ai] = self.reach[ei, ai, partners[ei, ai]]
            partner[ok] = partners[ok]

        # -- chat: exchange of causes and relationships --
        chatting = (eff == CHAT) & (partner >= 0)  # (E, N)
        nonmember = w.nonmember  # (G, N)
        if d.awareness_decay:
            decay = d.awareness_decay * self.aware * nonmember  # (E, G, N)
            self.aware -= decay
            if d.charge_decay:  # awareness pays on its net change: what fades is charged to the cause
                pool[:, AW] -= decay.sum(2)
        ei, ai = np.nonzero(chatting)
        if len(ei):
            talk = np.zeros((e, n, n))  # (E, N, N) symmetric: who talked with whom
            talk[ei, ai, partner[ei, ai]] = 1.0
            talk = np.maximum(talk, talk.transpose(0, 2, 1))
            talked = talk.any(2)  # (E, N)
            has_talk = np.any(talked, axis=1)  # (E,)
            episodes = np.flatnonzero(has_talk)  # episodes with at least one conversation
            advocates = (self.aware >= d.advocate_threshold) * nonmember * d.advocate_strength
            speak = (w.members + advocates) * w.has_cause[:, None]  # (E, G, N) persuasiveness
            if self._chat_weighted:  # the speaker's energy and the place of the talk
                strength = w.chat_weight[place] * (factor if d.chat_scaled else 1.0)  # (E, N)
                speak = speak * strength[:, None, :]
            if ready is not None:
                speak = speak * ready[:, :, None]
            influence = speak @ talk  # (E, G, N) summed over each listener's speakers
            success = np.zeros((e, g, n), dtype=bool)
            for i in episodes:  # each episode's own generator, drawn only when it has conversations
                success[i] = self.rngs[i].random((g, n)) < d.persuasion
            old = self.aware
            gain = d.spread_rate * np.minimum(influence, 1.0) * (1.0 - old) * success * nonmember  # (E, G, N)
            self.aware = old + gain
            newly = ~self.supporter & (self.aware >= d.supporter_threshold) & (nonmember > 0)  # won once
            if len(episodes) < e:
                newly[~has_talk] = False  # as a single env, which skips this block without conversations
            self.supporter |= newly
            safe = np.where(influence > 0, influence, 1.0)
            # Credit each speaker in proportion to its share of the listener's influence.
            credit_aw = speak * ((gain / safe) @ talk)  # (E, G, N)
            credit_sup = speak * ((newly / safe) @ talk)
            q[:, AW] = credit_aw[:, w.group_of, ar]
            q[:, SUP] = credit_sup[:, w.group_of, ar]
            pool[:, AW] += (credit_aw * nonmember).sum(2)
            pool[:, SUP] = (credit_sup * nonmember).sum(2)
            if self._per_pair:  # (pair_today also gives the distinct partners met today)
                # Credit for relationships and conversations: full for a side that chose Chat, halved
                # by each earlier talk with the same partner today, weighted by place and energy.
                active = np.where(eff == CHAT, 1.0, d.passive_credit)  # (E, N)
                if self._chat_weighted:
                    active = active * strength
                pair = talk * active[:, :, None] * d.repeat_decay**self.pair_today  # (E, N, N)
                self.pair_today += talk
            else:
                pair = talk
                self.pair_today += talk
            rel_gain = d.relationship_rate * (1.0 - self.relationship) * pair
            self.relationship += rel_gain
            q[:, REL] = rel_gain.sum(2)
            q[:, CONV] = pair.sum(2)
            self.social_chats += chatting & w.social_place[place]
        else:
            talked = np.zeros((e, n), dtype=bool)
        self.trace = d.trace_decay * self.trace + (1.0 - d.trace_decay) * talked

        # -- task: work at a task site, or rest at home --
        tasking = eff == TASK
        at_home = place == w.home
        resting = tasking & at_home
        working = tasking & ~at_home
        q[:, TASK_P] = working * d.task_rate * work_factor
        rest = resting * (d.rest_gain_night if night else d.rest_gain_day)
        rest = np.minimum(rest, 1.0 - self.energy)
        q[:, REST] = rest

        # -- research: more with colleagues at the same place and after conversations --
        researching = eff == RESEARCH
        if researching.any():
            key = ee * (g * p_count) + w.group_of * p_count + place  # (E, N) episode, group, place
            colleagues = np.bincount(key[researching], minlength=e * g * p_count)[key] - 1
            bonus = 1.0 + d.collab_bonus * np.minimum(colleagues, 4) + d.chat_trace_bonus * self.trace
            know = researching * d.research_rate * work_factor * bonus
            q[:, KNOW] = know * ready[:, w.group_of] if ready is not None else know

        # -- energy --
        cost = w.cost[eff]
        energy = self.energy - cost - d.energy_drain + rest
        self.energy = np.minimum(np.maximum(energy, 0.0, out=energy), 1.0, out=energy)

        # -- move: along the cached shortest-path field toward the target --
        moving = eff == MOVE
        if moving.any():
            arrived = moving & (place == self.target) & (self.override < 0) & (not night)
            self.itinerary_idx = np.where(arrived, (self.itinerary_idx + 1) % w.itinerary_len, self.itinerary_idx)
            target = self._targets(night)[moving]
            pos = self.pos_flat[moving]
            for _ in range(d.move_speed):
                pos = w.hop[target, pos]
            self.pos_flat[moving] = pos

        # -- rewards: weighted terms, individual share + team share --
        by_members = q @ w.members.T  # (E, K, G)
        team = by_members + pool
        r_ind = (w.agent_weights * q).sum(1)  # (E, N)
        r_team = (w.weights * by_members.transpose(0, 2, 1)).sum(2) / w.n_members  # (E, G)
        r_pool = (w.weights * pool.transpose(0, 2, 1)).sum(2) / w.n_members  # (E, G) advocates' spread: team only
        s = w.agent_share
        rewards = s * r_ind + ((1.0 - w.share) * r_team + r_pool)[:, w.group_of]  # (E, N)
        self.group_progress += team[:, TASK_P]
        if self._readiness:
            self.readiness_stock *= 1.0 - d.readiness_decay
            self.readiness_stock += team[:, TASK_P]
        self.group_knowledge += team[:, KNOW]
        self.episode_terms += team
        self.episode_rewards += rewards
        self.block_counts[ee, ar, self.block, eff] += 1
        if d.workday_steps:
            self.worked_today += working | researching
        if night:
            self.night_steps += 1
            self.night_home += at_home
        self.last_action = eff
        self.last_partner = np.where(chatting, partner, -1)

        self.t += 1
        day = self._day_index()
        if day != self.day:  # a new day: per-day saturation starts afresh
            self.day = day
            self.days_started += 1
            self.partners_met += (self.pair_today > 0).sum(2)
            self.pair_today[:] = 0.0
            self.worked_today[:] = 0
        self.refresh()
        return self.obs, self.mask, rewards, self.t >= self.max_cycles

    # -- goal metrics -------------------------------------------------------------------------------
    @property
    def action_counts(self) -> Int:
        """``(E, N, 5)`` effective actions of the episode so far (index 4 = no-op)."""
        return self.block_counts.sum(2)

    def goal_metrics(self) -> dict[str, dict[str, Float]]:
        """What each group's objective names, and how its members behaved, per episode.

        Returns ``{group: {metric: (E,) array}}`` with, for every group:
        ``task_progress`` (work done by the group), ``night_at_home`` (share of its members' night
        steps spent at home), ``chat_at_social_sites`` (share of their conversations held at social
        sites; 0 without any), ``chats_per_day`` and ``distinct_partners_per_day`` (per member),
        ``energy_end``, and ``share/<block>/<action>`` (share of the members' steps in each
        time-of-day block of ``ga_env.world.DAY_BLOCKS``, ``noop`` = a masked action); for a group
        with a cause ``awareness_end`` (mean awareness of it among non-members) and ``supporters``
        (non-members won over); for a group that values knowledge ``knowledge``.
        """
        w = self.world
        counts = self.block_counts  # (E, N, B, 5)
        chats = counts[:, :, :, CHAT].sum(2)  # (E, N)
        met = self.partners_met + (self.pair_today > 0).sum(2)  # (E, N)
        nonmembers = np.maximum(w.nonmember.sum(1), 1.0)  # (G,)
        awareness_end = (self.aware * w.nonmember).sum(2) / nonmembers  # (E, G)
        out: dict[str, dict[str, Float]] = {}
        for k, grp in enumerate(w.groups):
            m = w.group_of == k
            metrics: dict[str, Float] = {"task_progress": self.group_progress[:, k].copy()}
            if w.has_cause[k]:
                metrics["awareness_end"] = awareness_end[:, k]
                metrics["supporters"] = self.supporter[:, k].sum(1).astype(np.float64)
            if grp.objective.get("knowledge", 0.0) > 0:
                metrics["knowledge"] = self.group_knowledge[:, k].copy()
            metrics["night_at_home"] = self.night_home[:, m].mean(1) / max(self.night_steps, 1)
            n_chats = chats[:, m].sum(1)
            metrics["chat_at_social_sites"] = self.social_chats[:, m].sum(1) / np.maximum(n_chats, 1)
            metrics["chats_per_day"] = n_chats / m.sum() / self.days_started
            metrics["distinct_partners_per_day"] = met[:, m].mean(1) / self.days_started
            metrics["energy_end"] = self.energy[:, m].mean(1)
            steps = np.maximum(counts[:, m].sum(axis=(1, 3)), 1)  # (E, B)
            by_block = counts[:, m].sum(1) / steps[:, :, None]  # (E, B, 5)
            for b, (block, _, _) in enumerate(DAY_BLOCKS):
                for a, name in enumerate((*ACTION_NAMES, "noop")):
                    metrics[f"share/{block}/{name}"] = by_block[:, b, a]
            out[grp.name] = metrics
        return out

    # -- derived quantities ----------------------------------------------------------------------
    @property
    def current_places(self) -> Int:
        """``(E, N)`` index (into ``places``) of each agent's current place."""
        return self.place.copy()

    @property
    def current_targets(self) -> Int:
        """``(E, N)`` index of each agent's current Move target."""
        return self.target.copy()

    def _minute(self) -> int:
        return (self._start_minute + self.stride * self.t) % 1440

    def _day_index(self) -> int:
        """Days begin when night ends (the per-day saturation of conversations restarts)."""
        return (self._start_minute + self.stride * self.t - 60 * self.world.dynamics.night_end) // 1440

    def _targets(self, night: bool) -> Int:
        w = self.world
        auto = w.home[None, :] if night else w.itinerary[self._ar, self.itinerary_idx]
        return np.where(self.override >= 0, self.override, auto)

    # -- exact save / restore ------------------------------------------------------------------
    STATE_ARRAYS: tuple[str, ...] = (
        "pos_flat",
        "energy",
        "aware",
        "supporter",
        "relationship",
        "trace",
        "itinerary_idx",
        "override",
        "group_progress",
        "group_knowledge",
        "readiness_stock",
        "last_action",
        "last_partner",
        "episode_terms",
        "episode_rewards",
        "block_counts",
        "night_home",
        "social_chats",
        "pair_today",
        "worked_today",
        "partners_met",
    )
    """The episode state held in arrays; everything else is the world's or recomputed by :meth:`refresh`."""
    STATE_SCALARS: tuple[str, ...] = ("t", "night_steps", "day", "days_started")
    """The episode state held in integers."""

    def state_dict(self) -> dict[str, Any]:
        """The episode's exact state: arrays (copies), counters and the generators' states.

        :meth:`load_state_dict` on an env of the same world and size continues exactly as this one
        would (same observations, rewards and random draws).
        """
        if not self._ready:
            raise RuntimeError("state_dict() before reset_arrays(): there is no episode to save")
        return {
            "arrays": {k: getattr(self, k).copy() for k in self.STATE_ARRAYS},
            "scalars": {k: int(getattr(self, k)) for k in self.STATE_SCALARS},
            "rngs": [
                {"bit_generator": type(r.bit_generator).__name__, "state": r.bit_generator.state} for r in self.rngs
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (of :meth:`state_dict`); the generators are restored in place.

        Raises:
            ValueError: if the state is of another town size or misses a field (naming it).
        """
        arrays, scalars = state["arrays"], state["scalars"]
        if not self._ready:  # shapes and generators come from a first reset
            self.reset_arrays(seed=0)
        for k in self.STATE_ARRAYS:
            if k not in arrays:
                raise ValueError(f"env state: arrays.{k}: missing. Fix: resume with the code version that saved it")
            current, value = getattr(self, k), np.asarray(arrays[k])
            if value.shape != current.shape:
                raise ValueError(
                    f"env state: arrays.{k}: shape {value.shape} does not fit this town {current.shape}. "
                    "Fix: resume with the same groups and max_agents"
                )
            setattr(self, k, value.astype(current.dtype, copy=True))
        for k in self.STATE_SCALARS:
            setattr(self, k, int(scalars[k]))
        if len(state["rngs"]) != len(self.rngs):
            raise ValueError(f"env state: rngs: {len(state['rngs'])} generators for {len(self.rngs)} envs")
        for rng, saved in zip(self.rngs, state["rngs"], strict=True):
            if type(rng.bit_generator).__name__ != saved["bit_generator"]:
                raise ValueError(
                    f"env state: rngs: a {saved['bit_generator']} state for a {type(rng.bit_generator).__name__}"
                )
            rng.bit_generator.state = saved["state"]  # in place: whoever holds the generator sees it
        self.refresh()
        self._ready = True

    def refresh(self) -> None:
        """Recompute the clock, targets, chat partners, action masks and observations after a change."""
        w = self.world
        d, m = w.dynamics, w.town_map
        e, n, g = self.num_envs, self.num_agents, w.n_groups
        ar = self._ar
        minute = self._minute()  # datetime is slow in the hot path
        self.night = night = bool(w.night_by_minute[minute])
        self.block = int(w.block_by_minute[minute])
        self.sincos = w.sincos_by_minute[minute].copy()  # own array: snapshots restore it in place
        place = w.place_flat[self.pos_flat]  # (E, N)
        self.place = place
        self.target = self._targets(night)
        x, y = self.pos_flat % m.width, self.pos_flat // m.width
        cheb = np.maximum(np.abs(x[:, :, None] - x[:, None, :]), np.abs(y[:, :, None] - y[:, None, :]))  # (E, N, N)
        self.cheb = cheb
        reach = (cheb <= d.chat_radius) & (place[:, :, None] == place[:, None, :])
        reach[:, ar, ar] = False
        self.reach = reach
        nearby = reach.sum(2)  # (E, N)
        far = np.where(reach, cheb, 1 << 30)
        self.partner = np.where(nearby > 0, far.argmin(2), -1)
        here = w.kind_table[ar, place]  # (E, N, 4) at home / task / research / social site
        mask = np.ones((e, n, N_ACTIONS), dtype=np.int8)
        mask[:, :, CHAT] = nearby > 0
        mask[:, :, TASK] = here[:, :, KIND_HOME] + here[:, :, KIND_TASK] > 0
        mask[:, :, RESEARCH] = here[:, :, KIND_RESEARCH]
        self.mask = mask

        gi = w.group_of
        cause = w.agent_cause
        unaware = (reach * w.other_group * (1.0 - self.aware[:, gi])).sum(2) / np.maximum(nearby, 1) * cause
        nonmembers = np.maximum(n - w.n_members, 1.0)
        community = ((self.aware * w.nonmember).sum(2) / nonmembers)[:, gi] * cause
        target = self.target
        obs = np.empty((e, n, self.obs_dim), dtype=np.float32)
        obs[..., 0] = x / max(m.width - 1, 1)
        obs[..., 1] = y / max(m.height - 1, 1)
        obs[..., 2:4] = self.sincos
        obs[..., 4] = night
        obs[..., 5] = self.energy
        obs[..., 6:10] = here
        obs[..., 10] = place == target
        obs[..., 11] = w.dist[target, self.pos_flat]
        obs[..., 12:16] = w.kind_table[ar, target]
        obs[..., 16] = np.minimum(nearby / 5.0, 1.0)
        obs[..., 17] = unaware
        obs[..., 18] = nearby > 0
        if self._readiness:  # v1: the group's readiness (recent work), which decays and conditions outreach
            self.readiness_level = np.tanh(self.readiness_stock / self._readiness_scale)  # (E, G) in [0, 1)
            obs[..., 19] = self.readiness_level[:, gi]
        else:
            obs[..., 19] = np.tanh(self.group_progress / (5.0 * w.n_members))[:, gi]
        obs[..., 20] = np.tanh(self.group_knowledge / (5.0 * w.n_members))[:, gi]
        obs[..., 21] = community
        obs[..., 22] = self.trace
        obs[..., 23] = min(self.t / self.max_cycles, 1.0)
        obs[..., BASE_OBS_DIM : BASE_OBS_DIM + g] = 0.0
        obs[:, ar, BASE_OBS_DIM + gi] = 1.0
        obs[..., BASE_OBS_DIM + g :] = self.aware.transpose(0, 2, 1)
        self.obs = obs

    def state(self) -> npt.NDArray[np.float32]:
        """``(E, S)`` global states (each episode's ``TownEnv.state()``)."""
        e = self.num_envs
        return np.concatenate([self.obs.reshape(e, -1), self.aware.reshape(e, -1).astype(np.float32)], axis=1)

    def __repr__(self) -> str:
        info: dict[str, Any] = {"num_envs": self.num_envs, "agents": self.num_agents, "t": self.t}
        return f"BatchedTownEnv({', '.join(f'{k}={v}' for k, v in info.items())})"
