"""Presets of the ``openai`` backend: endpoints that speak the OpenAI chat-completions protocol.

``llm=openai llm.preset=ollama`` picks the base URL, default model, the NAME of the environment
variable holding the API key (never the key itself), how structured output is asked for, and the
embedding model. Any field can still be overridden (``llm.base_url=...``, ``llm.model=...``).
The preset names are validated by ``conf.schema`` (``PRESET_NAMES``); the values are applied when a
backend is built (:func:`agents.llm.factory.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass

from conf.schema import BACKENDS, STRUCTURED_MODES


@dataclass(frozen=True, kw_only=True)
class Preset:
    """Defaults of one OpenAI-compatible provider.

    Attributes:
        base_url: the ``/v1`` endpoint.
        model: default chat model.
        api_key_env: name of the environment variable holding the key (None = no key needed).
        structured: ``json_schema`` (OpenAI structured outputs) or ``json_object`` (JSON mode; the
            schema is sent inside ``response_format`` as llama.cpp's server accepts, and in the prompt).
        max_tokens_param: ``max_tokens`` or ``max_completion_tokens`` (OpenAI's newer name).
        embed_model: embedding model (None = no embedding endpoint).
    """

    base_url: str
    model: str
    api_key_env: str | None
    structured: str = "json_schema"
    max_tokens_param: str = "max_tokens"
    embed_model: str | None = None


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini",
        api_key_env="OPENAI_API_KEY",
        max_tokens_param="max_completion_tokens",
        embed_model="text-embedding-3-small",
    ),
    "deepseek": Preset(
        base_url="https://api.deepseek.com/v1",
        model="deepseek-chat",
        api_key_env="DEEPSEEK_API_KEY",
        structured="json_object",
    ),
    "ollama": Preset(
        base_url="http://127.0.0.1:11434/v1",
        model="qwen2.5:0.5b",
        api_key_env=None,
        embed_model="nomic-embed-text",
    ),
    "vllm": Preset(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-0.5B-Instruct", api_key_env=None),
    # llama.cpp's llama-server reads response_format json_schema (it builds a grammar from the schema): the
    # schema then stays out of the prompt, which json_object mode pasted into every request (~400 tokens).
    "llamacpp": Preset(
        base_url="http://127.0.0.1:8080/v1",
        model="local",
        api_key_env=None,
        structured="json_schema",
        embed_model=None,
    ),
    # The loopback server of agents.testing.loopback (tests, benchmarks, fault injection).
    "loopback": Preset(
        base_url="http://127.0.0.1:8000/v1",
        model="loopback",
        api_key_env=None,
        embed_model="loopback-embed",
    ),
}
"""Known presets by name."""

__all__ = ["BACKENDS", "PRESETS", "STRUCTURED_MODES", "Preset"]
