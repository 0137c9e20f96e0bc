"""A hand-written daily routine: the baseline a sensible person would script.

Rules, in priority order, per agent and step, read from the named observation features
(``ga_env.OBS``); the group's YAML objective decides what the agent values:

1. Night: walk home; at home chat with the household if someone is there (and, for a group
   with a cause, has not heard of it yet), else rest (Task at home recovers energy).
2. Someone to talk to, and the conversation has not gone on for ``max_chat`` steps already:
   a group with a cause chats when listeners nearby are unaware of it (``min_unaware``); a
   group that values relationships or conversations chats with whoever is near.
3. Tired (energy below ``rest_below``) at home: rest.
4. At a research site and the group values knowledge: research.
5. At a task site and the group values task progress: work (a group with a cause works only
   in the morning, before ``work_until``, then goes out to spread the word).
6. Otherwise: move (toward the target, or on to the next place of the itinerary).

The only memory is how long each agent has been chatting, so that it moves on to meet other
people instead of talking to the same neighbour all day; call :meth:`reset` between
episodes (it also resets itself when the batch size changes or an episode starts).
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
        min_unaware: fraction of unaware listeners nearby that makes a conversation about the cause worth it.
        max_chat: consecutive chat steps before moving on.
        rest_below: energy under which an agent at home rests by day.
        work_until: hour until which a group with a cause works at its task site.
    """

    def __init__(
        self,
        groups: Sequence[Group],
        *,
        min_unaware: float = 0.05,
        max_chat: int = 3,
        rest_below: float = 0.3,
        work_until: float = 10.0,
    ) -> None:
        self.lessons = {}
        self.n_groups = len(groups)
        obj = [g.objective for g in groups]
        # Per-group preferences (G,) derived from the YAML objective, not from group names.
        self.spreads = np.array(
            [
                g.cause is not None and o.get("awareness", 0) + o.get("supporters", 0) > 0
                for g, o in zip(groups, obj, strict=True)
            ]
        )
        self.sociable = np.array([o.get("relationships", 0) + o.get("conversations", 0) > 0 for o in obj])
        self.researches = np.array([o.get("knowledge", 0) > 0 for o in obj])
        self.works = np.array([o.get("task_progress", 0) > 0 for o in obj])
        self.min_unaware, self.max_chat, self.rest_below, self.work_until = (
            min_unaware,
            max_chat,
            rest_below,
            work_until,
        )
        self.streak = np.zeros(0, dtype=np.int64)  # (B,) consecutive chat steps per agent

    def reset(self) -> None:
        """Forget the chat streaks (new episode)."""
        self.streak = np.zeros(0, dtype=np.int64)

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        if len(self.streak) != len(obs) or obs[0, OBS["episode_progress"]] == 0.0:
            self.streak = np.zeros(len(obs), dtype=np.int64)
        g = group_index(obs, self.n_groups)  # (B,)
        hour = (np.arctan2(obs[:, OBS["time_sin"]], obs[:, OBS["time_cos"]]) % (2 * np.pi)) * 24 / (2 * np.pi)
        night, at_home = obs[:, OBS["night"]] > 0.5, obs[:, OBS["at_home"]] > 0.5
        at_task, at_research = obs[:, OBS["at_task_site"]] > 0.5, obs[:, OBS["at_research_site"]] > 0.5
        unaware = obs[:, OBS["nearby_unaware"]] >= self.min_unaware
        spreads = self.spreads[g]
        chat = mask[:, CHAT].astype(bool) & np.where(spreads, unaware, self.sociable[g]) & (self.streak < self.max_chat)

        actions = np.full(len(obs), MOVE, dtype=np.int64)
        # Lowest priority first: later assignments override earlier ones.
        actions[at_task & ~at_home & self.works[g] & (~spreads | (hour < self.work_until))] = TASK
        actions[at_research & self.researches[g]] = RESEARCH
        actions[at_home & (obs[:, OBS["energy"]] < self.rest_below)] = TASK
        actions[chat] = CHAT
        actions[night] = np.where(at_home, np.where(chat, CHAT, TASK), MOVE)[night]
        self.streak = np.where(actions == CHAT, self.streak + 1, 0)
        return actions
