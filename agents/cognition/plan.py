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
from collections.abc import Sequence
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


WAKE_HOURS: tuple[int, ...] = tuple(range(6, 12))
"""Wake-up hours a persona chooses among (a scored choice: the model names no free number)."""
PLAN_ITEMS = (3, 6)
"""Fewest and most items of a daily plan."""
ACTIVITY_CHARS = 60
"""Longest activity of a plan item or a decomposed step (the grammar stops the model there)."""
STEP_MINUTES: tuple[int, ...] = (10, 15, 20, 30, 40, 45, 60, 90, 120)
"""Durations a decomposed step may have (scaled to fill its block)."""


def wake_up_request(profile: PersonaProfile, system: str, date: dt.date, lang: str) -> LLMRequest:
    """The wake-up hour as a scored choice among :data:`WAKE_HOURS` (each scored, the likeliest taken)."""
    rule = wake_hour_rule(profile)
    return LLMRequest(
        kind="wake_up",
        system=system,
        user=render(lang, "wake_up", date=f"{date:%A %B %d}", lifestyle=quote(profile.persona.lifestyle, 200)),
        schema={
            "type": "object",
            "properties": {"hour": {"type": "integer", "enum": list(WAKE_HOURS)}},
            "required": ["hour"],
        },
        max_tokens=24,  # the JSON syntax too, when a server writes it
        fallback=lambda: {"hour": rule if rule in WAKE_HOURS else 7},
    )


def plan_candidates(profile: PersonaProfile) -> list[str]:
    """What a persona may do in a block of its day, from its own fields: its task, research (if it has a research
    site), its group's cause (if any), meals and company, rest, a walk."""
    p = profile
    out = [p.persona.task]
    if p.research_places:
        out.append("research at the library")
    if p.group.cause:
        out.append(f"tell people about {p.group.cause}")
    out += ["lunch and a chat with friends", "talk with neighbours", "rest at home", "a walk in the park"]
    return list(dict.fromkeys(x[:ACTIVITY_CHARS] for x in out))


ANCHORS: dict[int, str] = {12: "lunch and a chat", 21: "winding down at home"}
"""Blocks of every persona's day that the plan does not choose: lunch at noon, winding down from 21:00 (besides
waking up and sleep). The model chooses the others (:func:`plan_slots`)."""


WAKING = "waking up and having breakfast"
"""The plan's first item, at the wake-up hour."""


def is_fixed(activity: str) -> bool:
    """Whether a plan item is one every day has (waking up, the :data:`ANCHORS`): its place is not asked."""
    return activity == WAKING or activity in ANCHORS.values()


def plan_slots(wake: int) -> list[int]:
    """The hours of a day's plan whose activity the persona chooses: after waking, the afternoon, the late
    afternoon and the evening (the :data:`ANCHORS` and sleep are fixed)."""
    return sorted({h for h in (wake + 1, 13, 16, 19) if wake < h < SLEEP_HOUR and h not in ANCHORS})


def plan_day_request(
    profile: PersonaProfile, system: str, date: dt.date, wake: int, memories: list[str], lang: str
) -> LLMRequest:
    """The day's plan in broad strokes: for each block of the day the persona chooses (:func:`plan_slots`), one
    of its activities (:func:`plan_candidates`), each a scored choice (keys ``"8:00"``, ``"13:00"``...); lunch and
    the evening's winding down are fixed (:data:`ANCHORS`)."""
    candidates = plan_candidates(profile)
    slots = plan_slots(wake)
    rule_blocks = hourly_schedule_rule(profile, wake)

    def rule_choice(h: int) -> str:
        words = set(rule_blocks[h]["activity"].lower().split())
        return max(candidates, key=lambda c: (len(words & set(c.lower().split())), -candidates.index(c)))

    rule = {f"{h}:00": rule_choice(h) for h in slots}
    return LLMRequest(
        kind="plan_day",
        system=system,
        user=render(
            lang,
            "plan_day",
            date=f"{date:%A %B %d}",
            wake_hour=wake,
            task=quote(profile.persona.task, 200),
            memories=numbered(memories),
            activities="; ".join(candidates),
        ),
        schema={
            "type": "object",
            "properties": {f"{h}:00": {"type": "string", "enum": candidates} for h in slots},
            "required": [f"{h}:00" for h in slots],
        },
        max_tokens=32 * len(slots) + 16,
        fallback=lambda: dict(rule),
    )


