"""Embedding throughput: ``python scripts/bench_embeddings.py`` prints one JSON line.

Sentences per second of the hashing embedder and of all-MiniLM-L6-v2 in NumPy
(``agents.embeddings.MiniLMEmbedder``) on typical memory descriptions, uncached, plus the
cosine similarity of sentence-transformers' documented example pair (0.7553 with the reference).
The measurement is :mod:`ga_sim.bench.embeddings`; this file only runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ga_sim.bench.embeddings import run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: measure, print one JSON line; returns the exit code."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(json.dumps(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
