"""The ``openai`` backend: any OpenAI-compatible endpoint through the official ``openai`` client.

Works with OpenAI, DeepSeek, Ollama, vLLM, llama.cpp's server and the loopback server of
:mod:`agents.testing.loopback` (presets in :mod:`agents.llm.presets`). The API key is read from the
environment variable NAMED by the config when a client is created; it lives only inside the
``openai`` client object, never in this object's repr, the config, logs or the cache.

- Structured output: a JSON schema through ``response_format`` (``json_schema``; or
  ``json_object`` plus the schema, which llama.cpp's server enforces and the prompt repeats for
  providers that only have JSON mode); a choice is a schema ``{"choice": {"enum": choices}}``.
- Log-preferences over choices: from ``logprobs``/``top_logprobs`` of the token where the chosen
  value starts, when the server gives them. When they are reported, the returned choice is their
  argmax at temperature 0 (a server's grammar-constrained decoding can emit another option than
  the one its logprobs rank first: 3 of 48 decisions of llama.cpp's server did); the answer text
  is then ``{"choice": <argmax>}``. At temperature > 0 the server's draw is kept.
- ``calibrate``: contextual calibration of the choice log-preferences (Zhao et al. 2021,
  :mod:`agents.llm.calibrate`) against the same request with the user message ``"N/A"``, asked once
  per system prompt and choices (its tokens are counted in the call that asked it); needs logprobs.
  ``shuffle_options``: the choices are listed in a random order drawn from a hash of the request.
- The client's own retries are off (``max_retries=0``): the reliability layer retries with
  tenacity and counts every fault by kind. Timeouts are the client's (``timeout_s``), with a
  connect timeout of at most 5 s so that an unreachable host fails fast.
- Chat-template markers (``<|im_start|>``, ``[INST]``...) in message contents are neutralised
  (:func:`agents.llm.sanitize.neutralise_markers`) in :meth:`OpenAIBackend.params`, the one place
  where messages are built: the server renders its chat template and tokenizes with special
  tokens enabled, so untrusted text could otherwise open a new role (issue 14).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import openai

from agents.llm.base import LLMFault, LLMRequest, match_choice, normalise_logprobs, validate_answer
from agents.llm.calibrate import (
    ContentFreePriors,
    calibrate,
    content_free_request,
    in_order,
    sample_choice,
    shuffle_request,
)
from agents.llm.reliable import RawAnswer
from agents.llm.sanitize import neutralise_markers


def fault_of(exc: BaseException) -> LLMFault:
    """Map an exception of the ``openai`` client to a counted :class:`LLMFault`."""
    if isinstance(exc, LLMFault):
        return exc
    message = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, openai.APITimeoutError):
        return LLMFault("timeout", message)
    if isinstance(exc, openai.APIConnectionError):
        return LLMFault("connection", message)
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        kind = "http_429" if code == 429 else "http_5xx" if code >= 500 else "http_4xx"
        return LLMFault(kind, message)
    if isinstance(exc, openai.APIResponseValidationError | ValueError | KeyError | TypeError):
        return LLMFault("malformed_response", message)
    return LLMFault("backend_error", message)


class OpenAIBackend:
    """Raw ``openai`` backend (wrap it with :func:`agents.llm.make_backend`).

    Args:
        base_url: the ``/v1`` endpoint.
        model: chat model name.
        api_key_env: NAME of the environment variable holding the key (None: no key needed).
        timeout_s: timeout of one HTTP call.
        structured: ``json_schema`` or ``json_object`` (see the module docstring).
        max_tokens_param: ``max_tokens`` or ``max_completion_tokens``.
        logprobs: ask for token logprobs when a request wants choice log-preferences.
        embed_model: embedding model (None: :meth:`embed` returns None).
        calibrate: contextual calibration of choice log-preferences (``llm.calibrate``; with logprobs).
        shuffle_options: list the choices in a random (deterministic) order (``llm.shuffle_options``).
            With either option on, ``name`` becomes ``openai+calibrate``/``openai+shuffle``... so that
            cached answers of another setting are not reused (the cache key has the backend's name).
    """

    name = "openai"
    concurrent = True

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        structured: str = "json_schema",
        max_tokens_param: str = "max_tokens",
        logprobs: bool = True,
        embed_model: str | None = None,
        calibrate: bool = False,
        shuffle_options: bool = False,
    ) -> None:
        if structured not in ("json_schema", "json_object"):
            raise ValueError(f"OpenAIBackend: structured: {structured!r} is unknown. Fix: json_schema or json_object")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.structured = structured
        self.max_tokens_param = max_tokens_param
        self.logprobs = logprobs
        self.embed_model = embed_model
        self.calibrate = calibrate
        self.shuffle_options = shuffle_options
        self.priors = ContentFreePriors()
        if calibrate or shuffle_options:
            self.name = "+".join(["openai"] + ["calibrate"] * calibrate + ["shuffle"] * shuffle_options)
        self._sync: openai.OpenAI | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # --- clients ----------------------------------------------------------------------------
    def _key(self) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return key or "not-needed"  # local servers ignore the key; the client insists on one

    def secrets(self) -> tuple[str, ...]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return (key,) if key else ()

    def _timeout(self) -> openai.Timeout:
        """``timeout_s`` per call, but at most 5 s to connect: an unreachable host fails fast."""
        return openai.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s))  # httpx's, re-exported

    def _client(self) -> openai.OpenAI:
        with self._lock:
            if self._sync is None:
                self._sync = openai.OpenAI(
                    api_key=self._key(), base_url=self.base_url, timeout=self._timeout(), max_retries=0
                )
            return self._sync

    def _aclient(self) -> openai.AsyncOpenAI:
        # One async client per event loop: its connection pool belongs to the loop that opened it.
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self._key(), base_url=self.base_url, timeout=self._timeout(), max_retries=0
            )
            self._async[loop] = client
        return client

    async def aclose(self) -> None:
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
        self._async = weakref.WeakKeyDictionary()

    # --- chat -------------------------------------------------------------------------------
    def params(self, request: LLMRequest) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request``.

        Every message content goes through :func:`~agents.llm.sanitize.neutralise_markers`: no
        chat-template marker reaches the server, whichever part of the prompt it came from.
        """
        messages = request.messages()
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": request.temperature,
            self.max_tokens_param: request.max_tokens,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        schema = request.answer_schema()
        if schema is not None:
            if self.structured == "json_schema":
                name = re.sub(r"[^A-Za-z0-9_-]", "_", request.kind)[:64] or "answer"
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": _strict_ok(schema)},
                }
            else:
                params["response_format"] = {"type": "json_object", "schema": schema}
                messages[-1] = {
                    "role": "user",
                    "content": f"{messages[-1]['content']}\n\nAnswer with a JSON object matching this JSON schema: "
                    f"{json.dumps(schema)}",
                }
        if request.want_logprobs and self.logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = min(20, max(5, len(request.choices)))
        params["messages"] = [{**m, "content": neutralise_markers(m["content"])} for m in messages]
        return params

    def call(self, request: LLMRequest) -> RawAnswer:
        try:
            asked = self._asked(request)
            raw = self._parse(asked, self._client().chat.completions.create(**self.params(asked)))
            key, prior, free = self._prior(request, raw)
            extra = (0, 0)
            if free is not None:
                cf = self._parse(free, self._client().chat.completions.create(**self.params(free)))
                prior, extra = self._store_prior(key, cf)
            return self._finish(request, raw, prior, extra)
        except Exception as exc:
            raise fault_of(exc) from exc

    async def acall(self, request: LLMRequest) -> RawAnswer:
        try:
            asked = self._asked(request)
            raw = self._parse(asked, await self._aclient().chat.completions.create(**self.params(asked)))
            key, prior, free = self._prior(request, raw)
            extra = (0, 0)
            if free is not None:
                cf = self._parse(free, await self._aclient().chat.completions.create(**self.params(free)))
                prior, extra = self._store_prior(key, cf)
            return self._finish(request, raw, prior, extra)
        except Exception as exc:
            raise fault_of(exc) from exc

    def _asked(self, request: LLMRequest) -> LLMRequest:
        """What is sent for ``request``: its choices maybe shuffled, logprobs asked for when calibrating."""
        if not request.choices:
            return request
        asked = shuffle_request(request) if self.shuffle_options else request
        if self.calibrate and self.logprobs and not asked.want_logprobs:
            asked = dataclasses.replace(asked, want_logprobs=True)
        return asked

    def _prior(self, request: LLMRequest, raw: RawAnswer) -> tuple[Any, Any, LLMRequest | None]:
        """``(cache key, cached content-free prior, the content-free request to ask when it is not cached)``."""
        if not self._calibrates(request, raw):
            return None, None, None
        key, found, prior = self.priors.lookup(request)
        return key, prior, None if found else content_free_request(request)

    def _store_prior(self, key: Any, cf: RawAnswer) -> tuple[Any, tuple[int, int]]:
        """Cache the content-free answer's log-probs; returns them and the extra call's token counts."""
        return self.priors.store(key, cf.choice_logprobs), (cf.prompt_tokens, cf.completion_tokens)

    def _calibrates(self, request: LLMRequest, raw: RawAnswer) -> bool:
        return self.calibrate and bool(request.choices) and raw.choice_logprobs is not None

    def _finish(
        self, request: LLMRequest, raw: RawAnswer, prior: Mapping[str, float] | None, extra: tuple[int, int]
    ) -> RawAnswer:
        """The answer to ``request``: log-preferences in its order, calibrated, and the choice their argmax.

        At temperature 0 (or when calibrated), the choice is the argmax (or a draw, at temperature
        > 0) of the reported log-preferences, and the text says so when the server answered
        another option. An answer that is not a valid choice is returned unchanged (the
        reliability layer counts its fault).
        """
        raw.prompt_tokens += extra[0]
        raw.completion_tokens += extra[1]
        if not request.choices or raw.choice_logprobs is None:
            return raw
        logp = in_order(raw.choice_logprobs, request.choices)
        if prior is not None:
            logp = calibrate(logp, prior)
        raw.choice_logprobs = logp
        try:
            answered = validate_answer(request, raw.text, truncated=raw.truncated).choice
        except LLMFault:
            return raw
        if request.temperature == 0.0 or prior is not None:
            choice = sample_choice(logp, request.temperature, request.seed)
            if choice != answered:
                raw.text = json.dumps({"choice": choice})
        return raw

    def _parse(self, request: LLMRequest, completion: Any) -> RawAnswer:
        if not completion.choices:
            raise LLMFault("malformed_response", "the completion has no choices")
        first = completion.choices[0]
        text = first.message.content or ""
        usage = completion.usage
        logprobs = None
        if request.want_logprobs and first.logprobs is not None and first.logprobs.content:
            tokens = [
                (t.token, float(t.logprob), [(a.token, float(a.logprob)) for a in (t.top_logprobs or [])])
                for t in first.logprobs.content
            ]
            logprobs = choice_logprobs_from_tokens(tokens, text, request.choices)
        return RawAnswer(
            text=text,
            prompt_tokens=int(usage.prompt_tokens) if usage else 0,
            completion_tokens=int(usage.completion_tokens) if usage else 0,
            truncated=first.finish_reason == "length",
            choice_logprobs=logprobs,
        )

    # --- embeddings -------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32] | None:
        if self.embed_model is None:
            return None
        try:
            result = self._client().embeddings.create(model=self.embed_model, input=list(texts))
        except openai.NotFoundError:
            self.embed_model = None  # the server has no embedding endpoint: stop asking
            return None
        except Exception as exc:
            raise fault_of(exc) from exc
        rows = sorted(result.data, key=lambda d: d.index)
        return np.asarray([d.embedding for d in rows], dtype=np.float32)


