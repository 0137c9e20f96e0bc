"""Reflect (Park et al. 2023, section 4.2): when enough has happened, step back and draw insights.

A persona reflects when the summed poignancy of its memories since the last reflection reaches
``threshold`` (the original: 150). It asks itself a few high-level questions (focal points) about
its latest memories, retrieves the memories relevant to each question, and infers insights,
stored as ``thought`` memories with the ids of the memories they rest on as evidence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from agents.cognition.prompts import numbered, quote, render
from agents.cognition.retrieve import MEMORY_CHARS
from agents.llm.base import LLMRequest
from agents.memory import MemoryNode, MemoryStream


def should_reflect(memory: MemoryStream, threshold: float) -> bool:
    """Whether the poignancy accumulated since the last reflection has reached ``threshold``."""
    return memory.poignancy_since_reflection >= threshold


def focal_rule(nodes: Sequence[MemoryNode], n: int) -> list[str]:
    """The ``n`` most frequent keywords of the latest memories, as questions."""
    counts = Counter(kw for node in nodes for kw in node.keywords)
    return [f"What do I know about {kw}?" for kw, _ in counts.most_common(n)] or ["What happened today?"]


def focal_request(system: str, nodes: Sequence[MemoryNode], n: int, lang: str) -> LLMRequest:
    rule = focal_rule(nodes, n)
    return LLMRequest(
        kind="reflect_focal",
        system=system,
        user=render(lang, "focal", memories=numbered([x.description for x in nodes], limit=MEMORY_CHARS), n=n),
        schema={
            "type": "object",
            "properties": {
                "questions": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 8, "maxLength": 100},
                    "minItems": 1,
                    "maxItems": n,
                }
            },
            "required": ["questions"],
        },
        max_tokens=160,
        fallback=lambda: {"questions": rule},
    )


_WRAPPED = re.compile(r"^(?:About [^:]{1,80}: )+|(?:\. It matters to me\.)+$")


def insight_rule(question: str, nodes: Sequence[MemoryNode], n: int) -> list[dict[str, Any]]:
    """Insights from the most poignant retrieved memories, citing them.

    Observations (events, chats) come before earlier insights, and an insight drawn from an
    insight restates its core rather than wrapping it again, so that the rule's thoughts do not
    grow longer with every reflection of a long run.
    """
    best = sorted(nodes, key=lambda x: (x.kind == "thought", -x.poignancy, -x.id))[: max(n, 1) * 2]
    subject = question.removeprefix("What do I know about ").rstrip("?")
    out = []
    for node in best[:n]:
        core = _WRAPPED.sub("", node.description) if node.kind == "thought" else node.description
        out.append({"text": f"About {subject}: {core}. It matters to me.", "evidence": [node.id]})
    return out


def insight_request(system: str, question: str, nodes: Sequence[MemoryNode], n: int, lang: str) -> LLMRequest:
    rule = insight_rule(question, nodes, n)
    return LLMRequest(
        kind="reflect_insight",
        system=system,
        user=render(
            lang,
            "insight",
            question=quote(question, 200),
            memories=numbered([x.description for x in nodes], ids=[x.id for x in nodes], limit=MEMORY_CHARS),
            n=n,
        ),
        schema={
            "type": "object",
            "properties": {
                "insights": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": n,
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string", "minLength": 8, "maxLength": 140},
                            "evidence": {
                                "type": "array",
                                "items": {"type": "integer", "enum": [x.id for x in nodes] or [0]},
                                "minItems": 1,
                                "maxItems": 2,
                            },
                        },
                        "required": ["text", "evidence"],
                    },
                }
            },
            "required": ["insights"],
        },
        max_tokens=300,
        fallback=lambda: {"insights": [{**x, "text": str(x["text"])[:140]} for x in rule]},
    )
