"""Perceive (Park et al. 2023, section 4): what a persona notices this step, and how poignant it is.

The persona sees the others, and the objects in use (``ObjectEvents``: "the easel is being used by
Isabel Ortiz: painting the mural"), within ``vision_radius`` tiles (nearest first; at equal distance
personas before objects), keeps at most ``bandwidth`` of these events (attention bandwidth) and
ignores what is already among its ``retention`` latest event memories (so that a colleague working
all morning is one memory, not thirty). The
three are per persona (the original's ``vision_r``, ``att_bandwidth`` and ``retention``;
``personas.yaml`` may set them), and :func:`attention` applies them to all personas in a few array
operations. Each new event is rated for poignancy (1-10) by the persona's LLM; the rule-based
fallback rates it from the kind of activity and whether it touches the persona or its group's cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agents.cognition.prompts import PersonaProfile, quote, render
from agents.llm.base import LLMRequest
from agents.memory import MemoryStream, keywords_of

if TYPE_CHECKING:
    from ga_env import TownEnv

_BASE = (("resting", 1), ("walking", 2), ("idle", 1), ("working", 3), ("researching", 3), ("chatting", 4))


@dataclass(frozen=True, kw_only=True)
class ObjectEvents:
    """The objects in use this step, as events the personas may perceive (the original's object events).

    Attributes:
        addresses: ``(M,)`` ``Town:Sector:arena:object`` of each object in use.
        states: ``(M,)`` what is happening to it, e.g. ``"being used by Isabel Ortiz: painting the mural"``.
        distance: ``(N, M)`` Chebyshev distance from each persona to the object's nearest tile; -1 where the
            persona does not perceive it as an event (it is using the object itself).
    """

    addresses: tuple[str, ...]
    states: tuple[str, ...]
    distance: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        m = len(self.addresses)
        if len(self.states) != m or self.distance.ndim != 2 or self.distance.shape[1] != m:
            raise ValueError(
                f"ObjectEvents: distance: shape {self.distance.shape} does not fit {m} addresses and "
                f"{len(self.states)} states. Fix: give one state and one distance column per address"
            )

    def description(self, m: int) -> str:
        """``"easel at Lumen Gallery:artist studio is being used by ..."`` for object ``m``."""
        *_, sector, arena, name = self.addresses[m].split(":")
        return f"{name} at {sector}:{arena} is {self.states[m]}"


@dataclass(frozen=True, kw_only=True)
class Event:
    """A perceived event as the memory stream stores it."""

    description: str
    spo: tuple[str, str, str]
    distance: int


def attention(
    xy: npt.NDArray[np.int64],
    vision_radius: npt.NDArray[np.int64],
    bandwidth: npt.NDArray[np.int64],
    object_distance: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Who notices whom (and which objects in use) this step, for every persona at once.

    Persona ``i`` sees the others and the objects within ``vision_radius[i]`` tiles (Chebyshev
    distance) and keeps the ``bandwidth[i]`` nearest (ties: personas first, then the lower index),
    as the original's ``perceive`` keeps ``att_bandwidth`` events within ``vision_r``.

    Args:
        xy: ``(N, 2)`` tile of every persona.
        vision_radius: ``(N,)`` tiles each persona sees.
        bandwidth: ``(N,)`` events each persona keeps per step.
        object_distance: ``(N, M)`` distance from each persona to each object in use, -1 where it
            does not perceive it (see :class:`ObjectEvents`); None = no objects.

    Returns:
        ``(i, j, distance)``, each ``(K,)``: perceiver, perceived (``j < N`` a persona, ``j >= N``
        the object ``j - N``), distance in tiles; ordered by perceiver, then nearest first.
    """
    n = len(xy)
    cheb = np.abs(xy[:, None, :] - xy[None, :, :]).max(-1)  # (N, N)
    if object_distance is not None:
        cheb = np.concatenate([cheb, np.asarray(object_distance, dtype=cheb.dtype).reshape(n, -1)], axis=1)
    seen = (cheb <= np.asarray(vision_radius)[:, None]) & (cheb >= 0)  # (N, N + M)
    seen[np.arange(n), np.arange(n)] = False
    order = np.argsort(np.where(seen, cheb, np.iinfo(np.int64).max), axis=1, kind="stable")  # (N, N + M) nearest first
    kept = np.minimum(np.asarray(bandwidth), seen.sum(1))  # (N,)
    i, rank = np.nonzero(np.arange(cheb.shape[1])[None, :] < kept[:, None])  # (K,), by perceiver, then rank
    j = order[i, rank]
    return i, j, cheb[i, j]


def perceive(
    env: TownEnv,
    memories: Sequence[MemoryStream],
    *,
    xy: npt.NDArray[np.int64],
    vision_radius: npt.NDArray[np.int64],
    bandwidth: npt.NDArray[np.int64],
    retention: npt.NDArray[np.int64],
    objects: ObjectEvents | None = None,
) -> list[tuple[int, Event]]:
    """New events every persona notices now: :func:`attention`, less what each already retains.

    Args:
        env: the town (``describe`` gives what each persona is doing).
        memories: every persona's memory stream (for retention).
        xy: ``(N, 2)`` tile of every persona (computed once per step by the caller).
        vision_radius: ``(N,)`` Chebyshev radius in tiles, per persona.
        bandwidth: ``(N,)`` events kept per step, per persona.
        retention: ``(N,)`` latest event memories checked for repeats, per persona.
        objects: the objects in use, competing with the personas for the attention bandwidth.

    Returns:
        ``(i, event)`` pairs, by perceiver, then nearest first.
    """
    n = len(xy)
    who, whom, dist = attention(xy, vision_radius, bandwidth, None if objects is None else objects.distance)
    doing = {j: env.describe(j) for j in np.unique(whom[whom < n]).tolist()}
    recent = {
        i: {m.description for m in memories[i].latest(int(retention[i]), ("event",))} for i in np.unique(who).tolist()
    }
    events: list[tuple[int, Event]] = []
    for i, j, d in zip(who.tolist(), whom.tolist(), dist.tolist(), strict=True):
        if j >= n:  # an object in use: "bed at Maple Row:Ortiz home is being used by ..."
            assert objects is not None
            m = j - n
            description = objects.description(m)
            if description not in recent[i]:
                spo = (objects.addresses[m], "is", objects.states[m])
                events.append((i, Event(description=description, spo=spo, distance=d)))
            continue
        person = env.personas[j]
        description = f"{person.name} is {doing[j]}"
        if description in recent[i]:
            continue
        place = env.places[int(env.current_places[j])]
        events.append((i, Event(description=description, spo=(person.name, doing[j].split(" ")[0], place), distance=d)))
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


RATINGS: tuple[int, ...] = tuple(range(1, 10))
"""Poignancy ratings a persona chooses among (a scored choice per event)."""


def poignancy_request(profile: PersonaProfile, system: str, descriptions: Sequence[str], lang: str) -> LLMRequest:
    """How poignant each of a step's events (or conversations) is for the persona, 1-9: ONE request for all of
    them, answered ``{"a": r1, "b": r2, ...}`` (each a scored choice on the local backend)."""
    descriptions = list(descriptions)
    keys = event_keys(len(descriptions))
    rule = {key: poignancy_rule(profile, d) for key, d in zip(keys, descriptions, strict=True)}
    listing = "\n".join(f"{key}. {quote(d)}" for key, d in zip(keys, descriptions, strict=True))
    return LLMRequest(
        kind="poignancy",
        system=system,
        user=render(lang, "poignancy", events=listing),
        schema={
            "type": "object",
            "properties": {key: {"type": "integer", "enum": list(RATINGS)} for key in keys},
            "required": keys,
        },
        max_tokens=8 * len(keys) + 16,
        fallback=lambda: dict(rule),
    )


def event_keys(n: int) -> list[str]:
    """Keys of ``n`` events in a rating request: letters (``a``, ``b``...), so that a small model does not answer
    the number of the key (with keys ``"1"``, ``"2"``, SmolLM2 rates every step's events 1, 2, 3...)."""
    return [chr(ord("a") + k) if k < 26 else f"e{k}" for k in range(n)]


def ratings(answer: dict[str, object] | None, n: int) -> list[float]:
    """The ``n`` ratings of a :func:`poignancy_request` answer (3 where one is missing or invalid)."""
    answer = answer or {}
    out = []
    for key in event_keys(n):
        value = answer.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 10
        out.append(float(value) if ok else 3.0)  # type: ignore[arg-type]
    return out