def plan_items(answer: dict[str, Any] | None, profile: PersonaProfile, wake: int) -> list[dict[str, Any]]:
    """Plan items ``{hour, activity}`` from a :func:`plan_day_request` answer: waking up at ``wake``, then each
    block's activity (a block repeating the one before merges with it); a missing block keeps the one before."""
    answer = answer or {}
    candidates = plan_candidates(profile)
    chosen = {h: str(answer[f"{h}:00"]) for h in plan_slots(wake) if answer.get(f"{h}:00") in candidates}
    fixed = {h: a for h, a in ANCHORS.items() if wake < h < SLEEP_HOUR}
    items = [{"hour": wake, "activity": WAKING}]
    for h, activity in sorted((chosen | fixed).items()):
        if activity != items[-1]["activity"]:
            items.append({"hour": h, "activity": activity})
    return items


EXAMPLE_PLAN: tuple[tuple[int, str], ...] = (
    (6, "bake the morning bread"),
    (11, "sell bread at the stall"),
    (15, "visit an old friend"),
)
"""A few-shot example of a plan that is NOT the persona's (a baker's); an item copied from it is dropped."""

PLACEHOLDERS = re.compile(
    r"^\W*$|\.\.\.|…|\be\.g\.|<[^>]*>|^\W*(?:what|activity|activities|item|place|hour|plan|step|steps|task|memo|thought)\W*$",
    re.IGNORECASE,
)
"""Answers that copy a format placeholder (``...``, ``e.g.``, ``<what>``, a bare field name) instead of saying something."""


def bad_activity(text: str, places: Sequence[str] = ()) -> str | None:
    """Why ``text`` is not an activity (a copied placeholder, a place name, no words), or None."""
    t = " ".join(str(text).split())
    if len(re.findall(r"[^\W\d_]{2,}", t)) < 1:
        return "no words"
    if PLACEHOLDERS.search(t):
        return f"a copied placeholder ({t[:40]!r})"
    low = t.lower().strip(" .")
    if any(low == example for _, example in EXAMPLE_PLAN):
        return f"copied from the example ({t[:40]!r})"
    for place in places:
        names = {place.lower(), place.split(":")[-1].lower()}
        if low in names or low in {f"at {n}" for n in names}:
            return f"a place name ({t[:40]!r}), not an activity"
    return None


def plan_places_request(
    profile: PersonaProfile, system: str, items: Sequence[dict[str, Any]], places: Sequence[str], lang: str
) -> LLMRequest:
    """Where each plan item happens: one scored choice among ``places`` per item (fields ``"1"``, ``"2"``...)."""
    places = list(places)
    rule = {
        str(k + 1): (it.get("place") if it.get("place") in places else place_rule(profile, str(it["activity"])))
        for k, it in enumerate(items)
    }
    listing = "\n".join(f"{k + 1}. {it['hour']}:00 {quote(str(it['activity']), ACTIVITY_CHARS + 2)}"
                        for k, it in enumerate(items))  # fmt: skip
    return LLMRequest(
        kind="plan_places",
        system=system,
        user=render(lang, "plan_places", items=listing, places=", ".join(places)),
        schema={
            "type": "object",
            "properties": {
                str(k + 1): {
                    "type": "string",
                    "enum": [rule[str(k + 1)]] + [x for x in places if x != rule[str(k + 1)]],
                }
                for k in range(len(items))
            },  # each item's likeliest place (by its words) listed first
            "required": [str(k + 1) for k in range(len(items))],
        },
        max_tokens=24 * len(items) + 16,
        fallback=lambda: rule,
    )


def place_rule(profile: PersonaProfile, activity: str) -> str:
    """The persona's place for an activity by its words: sleep/home → home, research → research site, chat → social."""
    low = activity.lower()
    p = profile
    if any(w in low for w in ("sleep", "home", "breakfast", "wind down", "winding down", "bed")):
        return p.home
    if p.research_places and any(w in low for w in ("research", "library", "read", "stud")):
        return p.research_places[0]
    if p.social_places and any(w in low for w in ("chat", "talk", "lunch", "dinner", "cafe", "friends", "tell")):
        return p.social_places[0]
    return p.task_places[0] if p.task_places else p.home


def schedule_from_plan(profile: PersonaProfile, wake: int, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """24 hourly blocks from plan items ``{hour, activity, place}``: each item lasts until the next one; before the
    first, waking up at home; sleep before ``wake`` and from :data:`SLEEP_HOUR`. No items: the rule's day."""
    if not items:
        return hourly_schedule_rule(profile, wake)
    out = hourly_schedule_rule(profile, wake)
    ordered = sorted(items, key=lambda x: int(x["hour"]))
    for h in range(wake, SLEEP_HOUR):
        current = [it for it in ordered if int(it["hour"]) <= h]
        if current:
            it = current[-1]
            out[h] = {"hour": h, "activity": str(it["activity"]), "place": str(it["place"])}
        else:
            out[h] = {"hour": h, "activity": "waking up and getting ready", "place": profile.home}
    return out


def decompose_rule(activity: str, minutes: int = 60) -> list[dict[str, Any]]:
    """Two steps: getting started (10 minutes), then the activity itself for the rest of ``minutes``."""
    return [
        {"minutes": 10, "activity": f"getting ready to {activity}"},
        {"minutes": max(minutes - 10, 1), "activity": activity},
    ]


def block_run(hourly: Sequence[dict[str, Any]], hour: int) -> tuple[int, int]:
    """The hours ``[start, end)`` of the run of equal blocks (same activity and place) that holds ``hour``."""
    key = (hourly[hour]["activity"], hourly[hour]["place"])
    start, end = hour, hour + 1
    while start > 0 and (hourly[start - 1]["activity"], hourly[start - 1]["place"]) == key:
        start -= 1
    while end < len(hourly) and (hourly[end]["activity"], hourly[end]["place"]) == key:
        end += 1
    return start, end


def decompose_request(
    profile: PersonaProfile, system: str, now: dt.datetime, block: dict[str, Any], lang: str, end: int | None = None
) -> LLMRequest:
    """2-4 concrete steps of a plan item (the run of equal blocks from ``block["hour"]`` to ``end``), asked once."""
    h = int(block["hour"])
    end = h + 1 if end is None else end
    minutes = 60 * (end - h)
    rule = [  # durations the schema allows (the steps are scaled to the block's minutes afterwards)
        {
            "minutes": min(STEP_MINUTES, key=lambda m: abs(m - int(step["minutes"]))),
            "activity": str(step["activity"])[:ACTIVITY_CHARS],
        }
        for step in decompose_rule(block["activity"], minutes)
    ]
    return LLMRequest(
        kind="decompose",
        system=system,
        user=render(
            lang,
            "decompose",
            time=f"{now:%H:%M}",
            start=h,
            end=end % 24,
            activity=quote(block["activity"], 120),
            place=block["place"],
        ),
        schema={
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 4,
                    "items": {
                        "type": "object",
                        "properties": {
                            "minutes": {"type": "integer", "enum": list(STEP_MINUTES)},
                            "activity": {"type": "string", "minLength": 3, "maxLength": ACTIVITY_CHARS},
                        },
                        "required": ["minutes", "activity"],
                    },
                }
            },
            "required": ["steps"],
        },
        max_tokens=140,
        fallback=lambda: {"steps": rule},
        check=lambda data: None if clean_steps(data.get("steps") or [], minutes, ()) else "no usable step",
    )


def clean_steps(steps: Sequence[Any], minutes: int, places: Sequence[str]) -> list[dict[str, Any]]:
    """The usable decomposed steps (real activities), their minutes scaled to add up to ``minutes``."""
    good: list[tuple[int, str]] = [
        (int(s["minutes"]), " ".join(str(s["activity"]).split())[:ACTIVITY_CHARS])
        for s in steps
        if isinstance(s, dict) and isinstance(s.get("minutes"), int) and s["minutes"] > 0
        and not bad_activity(str(s.get("activity", "")), places)
    ]  # fmt: skip
    if not good:
        return []
    total = sum(m for m, _ in good)
    scaled = [max(1, round(m * minutes / total)) for m, _ in good]
    scaled[-1] = max(1, minutes - sum(scaled[:-1]))
    return [{"minutes": m, "activity": text} for m, (_, text) in zip(scaled, good, strict=True)]


def current_step(steps: list[dict[str, Any]], minute: int) -> str:
    """The step of a decomposed hour that covers ``minute`` (the last one past the end)."""
    elapsed = 0
    for s in steps:
        elapsed += max(int(s["minutes"]), 1)
        if minute < elapsed:
            return str(s["activity"])
    return str(steps[-1]["activity"]) if steps else ""
