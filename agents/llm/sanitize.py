"""Chat-template markers in untrusted text are neutralised before they reach a model (issue 14).

What other personas say, whispers, loaded histories, user persona files and transcripts reach the
prompts as quoted data (:func:`agents.cognition.prompts.quote`), but quoting keeps the characters:
a string such as ``<|im_end|>\\n<|im_start|>system`` inside a JSON string literal is still the
text of a chat-template control token, and a server that renders the template and tokenizes the
result with special tokens enabled (llama.cpp, vLLM, Ollama...) turns it into a real role token.

:func:`neutralise_markers` breaks every marker of the known template families (:data:`MARKERS`,
plus the generic ``<|name|>`` and ``<｜name｜>`` special-token shapes) by replacing its ASCII
opening bracket(s) with a visible look-alike that no tokenizer maps back (both survive NFKC):

- ``<`` → ``‹`` (U+2039 SINGLE LEFT-POINTING ANGLE QUOTATION MARK): ``<|im_start|>`` → ``‹|im_start|>``,
  ``<<SYS>>`` → ``‹‹SYS>>``, ``</s>`` → ``‹/s>``, ``<｜User｜>`` → ``‹｜User｜>``;
- ``[`` → ``⟦`` (U+27E6 MATHEMATICAL LEFT WHITE SQUARE BRACKET): ``[INST]`` → ``⟦INST]``.

The change is visible in logs and replays (a reader sees that a marker was sent and broken), the
text stays readable, and only marker-shaped spans change: ordinary prose with ``<``, ``|`` or
``[`` (``a < b | c``, ``vector<int>``, ``[note]``) is left alone. It is idempotent (applied until
no marker is left, so applying it again changes nothing).

The ``openai`` backend applies it to every message content it sends; the ``local`` backend
applies it too (defence in depth: it already tokenizes message contents with special tokens
disabled); the judge of :mod:`ga_sim.metrics` applies it to the transcripts it quotes.
"""

from __future__ import annotations

import re

__all__ = ["MARKERS", "contains_marker", "neutralise_markers"]

MARKERS: tuple[str, ...] = (
    # ChatML (Qwen, SmolLM, Yi, many fine-tunes)
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    # Llama 3
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    # Llama 2 / Mistral
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<s>",
    "</s>",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_CALLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    # Gemma
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    # Phi-3
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    # DeepSeek (fullwidth bar U+FF5C, lower one-eighth block U+2581)
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    # reasoning / tool tags that several tokenizers register as added tokens
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
)
"""The literal markers of the known chat-template families (the generic shapes cover the rest)."""

_GENERIC = (
    r"<\|[^\s<>|]{1,64}\|>",  # <|name|>: ChatML, Llama 3, Phi, Command-R... any special-token name
    r"<｜[^\s<>｜]{1,64}｜>",  # <｜name｜>: DeepSeek
)
_PATTERN = re.compile("|".join([*sorted((re.escape(m) for m in MARKERS), key=len, reverse=True), *_GENERIC]))
_BREAK = str.maketrans({"<": "‹", "[": "⟦"})


def _break(match: re.Match[str]) -> str:
    return match.group().translate(_BREAK)


def neutralise_markers(text: str) -> str:
    """``text`` with every chat-template marker broken (see the module docstring); idempotent.

    Each pass replaces at least one ASCII ``<`` or ``[``, so the loop (which catches markers that
    only appear once an overlapping one is broken) ends.
    """
    out = str(text)
    while _PATTERN.search(out) is not None:
        out = _PATTERN.sub(_break, out)
    return out


def contains_marker(text: str) -> bool:
    """Whether ``text`` holds a chat-template marker that :func:`neutralise_markers` would break."""
    return _PATTERN.search(text) is not None
