"""``make_backend``: the one way to build a backend from an :class:`conf.schema.LLMConfig`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from agents.llm.cache import ResponseCache
from agents.llm.reliable import RawBackend, ReliableBackend
from agents.llm.scripted import ScriptedBackend
from agents.llm.usage import UsageMeter, price_of

if TYPE_CHECKING:
    from conf.schema import LLMConfig


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/generative-agents-rl/llm`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "generative-agents-rl" / "llm"


def make_backend(cfg: LLMConfig, cache_dir: str | os.PathLike[str] | None = None) -> ReliableBackend:
    """Build the configured backend wrapped in cache + usage meter + retries + fallback.

    Args:
        cfg: the validated LLM config (presets already resolved by its ``__post_init__``).
        cache_dir: cache folder (e.g. inside the run's results folder); overrides
            ``cfg.cache_dir``. The ``scripted`` backend is never cached (it is instant).

    Returns:
        A :class:`agents.llm.base.LLMBackend`. Call ``close()`` when done.
    """
    inner: RawBackend
    if cfg.backend == "scripted":
        inner = ScriptedBackend()
    elif cfg.backend == "openai":
        from agents.llm.openai_backend import OpenAIBackend

        assert cfg.base_url is not None and cfg.model is not None and cfg.structured is not None
        inner = OpenAIBackend(
            base_url=cfg.base_url,
            model=cfg.model,
            api_key_env=cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            structured=cfg.structured,
            max_tokens_param="max_completion_tokens" if cfg.preset == "openai" else "max_tokens",
            logprobs=cfg.logprobs,
            embed_model=cfg.embed_model,
        )
    elif cfg.backend == "local":
        from agents.llm.local import LocalBackend

        assert cfg.model_path is not None
        inner = LocalBackend(model_path=cfg.model_path, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, model=cfg.model)
    else:  # LLMConfig.__post_init__ already rejects it; kept for direct callers
        raise ValueError(f"config: llm.backend: {cfg.backend!r} is unknown. Fix: use scripted, openai or local")

    default_in, default_out = price_of(inner.model)
    usage = UsageMeter(
        price_in_per_mtok=default_in if cfg.price_in_per_mtok is None else cfg.price_in_per_mtok,
        price_out_per_mtok=default_out if cfg.price_out_per_mtok is None else cfg.price_out_per_mtok,
        max_cost_usd=cfg.max_cost_usd,
    )
    cache = None
    if cfg.cache and cfg.backend != "scripted":
        folder = cache_dir if cache_dir is not None else (cfg.cache_dir or default_cache_dir())
        cache = ResponseCache(folder)
    return ReliableBackend(
        inner,
        usage=usage,
        cache=cache,
        max_retries=0 if cfg.backend == "scripted" else cfg.max_retries,
        backoff_s=cfg.backoff_s,
        concurrency=cfg.concurrency if inner.concurrent else 1,
    )
