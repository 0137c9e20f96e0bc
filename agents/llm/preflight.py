"""Preflight of an LLM endpoint: a run learns in seconds, not after an hour of fallbacks, that its
server is down, its key refused or its model missing.

:func:`check` is what :meth:`agents.llm.reliable.ReliableBackend.preflight` runs. For the
``openai`` backend it validates the URL (scheme, host, port), then asks ``GET <base_url>/models``
(the standard library's HTTP client, ``timeout_s`` per request): a refused connection, an unknown host, a
silent server, a 401/403 (key) or a 404 (not an OpenAI-compatible ``/v1`` endpoint) fail. When the
listed models do not include ``llm.model``, a one-token chat completion decides (single-model
servers such as llama.cpp's accept any name; vLLM and Ollama answer 404 for an unknown model).
The ``scripted`` and ``local`` backends need nothing (a local model is loaded when it is built).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from agents.llm.base import LLMUnavailable


@dataclass
class _Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _request(url: str, headers: dict[str, str], timeout_s: float, body: dict[str, Any] | None = None) -> _Answer:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return _Answer(resp.status, resp.read(1 << 20).decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return _Answer(e.code, e.read(4096).decode("utf-8", "replace"))


def check(inner: Any, timeout_s: float = 10.0) -> None:
    """Raise :class:`LLMUnavailable` when ``inner`` (a raw backend) cannot answer.

    Args:
        inner: the raw backend (``OpenAIBackend`` has ``base_url``, ``model``, ``api_key_env``).
        timeout_s: the longest the check may take.
    """
    if getattr(inner, "name", "") != "openai":
        return
    base_url, model = str(inner.base_url), str(inner.model)
    key_env = inner.api_key_env
    fail = _failer(base_url, model)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https"):
        fail(
            f"the URL's scheme {parts.scheme or '(none)'!r} is not http or https",
            "set llm.base_url=http(s)://HOST:PORT/v1",
        )
    try:
        port = parts.port
    except ValueError:
        fail("the URL's port is not a number in 1..65535", "set llm.base_url=http(s)://HOST:PORT/v1")
    if not parts.hostname:
        fail("the URL has no host", "set llm.base_url=http(s)://HOST:PORT/v1")
    del port
    key = os.environ.get(key_env) if key_env else None
    headers = {"Authorization": f"Bearer {key or 'not-needed'}"}
    url = base_url.rstrip("/")
    try:
        listing = _request(f"{url}/models", headers, timeout_s)
        _status(listing, fail, key_env, what="GET /models")
        ids = _model_ids(listing)
        if model in ids:
            return
        probe = _request(
            f"{url}/chat/completions",
            headers,
            timeout_s,
            {"model": model, "messages": [{"role": "user", "content": "ok"}], "max_tokens": 1},
        )
        if probe.status_code == 404 or (probe.status_code == 400 and "model" in probe.text.lower()):
            listed = ", ".join(sorted(ids)[:8]) or "none listed"
            fail(
                f"the server does not serve this model (it lists: {listed})",
                "set llm.model to a served model, or pull/load it on the server (e.g. ollama pull MODEL)",
            )
        _status(probe, fail, key_env, what="a one-token completion")
    except TimeoutError:
        fail(
            f"no answer within {timeout_s:g} s",
            "check that the server is running and not overloaded, or raise llm.timeout_s",
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            fail(f"no answer within {timeout_s:g} s", "check that the server is running and not overloaded")
        fail(
            f"cannot connect ({type(reason).__name__}: {reason})",
            "start the server (e.g. ollama serve, vllm serve, llama-server) or fix llm.base_url",
        )


def _failer(base_url: str, model: str) -> Any:
    def fail(failure: str, fix: str) -> NoReturn:
        raise LLMUnavailable(base_url, model, failure, fix)

    return fail


def _status(response: _Answer, fail: Any, key_env: str | None, *, what: str) -> None:
    code = response.status_code
    if code in (401, 403):
        fix = (
            f"export {key_env}=<a valid key>" if key_env else "set llm.api_key_env=NAME of the variable holding the key"
        )
        fail(f"{what} answered {code}: the API key was refused", fix)
    if code == 404 and what == "GET /models":
        fail(
            f"{what} answered 404: this is not an OpenAI-compatible /v1 endpoint",
            "set llm.base_url to the server's /v1 URL",
        )
    if code >= 400:
        fail(f"{what} answered HTTP {code}: {response.text[:200]!r}", "check the server's log")


def _model_ids(response: _Answer) -> set[str]:
    try:
        data = response.json().get("data", [])
        return {str(m.get("id")) for m in data if isinstance(m, dict)}
    except (ValueError, AttributeError):
        return set()
