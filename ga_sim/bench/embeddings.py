"""Embedding throughput: the figures ``scripts/bench_embeddings.py`` prints as one JSON line.

Sentences per second of the hashing embedder and of all-MiniLM-L6-v2 in NumPy
(``agents.embeddings.MiniLMEmbedder``) on typical memory descriptions, uncached, plus the
cosine similarity of sentence-transformers' documented example pair (0.7553 with the reference).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from agents.embeddings import F32, HashingEmbedder, MiniLMEmbedder


def rate(embed: Callable[[Sequence[str]], F32], texts: list[str]) -> float:
    """Sentences per second of ``embed`` over ``texts`` (after a warm-up call on the first 8)."""
    embed(texts[:8])  # warm-up
    t0 = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - t0)


def run() -> dict[str, float]:
    """The figures: ``hashing_sentences_per_s``, ``minilm_sentences_per_s``, ``minilm_reference_pair_cosine``."""
    texts = [
        f"Persona {k} is working on the exhibition murals at the Lumen Gallery studio, step {k}" for k in range(128)
    ]
    out = {"hashing_sentences_per_s": round(rate(HashingEmbedder(512).embed, texts), 1)}
    m = MiniLMEmbedder()
    out["minilm_sentences_per_s"] = round(rate(m.embed, texts), 1)
    v = m.embed(["A man is eating food.", "A man is eating a piece of bread."])
    out["minilm_reference_pair_cosine"] = round(float(v[0] @ v[1]), 4)
    return out
