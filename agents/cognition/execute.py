"""Execute (Park et al. 2023, section 4.3): the plan and what the persona perceives → the env's action.

The decision is a constrained choice among the possible actions (``move``, ``chat``, ``task``,
``research``), asked with ``want_logprobs`` so that backends that can return the model's
log-preferences over the four words do (the neuro-symbolic policy's ``ℓ_LLM``). The rule-based
fallback: go to the current block's place; there, chat if the block is social and someone is
near, research at a research site, else work (or rest at home). The env's rich action then
carries the target place (the block's), the partner and the utterance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.cognition.prompts import quote, render
from agents.llm.base import LLMRequest
from ga_env import ACTION_NAMES

MOVE, CHAT, TASK, RESEARCH = 0, 1, 2, 3
PERCEIVED_CHARS = 240
"""Characters of the env's text observation quoted in a decision prompt (time, energy, the nearest people: the
place and the plan are in the prompt already; every token costs about 5 ms on the offline model)."""
EMOJI = {"move": "🚶", "chat": "💬", "task": "🛠️", "research": "📚", "rest": "😴", "idle": "💭"}


def decide_rule(
    *, at_target: bool, mask: npt.NDArray[np.integer], social: bool, partner_ok: bool, at_research: bool
) -> str:
    """The rule-based choice (a word of ``ACTION_NAMES``) for one persona."""
    if not at_target:
        return "move"
    if mask[CHAT] and partner_ok and social:
        return "chat"
    if mask[RESEARCH] and at_research:
        return "research"
    if mask[TASK]:
        return "task"
    if mask[CHAT] and partner_ok:
        return "chat"
    return "move"


def options_here(mask: npt.NDArray[np.integer], *, partner_ok: bool) -> tuple[str, ...]:
    """What a persona at its planned place can choose to do there: the allowed ``task``/``research`` and ``chat``
    (only with someone within reach). Walking on is not among them: the plan says to be here."""
    out = []
    for k in (TASK, RESEARCH, CHAT):
        if mask[k] and (k != CHAT or partner_ok):
            out.append(ACTION_NAMES[k])
    return tuple(out)


def listing_order(choices: Sequence[str], key: str) -> tuple[str, ...]:
    """``choices`` in an order drawn from a hash of ``key`` (deterministic: a resumed run lists them alike).

    The options a persona has at its planned place are all sensible there (the mask allows research only at a
    research site, chat only with someone near); listing them in a varying order keeps a model's preference for
    the first listed option from passing for a choice, and lets the first-option rate measure it.
    """
    from agents.llm.calibrate import hashed_permutation

    return tuple(choices[k] for k in hashed_permutation(key, len(choices)))


def decide_request(
    *,
    system: str,
    perceived: str,
    place: str,
    activity: str,
    target: str,
    memories: str,
    mask: npt.NDArray[np.integer],
    lang: str,
    fallback: Callable[[], str],
    seed: int | None = None,
    temperature: float = 0.0,
    choices: Sequence[str] | None = None,
) -> LLMRequest:
    """The action choice among ``choices`` (default: every action ``mask`` allows), with log-preferences where
    the backend has them.

    ``perceived`` is the env's text observation of the persona (it contains what others said),
    so it goes in quoted, length-limited.
    """
    if choices is None:
        choices = tuple(name for name, ok in zip(ACTION_NAMES, mask, strict=True) if ok)
    choices = tuple(choices)
    options = "; ".join(OPTION_TEXT[lang][ACTION_NAMES.index(c)] for c in choices)
    return LLMRequest(
        kind="decide",
        system=system,
        user=render(
            lang,
            "decide",
            perceived=quote(perceived, PERCEIVED_CHARS),
            place=place,
            activity=quote(activity, 120),
            target=target,
            memories=memories,
            options=options,
            choices=", ".join(choices),
        ),
        choices=choices,
        max_tokens=16,  # a server writes {"choice": "..."}
        temperature=temperature,
        seed=seed,
        want_logprobs=len(choices) > 1,
        fallback=fallback,
    )


OPTION_TEXT: dict[str, tuple[str, str, str, str]] = {
    "en": (
        "move = walk toward where your plan says you should be",
        "chat = talk with the person next to you",
        "task = work on your task here (or rest, at home)",
        "research = do research here",
    ),
    "zh": (
        "move = 走向计划中的地点",
        "chat = 和身边的人交谈",
        "task = 在这里做你的任务（在家则休息）",
        "research = 在这里做研究",
    ),
}


def emoji_for(action: str, at_home: bool) -> str:
    """The replay's emoji for an action (resting at home gets a sleepy face)."""
    if action == "task" and at_home:
        return EMOJI["rest"]
    return EMOJI.get(action, EMOJI["idle"])


def rich_action(action: str, target: int, partner: int, utterance: str | None) -> dict[str, Any]:
    """The env's rich action dict (``partner``/``target`` = ``len(...)`` means automatic)."""
    out: dict[str, Any] = {"action": ACTION_NAMES.index(action), "target": target, "partner": partner}
    if utterance:
        out["utterance"] = utterance
    return out


def smoothed_onehot(choices: Sequence[str], chosen: str, eps: float) -> dict[str, float]:
    """Log of a smoothed one-hot over ``choices``: ``1 - eps`` on the choice, the rest shared."""
    if len(choices) == 1:
        return {choices[0]: 0.0}
    rest = eps / (len(choices) - 1)
    return {c: float(np.log(1.0 - eps if c == chosen else rest)) for c in choices}
