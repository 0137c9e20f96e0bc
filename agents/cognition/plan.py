"""Plan (Park et al. 2023, section 4.3): wake-up hour → daily plan → hourly schedule → decomposition.

At the start of each day a persona picks its wake-up hour, writes a plan in broad strokes, and
turns it into an hourly schedule whose every block names one of the persona's places (its home,
its task, research and social sites): the place becomes the env's Move target. When a block
starts, it is decomposed into a few concrete steps (the current one is the persona's activity
description). Every request has a rule-based fallback from the persona's own fields: its
lifestyle (wake-up), its task and its group's objective (what the afternoon is for).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from agents.cognition.prompts import PersonaProfile, numbered, quote, render
from agents.llm.base import LLMRequest

SLEEP_HOUR = 23
_WAKE = re.compile(r"(?:wakes?|up|rises?)\s+(?:up\s+)?(?:at|by)\s+(\d{1,2})", re.IGNORECASE)


def wake_hour_rule(profile: PersonaProfile) -> int:
    """Wake-up hour from the lifestyle (``"wakes at 7"``; ``late riser`` → 9; ``early riser`` → 6; else 7)."""
    text = profile.persona.lifestyle
    m = _WAKE.search(text)
    if m and 3 <= int(m.group(1)) <= 12:
        return int(m.group(1))
    low = text.lower()
    if "late riser" in low:
        return 9
    if "early riser" in low:
        return 6
    return 7


def hourly_schedule_rule(profile: PersonaProfile, wake: int) -> list[dict[str, Any]]:
    """A sensible day from the persona's task and its group's objective: 24 ``{hour, activity, place}`` blocks."""
    p = profile
    task_place = p.task_places[0] if p.task_places else p.home
    research = p.research_places[0] if p.research_places else task_place
    social = p.social_places[0] if p.social_places else task_place
    evening = p.social_places[1] if len(p.social_places) > 1 else social
    spreads = p.group.cause is not None and (p.values("awareness") or p.values("supporters"))
    afternoon_place, afternoon = (
        (research, "research at the library")
        if p.values("knowledge")
        else (social, f"tell people about {p.group.cause}")
        if spreads
        else (task_place, p.persona.task)
    )
    out = []
    for h in range(24):
        if h < wake or h >= SLEEP_HOUR:
            block = ("sleeping", p.home)
        elif h == wake:
            block = ("waking up and having breakfast", p.home)
        elif h < 12:
            block = (p.persona.task, task_place)
        elif h == 12:
            block = ("lunch and a chat", social)
        elif h < 17:
            block = (afternoon, afternoon_place)
        elif h < 19:
            block = (
                p.persona.task if not spreads else f"talk about {p.group.cause}",
                evening if spreads else task_place,
            )
        elif h < 21:
            block = ("dinner and time with neighbours", evening if p.values("relationships") else p.home)
        else:
            block = ("winding down at home", p.home)
        out.append({"hour": h, "activity": block[0], "place": block[1]})
    return out


def daily_plan_rule(schedule: list[dict[str, Any]]) -> list[str]:
    """The broad plan implied by an hourly schedule: one item per run of equal blocks (sleep excluded)."""
    plan: list[str] = []
    last = None
    for block in schedule:
        key = (block["activity"], block["place"])
        if key != last and block["activity"] != "sleeping":
            plan.append(f"{block['hour']}:00 {block['activity']} at {block['place']}")
        last = key
    return plan[:6]


def wake_up_request(profile: PersonaProfile, system: str, date: dt.date, lang: str) -> LLMRequest:
    rule = wake_hour_rule(profile)
    return LLMRequest(
        kind="wake_up",
        system=system,
        user=render(lang, "wake_up", date=f"{date:%A %B %d}"),
        schema={
            "type": "object",
            "properties": {"hour": {"type": "integer", "minimum": 3, "maximum": 12}},
            "required": ["hour"],
        },
        max_tokens=16,
        fallback=lambda: {"hour": rule},
    )


def plan_day_request(
    profile: PersonaProfile, system: str, date: dt.date, wake: int, memories: list[str], lang: str
) -> LLMRequest:
    rule = daily_plan_rule(hourly_schedule_rule(profile, wake))
    return LLMRequest(
        kind="plan_day",
        system=system,
        user=render(lang, "plan_day", date=f"{date:%A %B %d}", wake_hour=wake, memories=numbered(memories)),
        schema={
            "type": "object",
            "properties": {"plan": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 8}},
            "required": ["plan"],
        },
        max_tokens=200,
        fallback=lambda: {"plan": rule},
    )


def plan_hour_request(
    profile: PersonaProfile,
    system: str,
    date: dt.date,
    wake: int,
    plan: list[str],
    lang: str,
    places: list[str] | None = None,
) -> LLMRequest:
    """The hourly schedule; each block at one of ``places`` (default: the persona's own places; the
    generative mind passes every place of its spatial memory too, so what it knows decides where it goes)."""
    rule = [b for b in hourly_schedule_rule(profile, wake) if b["hour"] >= wake]
    places = list(places or profile.places)
    return LLMRequest(
        kind="plan_hour",
        system=system,
        user=render(
            lang,
            "plan_hour",
            date=f"{date:%A %B %d}",
            plan=numbered(plan),
            places=", ".join(places),
            wake_hour=wake,
        ),
        schema=schedule_schema(places),
        max_tokens=700,
        fallback=lambda: {"schedule": rule},
    )


def schedule_schema(places: list[str], activity_max: int | None = None) -> dict[str, Any]:
    """JSON schema of an hourly schedule answer: ``{"schedule": [{hour, activity, place}, ...]}`` (at most 24 blocks),
    each place one of ``places`` (used by the day's plan and by re-plans)."""
    activity: dict[str, Any] = {"type": "string"}
    if activity_max is not None:
        activity["maxLength"] = activity_max
    return {
        "type": "object",
        "properties": {
            "schedule": {
                "type": "array",
                "maxItems": 24,
                "items": {
                    "type": "object",
                    "properties": {
                        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                        "activity": activity,
                        "place": {"type": "string", "enum": places},
                    },
                    "required": ["hour", "activity", "place"],
                },
            }
        },
        "required": ["schedule"],
    }


def merge_schedule(
    profile: PersonaProfile, wake: int, answer: list[dict[str, Any]], places: list[str] | None = None
) -> list[dict[str, Any]]:
    """24 blocks: the model's where it gave a valid hour and a place of ``places`` (default: the
    persona's own), the rule's elsewhere."""
    out = hourly_schedule_rule(profile, wake)
    places_ok = set(places or profile.places)
    for block in answer:
        h, place = block.get("hour"), block.get("place")
        if isinstance(h, int) and wake <= h < SLEEP_HOUR and place in places_ok:
            out[h] = {"hour": h, "activity": str(block.get("activity", ""))[:120] or out[h]["activity"], "place": place}
    return out


def decompose_rule(activity: str) -> list[dict[str, Any]]:
    """Two steps: getting started, then the activity itself."""
    return [{"minutes": 10, "activity": f"getting ready to {activity}"}, {"minutes": 50, "activity": activity}]


def decompose_request(
    profile: PersonaProfile, system: str, now: dt.datetime, block: dict[str, Any], lang: str
) -> LLMRequest:
    rule = decompose_rule(block["activity"])
    h = int(block["hour"])
    return LLMRequest(
        kind="decompose",
        system=system,
        user=render(
            lang,
            "decompose",
            time=f"{now:%H:%M}",
            start=h,
            end=(h + 1) % 24,
            activity=quote(block["activity"], 120),
            place=block["place"],
        ),
        schema={
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 6,
                    "items": {
                        "type": "object",
                        "properties": {"minutes": {"type": "integer", "minimum": 1}, "activity": {"type": "string"}},
                        "required": ["minutes", "activity"],
                    },
                }
            },
            "required": ["steps"],
        },
        max_tokens=200,
        fallback=lambda: {"steps": rule},
    )


def current_step(steps: list[dict[str, Any]], minute: int) -> str:
    """The step of a decomposed hour that covers ``minute`` (the last one past the end)."""
    elapsed = 0
    for s in steps:
        elapsed += max(int(s["minutes"]), 1)
        if minute < elapsed:
            return str(s["activity"])
    return str(steps[-1]["activity"]) if steps else ""
