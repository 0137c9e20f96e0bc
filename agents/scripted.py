"""A hand-written daily routine: the baseline a sensible person would script.

Rules, in priority order, per agent and step (all read from the named observation
features ``ga_env.OBS``; the group's YAML objective decides what the agent values):

1. Night: walk home, then rest (Task at home recovers energy).
2. Exhausted (energy below ``rest_below``) and at home: rest.
3. Someone is within chat range and the group gains from talking (its objective weights
   awareness, supporters, relationships or conversations): chat if a group with a cause
   sees unaware listeners, or if the group values relationships/conversations themselves.
4. At a research site and the group values knowledge: research.
5. At a task site and the group values task progress: work, for ``stay`` steps at most
   if the group has social goals too (then it moves on through its itinerary to meet people).
6. Otherwise: move (toward the target, or on to the next place of the itinerary).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agents.base import IntArray, LessonsMixin, group_index
from ga_env import OBS
from ga_env.personas import Group

MOVE, CHAT, TASK, RESEARCH = 0, 1, 2, 3


class ScriptedPolicy(LessonsMixin):
    """Daily routine driven by the observation and the group's objective (deterministic).

    Args:
        groups: the env's groups (``env.groups``), in the order of the observation's one-hot.
        rest_below: energy under which an agent at home rests by day.
        min_unaware: fraction of unaware listeners nearby worth a conversation about the cause.
    """

    def __init__(self, groups: Sequence[Group], *, rest_below: float = 0.15, min_unaware: float = 0.2) -> None:
        self.lessons = {}
        self.n_groups = len(groups)
        w = [g.objective for g in groups]
        # Per-group preferences (G,) derived from the YAML objective, not from group names.
        self.spreads = np.array(
            [
                g.cause is not None and (o.get("awareness", 0) + o.get("supporters", 0)) > 0
                for g, o in zip(groups, w, strict=True)
            ]
        )
        self.sociable = np.array([(o.get("relationships", 0) + o.get("conversations", 0)) > 0 for o in w])
        self.researches = np.array([o.get("knowledge", 0) > 0 for o in w])
        self.works = np.array([o.get("task_progress", 0) > 0 for o in w])
        self.rest_below = rest_below
        self.min_unaware = min_unaware

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        g = group_index(obs, self.n_groups)  # (B,)
        f = {k: obs[:, OBS[k]] > 0.5 for k in ("night", "at_home", "at_task_site", "at_research_site")}
        partner = mask[:, CHAT].astype(bool)
        unaware = obs[:, OBS["nearby_unaware"]] >= self.min_unaware
        tired = obs[:, OBS["energy"]] < self.rest_below
        chat = partner & ((self.spreads[g] & unaware) | (self.sociable[g] & ~self.spreads[g]))
        actions = np.full(len(obs), MOVE, dtype=np.int64)
        # Lowest priority first, so later assignments override earlier ones.
        actions[f["at_task_site"] & self.works[g] & ~f["at_home"]] = TASK
        actions[f["at_research_site"] & self.researches[g]] = RESEARCH
        actions[chat] = CHAT
        actions[f["at_home"] & tired] = TASK
        night = f["night"]
        actions[night] = np.where(f["at_home"][night], TASK, MOVE)
        return actions
