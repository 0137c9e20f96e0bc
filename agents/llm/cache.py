"""On-disk response cache: a rerun with a warm cache makes zero calls.

One JSON file per answer under ``<dir>/<key[:2]>/<key>.json``, where the key is the SHA-256 of
the backend, the model, the messages, the constraint (choices or schema) and the sampling
parameters. Files are written atomically (temp file + fsync + ``os.replace``), so concurrent
writers (threads, async tasks, processes) never leave a half-written entry; a corrupt entry is
ignored and rewritten. Only valid answers of the model are stored, never fallbacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agents.llm.base import LLMRequest, LLMResponse
from ga_env.checkpoint import atomic_write_bytes

_STORED = ("text", "choice", "data", "choice_logprobs", "prompt_tokens", "completion_tokens")


def cache_key(backend: str, model: str, request: LLMRequest) -> str:
    """SHA-256 hex digest of everything that determines the answer (not the fallback)."""
    payload = {
        "backend": backend,
        "model": model,
        "messages": request.messages(),
        "choices": list(request.choices),
        "schema": request.schema,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
        "want_logprobs": request.want_logprobs,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers on disk, with an in-memory layer for the current process."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> LLMResponse | None:
        """The cached answer for ``key`` (marked ``cached=True``), or None."""
        with self._lock:
            entry = self._memory.get(key)
        if entry is None:
            try:
                entry = json.loads(self._path(key).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                return None
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                return None
            with self._lock:
                self._memory[key] = entry
        return LLMResponse(
            text=entry["text"],
            choice=entry.get("choice"),
            data=entry.get("data"),
            choice_logprobs=entry.get("choice_logprobs"),
            prompt_tokens=int(entry.get("prompt_tokens") or 0),
            completion_tokens=int(entry.get("completion_tokens") or 0),
            cached=True,
        )

    def put(self, key: str, response: LLMResponse) -> None:
        """Store a valid answer atomically."""
        entry = {k: v for k, v in asdict(response).items() if k in _STORED}
        with self._lock:
            self._memory[key] = entry
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(entry, ensure_ascii=False).encode(), sync_dir=False)

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json"))
