"""Perceive (Park et al. 2023, section 4): what a persona notices this step, and how poignant it is.

The persona sees the others within ``vision_radius`` tiles (nearest first), keeps at most
``bandwidth`` of them (attention bandwidth) and ignores what is already among its ``retention``
latest event memories (so that a colleague working all morning is one memory, not thirty). Each
new event is rated for poignancy (1-10) by the persona's LLM; the rule-based fallback rates it
from the kind of activity and whether it touches the persona or its group's cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agents.cognition.prompts import PersonaProfile, quote, render
from agents.llm.base import LLMRequest
from agents.memory import MemoryStream, keywords_of

if TYPE_CHECKING:
    from ga_env import TownEnv

POIGNANCY_SCHEMA = {
    "type": "object",
    "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["rating"],
}
_BASE = (("resting", 1), ("walking", 2), ("idle", 1), ("working", 3), ("researching", 3), ("chatting", 4))


@dataclass(frozen=True, kw_only=True)
class Event:
    """A perceived event as the memory stream stores it."""

    description: str
    spo: tuple[str, str, str]
    distance: int


def perceive(
    env: TownEnv,
    i: int,
    memory: MemoryStream,
    *,
    xy: npt.NDArray[np.int64],
    vision_radius: int,
    bandwidth: int,
    retention: int,
) -> list[Event]:
    """New events agent ``i`` notices now (nearest first, at most ``bandwidth``, none already retained).

    Args:
        env: the town (``describe`` gives what each persona is doing).
        i: the perceiving agent.
        memory: its memory stream (for retention).
        xy: ``(N, 2)`` tile of every agent (computed once per step by the caller).
        vision_radius: Chebyshev radius in tiles.
        bandwidth: events kept per step.
        retention: latest event memories checked for repeats.
    """
    cheb = np.abs(xy - xy[i]).max(1)  # (N,)
    cheb[i] = vision_radius + 1
    seen = np.flatnonzero(cheb <= vision_radius)
    seen = seen[np.argsort(cheb[seen], kind="stable")][:bandwidth]
    recent = {n.description for n in memory.latest(retention, ("event",))}
    events = []
    for j in seen:
        person = env.personas[int(j)]
        doing = env.describe(int(j))
        description = f"{person.name} is {doing}"
        if description in recent:
            continue
        place = env.places[int(env.current_places[int(j)])]
        events.append(
            Event(description=description, spo=(person.name, doing.split(" ")[0], place), distance=int(cheb[j]))
        )
    return events


def poignancy_rule(profile: PersonaProfile, description: str) -> int:
    """Rule-based poignancy: the kind of activity, +2 if it names the persona, +2 if it touches its cause/task."""
    text = description.lower()
    score = next((s for word, s in _BASE if word in text), 3)
    if profile.persona.first_name.lower() in text:
        score += 2
    own = set(keywords_of(f"{profile.group.cause or ''} {profile.persona.task}", limit=20))
    if own & set(keywords_of(text, limit=20)):
        score += 2
    return int(np.clip(score, 1, 10))


def poignancy_request(profile: PersonaProfile, system: str, description: str, lang: str) -> LLMRequest:
    """Ask how poignant an event (or a conversation) is for the persona, 1-10."""
    rule = poignancy_rule(profile, description)
    return LLMRequest(
        kind="poignancy",
        system=system,
        user=render(lang, "poignancy", event=quote(description)),
        schema=POIGNANCY_SCHEMA,
        max_tokens=16,
        fallback=lambda: {"rating": rule},
    )
