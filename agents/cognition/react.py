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

from agents.cognition.plan import SLEEP_HOUR
from agents.cognition.prompts import PersonaProfile, quote, render
from agents.llm.base import LLMRequest

REACTIONS: tuple[str, ...] = ("talk", "wait", "continue")
"""What a persona can do on perceiving another: the order is the prompt's."""

EMOJI_SCHEMA = {
    "type": "object",
    "properties": {"emoji": {"type": "string", "minLength": 1, "maxLength": 3}},
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
        max_tokens=16,
        want_logprobs=True,
        fallback=lambda: rule,
    )


def insert_step(
    steps: list[dict[str, Any]], minute: int, minutes: int, activity: str, total_minutes: int = 60
) -> list[dict[str, Any]]:
    """The block's steps with ``activity`` (``minutes`` long) inserted at ``minute``: what was planned from then
    shifts later.

    The step that covers ``minute`` is split around the insertion; the plan past the block's
    ``total_minutes`` is cut (that time is gone).
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
    # cut at the end of the block
    cut: list[dict[str, Any]] = []
    total = 0
    for s in out:
        if total >= total_minutes:
            break
        length = min(int(s["minutes"]), total_minutes - total)
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


def conversation_thoughts_request(
    profile: PersonaProfile, system: str, partner: str, turns: Sequence[tuple[str, str]], lang: str
) -> LLMRequest:
    """After a conversation, in one request: what to remember (``memo``) and what it means for the persona's plans
    (``thought``) — the original asks these separately; one request shares the transcript's prompt."""
    lines = "\n".join(f"{s}: {quote(t)}" for s, t in turns)
    name = profile.persona.name
    fallback = {k: v[:120] for k, v in (memo_rule(name, partner, turns) | planning_rule(name, partner, turns)).items()}
    text = {"type": "string", "minLength": 3, "maxLength": 120}
    return LLMRequest(
        kind="memo",
        system=system,
        user=render(lang, "memo", partner=partner, transcript=lines),
        schema={"type": "object", "properties": {"memo": text, "thought": text}, "required": ["memo", "thought"]},
        max_tokens=90,
        fallback=lambda: dict(fallback),
        check=lambda data: _bad_thoughts(data, partner),
    )


def _bad_thoughts(data: dict[str, Any], partner: str) -> str | None:
    from agents.cognition.plan import PLACEHOLDERS

    for key in ("memo", "thought"):
        text = " ".join(str(data.get(key, "")).split())
        if PLACEHOLDERS.search(text) or len(re.findall(r"[^\W\d_]{2,}", text)) < 2:
            return f"{key}: {text[:40]!r} says nothing"
    return None


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


REPLAN_HOURS = 6
"""Open hours a re-plan may move (the next ones)."""


def replan_hours(hours: Sequence[int], trigger: str) -> list[int]:
    """The open hours a re-plan may move: those the trigger names, then the next ones, :data:`REPLAN_HOURS` in all."""
    named = [h for h in _hours_named(trigger, hours) if h in set(hours)][:REPLAN_HOURS]
    rest = [h for h in hours if h not in named][: REPLAN_HOURS - len(named)]
    return sorted(set(named) | set(rest))


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
    """After ``trigger`` (a conversation or a whisper): which of the next open ``hours`` changes, and to which place
    (two scored fields, ``hour`` then ``place``); the place the schedule already has there means no change."""
    hours = replan_hours(hours, trigger)
    rule = replan_rule(hourly, hours, trigger, places)
    changed = next((b for b, old in zip(rule, [hourly[h] for h in hours], strict=True) if b != old), None)
    fallback = (
        {"hour": int(changed["hour"]), "place": changed["place"]}
        if changed
        else {
            "hour": hours[0],
            "place": hourly[hours[0]]["place"] if hourly[hours[0]]["place"] in places else places[0],
        }
    )
    current = "\n".join(f"{h}:00 {quote(hourly[h]['activity'], 80)} at {hourly[h]['place']}" for h in hours)
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
        schema={
            "type": "object",
            "properties": {
                "hour": {"type": "integer", "enum": hours},
                "place": {"type": "string", "enum": list(places)},
            },
            "required": ["hour", "place"],
        },
        max_tokens=48,
        fallback=lambda: dict(fallback),
    )


def merge_replan(
    hourly: list[dict[str, Any]], hours: Sequence[int], answer: dict[str, Any], places: Sequence[str], trigger: str
) -> list[dict[str, Any]]:
    """Today's 24 blocks, the answer's open hour moved to the answer's place (if it is another place)."""
    out = [dict(b) for b in hourly]
    h, place = answer.get("hour"), answer.get("place")
    if isinstance(h, int) and h in set(hours) and place in set(places) and h < len(out) and out[h]["place"] != place:
        out[h] = {"hour": h, "activity": f"as arranged: {' '.join(trigger.split())[:80]}", "place": place}
    return out


def emoji_request(system: str, activity: str, rule: str, lang: str) -> LLMRequest:
    """An emoji or two for the activity (the original's ``pronunciatio``); the rule's emoji as fallback."""
    return LLMRequest(
        kind="emoji",
        system=system,
        user=render(lang, "emoji", activity=quote(activity, 120)),
        schema=EMOJI_SCHEMA,
        max_tokens=24,
        fallback=lambda: {"emoji": rule},
    )


def valid_emoji(text: object) -> bool:
    """At least one emoji-like symbol (Unicode category ``So``) and nothing a word is made of (letters,
    digits, CJK): ``"🎨"``, ``"☕📖"`` pass; ``"paint"``, ``"画画"``, ``"→"`` do not."""
    if not isinstance(text, str) or not 0 < len(text) <= 8:
        return False
    chars = [c for c in text if not c.isspace()]
    return any(unicodedata.category(c) == "So" for c in chars) and not any(c.isalnum() for c in chars)
