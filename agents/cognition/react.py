"""React and re-plan (Park et al. 2023, section 4.3.1 "Reacting and Updating Plans"), and the activity's emoji.

On perceiving another persona within reach, a persona decides to **talk** (it opens a
conversation this step), **wait** (it stays where it is for a step; the rest of its hour's steps
shift later) or **continue** its plan (the original's ``decide_to_talk`` / ``decide_to_react``).
A conversation also takes time out of the hour (the steps after it shift), and afterwards each
participant writes a **memo** (what to remember) and a **planning thought** (what it means for
its plans) into its memory, as the original's ``generate_memo_on_convo`` and
``generate_planning_thought_on_convo``; then it **re-plans the rest of its day**. A whisper from
the console (the persona's inner voice) is stored as a high-poignancy thought and triggers the
same re-planning.

Re-planning asks for the hours left today, each with one place the persona knows: its own places
and every place of its spatial memory (so what it has seen decides where it can go). Its
rule-based fallback reads the trigger for a known place and an hour ("meet me at Willow Cafe at
15:00"), and moves that hour (or the next) there; without both, the schedule stands.

Every request has a rule-based fallback, which the ``scripted`` backend answers with.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from agents.cognition.plan import SLEEP_HOUR, schedule_schema
from agents.cognition.prompts import PersonaProfile, numbered, quote, render
from agents.llm.base import LLMRequest

REACTIONS: tuple[str, ...] = ("talk", "wait", "continue")
"""What a persona can do on perceiving another: the order is the prompt's."""

EMOJI_SCHEMA = {
    "type": "object",
    "properties": {"emoji": {"type": "string", "minLength": 1, "maxLength": 8}},
    "required": ["emoji"],
}
_HOUR = re.compile(r"\b(?:at|by|around)\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm|h)?\b", re.IGNORECASE)


def react_rule(*, social: bool, other_busy: bool, same_target: bool) -> str:
    """Talk when the persona's plan is social and the other is free; wait for an occupied shared place; else continue."""
    if social and not other_busy:
        return "talk"
    if same_target and other_busy:
        return "wait"
    return "continue"


def react_request(
    profile: PersonaProfile,
    system: str,
    *,
    other: str,
    other_doing: str,
    now: dt.datetime,
    place: str,
    activity: str,
    memories: str,
    rule: str,
    lang: str,
) -> LLMRequest:
    """Whether to talk to, wait for, or go on past ``other`` (a choice with log-preferences)."""
    return LLMRequest(
        kind="react",
        system=system,
        user=render(
            lang,
            "react",
            time=f"{now:%H:%M}",
            place=place,
            activity=quote(activity, 120),
            other=other,
            other_doing=quote(other_doing, 160),
            memories=memories,
            choices=", ".join(REACTIONS),
        ),
        choices=REACTIONS,
        max_tokens=8,
        want_logprobs=True,
        fallback=lambda: rule,
    )


def insert_step(steps: list[dict[str, Any]], minute: int, minutes: int, activity: str) -> list[dict[str, Any]]:
    """The hour's steps with ``activity`` (``minutes`` long) inserted at ``minute``: what was planned from then shifts later.

    The step that covers ``minute`` is split around the insertion; the hour's plan past 60 minutes
    is cut (that time is gone).
    """
    out: list[dict[str, Any]] = []
    elapsed, inserted = 0, False
    for s in steps:
        length = max(int(s["minutes"]), 1)
        if not inserted and minute < elapsed + length:
            before = minute - elapsed
            if before > 0:
                out.append({"minutes": before, "activity": s["activity"]})
            out.append({"minutes": minutes, "activity": activity})
            out.append({"minutes": length - before, "activity": s["activity"]})
            inserted = True
        else:
            out.append(dict(s))
        elapsed += length
    if not inserted:
        if minute > elapsed:
            out.append({"minutes": minute - elapsed, "activity": steps[-1]["activity"] if steps else "as planned"})
        out.append({"minutes": minutes, "activity": activity})
    # cut at the end of the hour
    cut: list[dict[str, Any]] = []
    total = 0
    for s in out:
        if total >= 60:
            break
        length = min(int(s["minutes"]), 60 - total)
        cut.append({"minutes": length, "activity": s["activity"]})
        total += length
    return cut


def memo_rule(name: str, partner: str, turns: Sequence[tuple[str, str]]) -> dict[str, str]:
    said = next((t for s, t in turns if s == partner), "")
    return {"memo": f"{partner} told {name}: {said[:160]}" if said else f"{name} talked with {partner}."}


def planning_rule(name: str, partner: str, turns: Sequence[tuple[str, str]]) -> dict[str, str]:
    said = " ".join(t for s, t in turns if s == partner)
    found = _HOUR.search(said)
    if found:
        return {"thought": f"{name} should keep in mind what {partner} said about {found.group(0).strip()}."}
    return {"thought": f"{name} will carry on with the day's plan after talking with {partner}."}


def _text_request(kind: str, system: str, user: str, key: str, fallback: dict[str, str]) -> LLMRequest:
    return LLMRequest(
        kind=kind,
        system=system,
        user=user,
        schema={
            "type": "object",
            "properties": {key: {"type": "string", "minLength": 1, "maxLength": 300}},
            "required": [key],
        },
        max_tokens=120,
        fallback=lambda: dict(fallback),
    )


def memo_request(
    profile: PersonaProfile, system: str, partner: str, turns: Sequence[tuple[str, str]], lang: str
) -> LLMRequest:
    """What the persona wants to remember from the conversation (a thought)."""
    lines = "\n".join(f"{s}: {quote(t)}" for s, t in turns)
    user = render(lang, "memo", partner=partner, transcript=lines)
    return _text_request("memo", system, user, "memo", memo_rule(profile.persona.name, partner, turns))


