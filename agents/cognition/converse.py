"""Converse (Park et al. 2023, section 4.3 / appendix): a multi-turn dialogue between two personas.

Turns alternate between the two speakers; each turn is one request whose user message holds what
the speaker remembers about the partner and the transcript so far, every line quoted and
length-limited (the partner's words are data, not instructions). All conversations of a step
advance turn by turn together, so each turn is one concurrent batch of requests. Both personas
store the whole conversation as a ``chat`` memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from agents.cognition.prompts import PersonaProfile, quote, render
from agents.llm.base import LLMRequest

UTTERANCE_CHARS = 160
"""Longest utterance (the grammar, or the guided decoding, stops the model there)."""
UTTERANCE_SCHEMA = {
    "type": "object",
    "properties": {
        "utterance": {"type": "string", "minLength": 2, "maxLength": UTTERANCE_CHARS},
        "end": {"type": "boolean"},
    },
    "required": ["utterance", "end"],
}


def utterance_rule(profile: PersonaProfile, partner: str, turn: int, last_turn: bool) -> dict[str, object]:
    """A polite, on-task line from the persona's own fields (opening, follow-up, goodbye)."""
    p, g = profile.persona, profile.group
    first = partner.split()[0]
    if turn == 0:
        topic = f"Have you heard about {g.cause}?" if g.cause else f"I'm busy with this: {p.task}."
        return {"utterance": f"Hi {first}! {topic}", "end": False}
    if last_turn:
        return {"utterance": f"Good talking to you, {first}. See you around!", "end": True}
    if turn == 1:
        about = f"and {g.cause} matters to us" if g.cause else "and it keeps me busy"
        return {"utterance": f"Nice to see you, {first}. I'm working to {p.task}, {about}.", "end": False}
    return {"utterance": f"That sounds worthwhile, {first}. Tell me more another time.", "end": False}


def converse_request(
    profile: PersonaProfile,
    system: str,
    *,
    partner: str,
    now: dt.datetime,
    place: str,
    memories: str,
    transcript: Sequence[tuple[str, str]],
    turn: int,
    last_turn: bool,
    lang: str,
    seed: int | None = None,
) -> LLMRequest:
    rule = utterance_rule(profile, partner, turn, last_turn)
    lines = "\n".join(f"{speaker}: {quote(text)}" for speaker, text in transcript) or "(you speak first)"
    return LLMRequest(
        kind="converse",
        system=system,
        user=render(
            lang, "converse", time=f"{now:%H:%M}", place=place, partner=partner, memories=memories, transcript=lines
        ),
        schema=UTTERANCE_SCHEMA,
        max_tokens=120,
        seed=seed,
        fallback=lambda: {**rule, "utterance": str(rule["utterance"])[:UTTERANCE_CHARS]},
    )
