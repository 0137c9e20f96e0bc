"""Retrieve for a cognition step: focal points → the persona's most relevant memories, as quoted text.

The scoring itself (recency, importance, relevance, task resonance) lives in
:meth:`agents.memory.MemoryStream.retrieve`, vectorised over memories and focal points.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from agents.cognition.prompts import numbered
from agents.memory import MemoryNode, MemoryStream

MEMORY_CHARS = 120
"""Characters of each memory quoted in a prompt (a day's plan runs to 300 and more; every token of a prompt costs
about 5 ms on the offline model)."""


def retrieve_lines(
    memory: MemoryStream,
    focal_points: Sequence[str],
    now: dt.datetime,
    *,
    task: str,
    k: int,
    limit: int = MEMORY_CHARS,
) -> tuple[list[MemoryNode], str]:
    """The ``k`` best memories over all focal points (deduplicated, best first) and their quoted list (each cut to
    ``limit`` characters)."""
    if not focal_points:
        return [], numbered([])
    found = memory.retrieve(focal_points, now, task=task, top_k=k)
    nodes: dict[int, MemoryNode] = {}
    for rank in range(k):  # interleave the focal points' rankings
        for fp in focal_points:
            if rank < len(found[fp]):
                nodes.setdefault(found[fp][rank].id, found[fp][rank])
    best = list(nodes.values())[:k]
    return best, numbered([n.description for n in best], limit=limit)
