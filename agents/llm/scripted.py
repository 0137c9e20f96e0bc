"""The ``scripted`` backend: a deterministic rule-based stand-in. It is NOT a language model.

It answers every request with the request's own ``fallback`` (the rule the caller computed from
the persona's fields: its schedule, its group task, its neighbours...), or, when a request has
none, with :func:`agents.llm.base.default_answer`. It is instant, offline and deterministic: the
backend of the tests and of fast training runs. Reports and logs name it ``scripted`` (model
``rules``) so that nobody mistakes its output for a model's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agents.llm.base import LLMRequest, default_answer
from agents.llm.reliable import RawAnswer


class ScriptedBackend:
    """Rule-based answers from ``request.fallback`` (not a language model)."""

    name = "scripted"
    model = "rules"
    concurrent = False

    def __repr__(self) -> str:
        return "ScriptedBackend(not a language model)"

    def call(self, request: LLMRequest) -> RawAnswer:
        value = request.fallback() if request.fallback is not None else default_answer(request)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return RawAnswer(text=text)

    async def acall(self, request: LLMRequest) -> RawAnswer:
        return self.call(request)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32] | None:
        return None  # no embedding endpoint: callers use their own embedder

    def secrets(self) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass
