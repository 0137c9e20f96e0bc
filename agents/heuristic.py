"""Honest baselines: "chat when possible" and a tuned heuristic that uses the observation sensibly.

:class:`ChatPolicy` is the strongest three-line rule on Town-v0 (chat whenever a partner is near,
else move on): any trained policy must beat it by a clear margin.

:class:`HeuristicPolicy` is what a careful modeller would write by hand, with a few parameters
per group (:class:`HeuristicParams`), read from the named observation features
(``ga_env.OBS``) and the group's YAML objective:

1. Night: go home and sleep (Task at home).
2. Tired (energy below ``rest_below``) and at home: rest.
3. At a task site while the group's work stock (``group_task_progress``) is below
   ``work_target`` and the agent has worked fewer than ``max_work`` steps today (for a group
   whose objective rewards work or whose outreach needs it): work.
4. At a research site, the group values knowledge, its work stock has reached ``work_target``
   (prepared work first: a lab does its lab work before it researches) and fewer than
   ``max_work`` steps of work today: research.
5. A partner is near, the conversation has not gone on for ``max_chat`` steps, the place is a
   social site (or ``chat_anywhere``), and (for a group with a cause) at least ``min_unaware`` of
   the listeners nearby do not know it yet: chat.
6. Otherwise move (toward the target, on to the next place of the itinerary).

Its parameters are tuned per experiment on training seeds only (``scripts/tune_heuristic.py``,
results in ``agents/data/heuristic_params.json``); the same search with a larger budget, per
group, is the "upper reference" of the result tables.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import IntArray, LessonsMixin, group_index
from ga_env import OBS
from ga_env.personas import Group

MOVE, CHAT, TASK, RESEARCH = 0, 1, 2, 3


class ChatPolicy(LessonsMixin):
    """Chat whenever a partner is near, else Move (the simple rule that scores well on Town-v0)."""

    def __init__(self) -> None:
        self.lessons = {}

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        return np.where(mask[:, CHAT] > 0, CHAT, MOVE).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class HeuristicParams:
    """The few parameters of :class:`HeuristicPolicy` for one group."""

    work_target: float = 0.5
    """Work at a task site while the group's work stock feature is below this (0 = never, 1 = always)."""
    min_unaware: float = 0.3
    """Share of unaware listeners nearby that makes talking about the cause worth it."""
    max_chat: float = 2.0
    """Consecutive chat steps before moving on (rounded)."""
    rest_below: float = 0.2
    """Energy under which an agent at home rests by day."""
    chat_anywhere: float = 0.0
    """Above 0.5: chat outside social sites too."""
    max_work: float = 48.0
    """Steps of work and research per day (Town-v1's working day is 48 steps; the count restarts at night)."""

    BOUNDS: tuple[tuple[float, float], ...] = dataclasses.field(
        default=((0.0, 1.0), (0.0, 1.0), (1.0, 8.0), (0.0, 0.6), (0.0, 1.0), (0.0, 144.0)), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for f, (lo, hi) in zip(self.names(), self.BOUNDS, strict=True):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"HeuristicParams: {f}: {v!r} is outside [{lo}, {hi}]. Fix: give a value in range")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "BOUNDS")

    def vector(self) -> npt.NDArray[np.float64]:
        return np.array([getattr(self, f) for f in self.names()], dtype=np.float64)

    @classmethod
    def from_vector(cls, v: npt.ArrayLike) -> HeuristicParams:
        """Parameters from a vector, clipped into their bounds (for search)."""
        v = np.asarray(v, dtype=np.float64)
        lo, hi = np.array(HeuristicParams().BOUNDS).T
        values: dict[str, Any] = {f: float(x) for f, x in zip(cls.names(), np.clip(v, lo, hi), strict=True)}
        return cls(**values)