def planning_thought_request(
    profile: PersonaProfile, system: str, partner: str, turns: Sequence[tuple[str, str]], lang: str
) -> LLMRequest:
    """What the conversation means for the persona's plans (a thought)."""
    lines = "\n".join(f"{s}: {quote(t)}" for s, t in turns)
    user = render(lang, "planning_thought", partner=partner, transcript=lines)
    return _text_request(
        "planning_thought", system, user, "thought", planning_rule(profile.persona.name, partner, turns)
    )


def open_hours(hourly: list[dict[str, Any]], now: dt.datetime, wake: int, current: bool) -> list[int]:
    """The hours of today a re-plan may change: waking hours after now (and now's, if its block has
    not started yet: ``current``), before :data:`SLEEP_HOUR`."""
    first = now.hour if current else now.hour + 1
    return [int(b["hour"]) for b in hourly if max(first, wake) <= int(b["hour"]) < SLEEP_HOUR]


def _hours_named(trigger: str, hours: Sequence[int]) -> list[int]:
    """Hours the trigger names ("at 15", "at 3pm", "by 16:30"), read as the open hour they can mean
    (an hour without am/pm that has passed means the afternoon: "at 3" at 10:00 is 15:00)."""
    out = []
    for m in _HOUR.finditer(trigger):
        h = int(m.group(1))
        suffix = (m.group(3) or "").lower()
        if suffix == "pm" and h < 12:
            h += 12
        elif suffix == "am" and h == 12:
            h = 0
        elif not suffix and h < 12 and h not in hours and h + 12 in hours:
            h += 12
        out.append(h)
    return out


def replan_rule(
    hourly: list[dict[str, Any]], hours: Sequence[int], trigger: str, places: Sequence[str]
) -> list[dict[str, Any]]:
    """The blocks of the open ``hours`` (:func:`open_hours`), changed where the trigger names a known place.

    The place is the longest known ``sector:arena`` or arena name found in the trigger
    (case-insensitive); the hour is the first open hour the trigger names, else the first open
    hour. Without a known place the schedule stands.
    """
    low = trigger.lower()
    best, best_len = None, 0
    for p in places:
        for name in {p.lower(), p.split(":")[-1].lower()}:
            if len(name) > best_len and name in low:
                best, best_len = p, len(name)
    rest = [dict(b) for b in hourly if int(b["hour"]) in set(hours)]
    if best is None or not rest:
        return rest
    hour = next((h for h in _hours_named(trigger, hours) if h in hours), hours[0])
    for b in rest:
        if int(b["hour"]) == hour:
            b["activity"] = f"as arranged: {trigger[:80]}"
            b["place"] = best
    return rest


def replan_request(
    profile: PersonaProfile,
    system: str,
    *,
    now: dt.datetime,
    hourly: list[dict[str, Any]],
    hours: Sequence[int],
    trigger: str,
    memories: str,
    places: Sequence[str],
    lang: str,
) -> LLMRequest:
    """The open ``hours`` of today's schedule, revised after ``trigger`` (a conversation or a whisper)."""
    rule = replan_rule(hourly, hours, trigger, places)
    rest = [b for b in hourly if int(b["hour"]) in set(hours)]
    current = numbered([f"{b['hour']}:00 {b['activity']} at {b['place']}" for b in rest])
    return LLMRequest(
        kind="replan",
        system=system,
        user=render(
            lang,
            "replan",
            time=f"{now:%H:%M}",
            trigger=quote(trigger, 300),
            schedule=current,
            memories=memories,
            places=", ".join(places),
        ),
        schema=schedule_schema(list(places), activity_max=120),  # one fixed schema: merge_replan keeps the open hours
        max_tokens=min(400, 40 * len(hours)),
        fallback=lambda: {"schedule": rule},
    )


def merge_replan(
    hourly: list[dict[str, Any]], hours: Sequence[int], answer: Sequence[Any], places: Sequence[str]
) -> list[dict[str, Any]]:
    """Today's 24 blocks with the open ``hours`` replaced where the answer gives a valid block."""
    out = [dict(b) for b in hourly]
    allowed, open_ = set(places), set(hours)
    for block in answer:
        if not isinstance(block, dict):
            continue
        h, place = block.get("hour"), block.get("place")
        if isinstance(h, int) and h in open_ and place in allowed and h < len(out):
            activity = str(block.get("activity", "")).strip()[:120] or out[h]["activity"]
            out[h] = {"hour": h, "activity": activity, "place": place}
    return out


def emoji_request(system: str, activity: str, rule: str, lang: str) -> LLMRequest:
    """An emoji or two for the activity (the original's ``pronunciatio``); the rule's emoji as fallback."""
    return LLMRequest(
        kind="emoji",
        system=system,
        user=render(lang, "emoji", activity=quote(activity, 120)),
        schema=EMOJI_SCHEMA,
        max_tokens=12,
        fallback=lambda: {"emoji": rule},
    )


def valid_emoji(text: object) -> bool:
    """At least one emoji-like symbol (Unicode category ``So``) and nothing a word is made of (letters,
    digits, CJK): ``"🎨"``, ``"☕📖"`` pass; ``"paint"``, ``"画画"``, ``"→"`` do not."""
    if not isinstance(text, str) or not 0 < len(text) <= 8:
        return False
    chars = [c for c in text if not c.isspace()]
    return any(unicodedata.category(c) == "So" for c in chars) and not any(c.isalnum() for c in chars)