def _strict_ok(schema: Mapping[str, Any]) -> bool:
    """OpenAI's strict mode needs every property required and no extra properties (top level checked)."""
    props = schema.get("properties", {})
    return schema.get("additionalProperties") is False and set(schema.get("required", [])) == set(props)


def choice_logprobs_from_tokens(
    tokens: Sequence[tuple[str, float, Sequence[tuple[str, float]]]], text: str, choices: Sequence[str]
) -> dict[str, float] | None:
    """Log-preferences over ``choices`` from OpenAI token logprobs.

    Finds the token where the chosen value starts (in ``{"choice": "Task"}`` or a bare ``Task``),
    maps each of its ``top_logprobs`` alternatives to the choice it begins (exact, else a unique
    prefix), and spreads the unobserved probability mass evenly over choices no alternative names.

    Args:
        tokens: ``(token, logprob, [(alternative, logprob), ...])`` in answer order.
        text: the answer (the concatenated tokens).
        choices: the allowed answers.

    Returns:
        Normalised log-preferences, or None when the value's token cannot be located.
    """
    start = _value_start(text, choices)
    if start is None:
        return None
    offset = 0
    for token, logprob, alternatives in tokens:
        if offset <= start < offset + len(token):
            head = text[offset:start]  # part of the token before the value (e.g. '"')
            alts = list(alternatives)
            if all(alt != token for alt, _ in alts):  # the emitted token counts even when not among the top ones
                alts.append((token, logprob))
            mass: dict[str, float] = {}
            for alt, lp in alts:
                if not alt.startswith(head):
                    continue
                piece = alt[len(head) :]
                target = match_choice(piece, choices) if piece.strip() else None
                if target is None:
                    starts = [c for c in choices if piece and c.casefold().startswith(piece.strip().casefold())]
                    target = starts[0] if len(starts) == 1 else None
                if target is not None:
                    mass[target] = float(np.logaddexp(mass.get(target, -math.inf), lp))
            if not mass:
                return None
            seen = float(np.exp(list(mass.values())).sum())
            missing = [c for c in choices if c not in mass]
            rest = max(1.0 - seen, 1e-6) / max(len(missing), 1)
            out = {c: mass.get(c, math.log(rest)) for c in choices}
            return normalise_logprobs(out)
        offset += len(token)
    return None


def _value_start(text: str, choices: Sequence[str]) -> int | None:
    """Character index where the chosen value begins in ``text``."""
    match = re.search(r'"choice"\s*:\s*"', text)
    if match:
        return match.end()
    stripped = text.lstrip()
    if match_choice(stripped, choices) is not None:
        return len(text) - len(stripped) + (1 if stripped[:1] in "\"'`" else 0)
    return None