class HeuristicPolicy(LessonsMixin):
    """The hand-written, tunable baseline (see the module docstring); deterministic.

    Args:
        groups: the env's groups (``env.groups``), in the order of the observation's one-hot.
        params: parameters per group name (missing groups get the defaults).
    """

    def __init__(self, groups: Sequence[Group], params: Mapping[str, HeuristicParams] | None = None) -> None:
        self.lessons = {}
        self.n_groups = len(groups)
        params = params or {}
        p = [params.get(g.name, HeuristicParams()) for g in groups]
        self.params = {g.name: q for g, q in zip(groups, p, strict=True)}
        self.work_target = np.array([q.work_target for q in p])
        self.min_unaware = np.array([q.min_unaware for q in p])
        self.max_chat = np.array([round(q.max_chat) for q in p])
        self.rest_below = np.array([q.rest_below for q in p])
        self.chat_anywhere = np.array([q.chat_anywhere > 0.5 for q in p])
        self.max_work = np.array([q.max_work for q in p])
        obj = [g.objective for g in groups]
        self.spreads = np.array(
            [
                g.cause is not None and o.get("awareness", 0) + o.get("supporters", 0) > 0
                for g, o in zip(groups, obj, strict=True)
            ]
        )
        self.researches = np.array([o.get("knowledge", 0) > 0 for o in obj])
        # Work pays directly, or conditions what the group's outreach or research achieves (Town-v1).
        self.works = np.array([o.get("task_progress", 0) > 0 for o in obj]) | self.spreads | self.researches
        self.streak = np.zeros(0, dtype=np.int64)  # (B,) consecutive chat steps
        self.worked = np.zeros(0, dtype=np.int64)  # (B,) steps of work and research today

    def reset(self) -> None:
        """Forget the chat streaks and work counts (new episode)."""
        self.streak = np.zeros(0, dtype=np.int64)
        self.worked = np.zeros(0, dtype=np.int64)

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        if len(self.streak) != len(obs) or obs[0, OBS["episode_progress"]] == 0.0:
            self.streak = np.zeros(len(obs), dtype=np.int64)
            self.worked = np.zeros(len(obs), dtype=np.int64)
        g = group_index(obs, self.n_groups)  # (B,)
        night, at_home = obs[:, OBS["night"]] > 0.5, obs[:, OBS["at_home"]] > 0.5
        at_task, at_research = obs[:, OBS["at_task_site"]] > 0.5, obs[:, OBS["at_research_site"]] > 0.5
        at_social = obs[:, OBS["at_social_site"]] > 0.5
        energy, stock = obs[:, OBS["energy"]], obs[:, OBS["group_task_progress"]]
        listeners = np.where(self.spreads[g], obs[:, OBS["nearby_unaware"]] >= self.min_unaware[g], True)
        chat = (mask[:, CHAT] > 0) & listeners & (self.streak < self.max_chat[g]) & (at_social | self.chat_anywhere[g])
        actions = np.full(len(obs), MOVE, dtype=np.int64)
        # Lowest priority first: later assignments override earlier ones.
        actions[chat] = CHAT
        fresh = self.worked < self.max_work[g]
        needs_work = self.works[g] & (stock < self.work_target[g])
        actions[at_research & self.researches[g] & (mask[:, RESEARCH] > 0) & fresh & ~needs_work] = RESEARCH
        work = at_task & ~at_home & needs_work & (mask[:, TASK] > 0) & fresh
        actions[work] = TASK
        actions[at_home & (energy < self.rest_below[g])] = TASK
        actions[night] = np.where(at_home, TASK, MOVE)[night]
        self.streak = np.where(actions == CHAT, self.streak + 1, 0)
        self.worked = np.where(night, 0, self.worked + ((actions == RESEARCH) | (actions == TASK) & ~at_home))
        return actions


def _shipped(experiment: str) -> dict[str, Any]:
    path = resources.files("agents") / "data" / "heuristic_params.json"
    table: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return dict(table.get(experiment, {}))


def load_tuned_params(experiment: str, groups: Sequence[Group]) -> dict[str, HeuristicParams]:
    """The tuned heuristic's parameters for ``experiment``, by group name (defaults where none)."""
    found = _shipped(experiment).get("tuned", {}).get("params", {})
    return {g.name: HeuristicParams(**found[g.name]) if g.name in found else HeuristicParams() for g in groups}


def load_upper_params(experiment: str, groups: Sequence[Group]) -> dict[str, dict[str, HeuristicParams]]:
    """The upper reference for ``experiment``: per group, the parameters of every group in the
    candidate that scored best for it (the tuned parameters where none were searched)."""
    found = _shipped(experiment).get("upper", {}).get("params_by_group", {})
    tuned = load_tuned_params(experiment, groups)
    return {
        g.name: {h.name: HeuristicParams(**found[g.name][h.name]) for h in groups}
        if g.name in found and all(h.name in found[g.name] for h in groups)
        else dict(tuned)
        for g in groups
    }
