"""The LLM protocol: one request type, one response type, one backend contract.

Every cognition step of a persona (decide, rate poignancy, plan, converse, reflect, summarise,
judge...) asks its language model through :class:`LLMRequest` and gets an :class:`LLMResponse`.
A request carries a *constraint* on the answer (one of ``choices``, or a JSON object matching
``schema``, or free text) and a deterministic rule-based ``fallback`` computed by the caller from
the persona's own fields. The fallback is both the answer of the ``scripted`` backend (which is
NOT a language model) and what replaces an answer after the retries of a real backend fail.

Backends returned by :func:`agents.llm.make_backend` never raise on a bad or missing answer: the
fault is retried, then replaced by the fallback, and counted by kind in ``backend.usage``
(see :mod:`agents.llm.usage`).

Fault kinds (strings, used as counter keys): see :data:`FAULT_KINDS`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from agents.llm.usage import UsageMeter

FAULT_KINDS: tuple[str, ...] = (
    "timeout",  # no answer within the client timeout
    "connection",  # connection refused / dropped mid-answer
    "http_429",  # rate limited
    "http_5xx",  # server error (500, 502, 503...)
    "http_4xx",  # other client error (400, 401, 404...): not retried
    "malformed_response",  # the HTTP body is not a valid completion
    "malformed_json",  # the answer should be JSON and is not
    "schema_mismatch",  # JSON without a required key or with a wrong type
    "out_of_choices",  # the answer is not one of ``choices``
    "empty",  # no content
    "too_long",  # longer than ``max_tokens`` allows (or cut by the length limit)
    "backend_error",  # any other error of the backend library
    "spending_cap",  # the usage meter's cap is reached: no new calls
    "prompt_too_long",  # the prompt does not fit the model's context: not retried
    "deadline",  # the step's deadline (llm.step_deadline_s) passed: cancelled, not retried
    "unavailable",  # the circuit breaker is open (the endpoint failed again and again): no call made
    "semantic",  # fits the schema but means nothing (a copied placeholder, a place name as an activity...)
)
"""Every kind of fault the reliability layer counts."""

RETRYABLE_FAULTS: frozenset[str] = frozenset(FAULT_KINDS) - {
    "http_4xx",
    "spending_cap",
    "prompt_too_long",
    "deadline",
    "unavailable",
    "semantic",  # a greedy answer would only be given again
}
"""Faults worth another attempt (a 4xx such as a bad key or an unknown model will not heal)."""


class LLMUnavailable(RuntimeError):
    """The LLM endpoint cannot be used (preflight failed, or the circuit breaker opened).

    The message names the endpoint, the model, the failure and the fix; a simulation that meets it
    has checkpointed and can continue with ``--resume`` once the endpoint is back.
    """

    def __init__(self, endpoint: str, model: str, failure: str, fix: str) -> None:
        super().__init__(f"{endpoint}: llm model {model!r}: {failure}. Fix: {fix}")
        self.endpoint, self.model, self.failure, self.fix = endpoint, model, failure, fix


class LLMFault(Exception):
    """A failed or invalid answer of a backend; ``kind`` is one of :data:`FAULT_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True, kw_only=True)
class LLMRequest:
    """One question to a language model.

    Attributes:
        kind: which cognition step asks (``"decide"``, ``"poignancy"``, ``"plan_day"``,
            ``"plan_hour"``, ``"decompose"``, ``"converse"``, ``"reflect_focal"``,
            ``"reflect_insight"``, ``"summarise"``, ``"judge"``...). Used for usage counts and logs.
        system: system prompt (persona identity, group task, injected lessons). Put what stays the
            same across a persona's calls here and first, so local backends reuse their KV cache.
        user: user message (quoted data + the question).
        choices: when non-empty, the answer must be exactly one of these strings
            (``LLMResponse.choice``).
        schema: when set, the answer must be a JSON object matching this JSON schema
            (``LLMResponse.data``). Exclusive with ``choices``.
        max_tokens: completion budget; an answer longer than this is a ``too_long`` fault.
        temperature: sampling temperature (0 = greedy).
        seed: sampling seed (derive it from the env's generator); answers are cached only when
            ``temperature == 0`` or a seed is given.
        want_logprobs: ask for log-preferences over ``choices`` (``LLMResponse.choice_logprobs``)
            where the backend can give them.
        fallback: deterministic rule-based answer computed by the caller from the persona's own
            fields: a string (one of ``choices`` for a choice request, free text otherwise) or a
            dict (for a ``schema`` request). It is the ``scripted`` backend's answer and the
            replacement after failures. Not part of equality or the cache key.
        check: semantic validation of a JSON answer that matches ``schema``: returns what is wrong
            with it (a ``semantic`` fault: the answer is replaced by the fallback) or None. Not part
            of equality or the cache key.
    """

    kind: str
    system: str
    user: str
    choices: tuple[str, ...] = ()
    schema: Mapping[str, Any] | None = None
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    want_logprobs: bool = False
    fallback: Callable[[], str | dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    check: Callable[[dict[str, Any]], str | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("LLMRequest: kind: is empty. Fix: name the cognition step, e.g. kind='decide'")
        if self.choices and self.schema is not None:
            raise ValueError("LLMRequest: choices/schema: both set. Fix: constrain the answer with one of them")
        if len(set(self.choices)) != len(self.choices) or any(not c for c in self.choices):
            raise ValueError(
                f"LLMRequest: choices: {self.choices!r} has duplicates or empty strings. Fix: unique names"
            )
        if self.max_tokens <= 0:
            raise ValueError(f"LLMRequest: max_tokens: {self.max_tokens} must be > 0. Fix: e.g. 128")
        if not (0.0 <= self.temperature <= 2.0):
            raise ValueError(f"LLMRequest: temperature: {self.temperature} is not in [0, 2]. Fix: e.g. 0.0")
        if self.want_logprobs and not self.choices:
            raise ValueError("LLMRequest: want_logprobs: needs choices. Fix: set choices or want_logprobs=False")

    @property
    def constraint(self) -> str:
        """``"choice"``, ``"json"`` or ``"text"``."""
        if self.choices:
            return "choice"
        return "json" if self.schema is not None else "text"

    def messages(self) -> list[dict[str, str]]:
        """OpenAI-style chat messages (system first, when non-empty)."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": self.user})
        return msgs

    def answer_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must match: ``schema``, or ``{"choice": enum}`` for choices."""
        if self.choices:
            return choice_schema(self.choices)
        return dict(self.schema) if self.schema is not None else None

    @property
    def cacheable(self) -> bool:
        """Deterministic requests only: a cached sample would freeze a random draw."""
        return self.temperature == 0.0 or self.seed is not None


@dataclass(kw_only=True)
class LLMResponse:
    """The answer to an :class:`LLMRequest`.

    Attributes:
        text: the raw answer text (for a fallback: the fallback rendered as text).
        choice: the chosen entry of ``request.choices`` (choice requests only).
        data: the parsed JSON object (schema requests only).
        choice_logprobs: log-preferences over ``request.choices``, normalised so that
            ``logsumexp == 0``, when the request wanted them and the backend gave them.
        prompt_tokens: tokens of the prompt, as counted by the backend (0 when unknown).
        completion_tokens: tokens of the answer.
        cached: answered from the on-disk cache (no call made).
        fallback: the answer is the request's rule-based fallback, not the backend's.
        error: for a fallback, the last fault (``"<kind>: <message>"``); else None.
    """

    text: str
    choice: str | None = None
    data: dict[str, Any] | None = None
    choice_logprobs: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    fallback: bool = False
    error: str | None = None


@runtime_checkable
class LLMBackend(Protocol):
    """A language model behind the reliability layer (cache, usage meter, retries, fallback).

    Attributes:
        name: ``"scripted"``, ``"openai"`` or ``"local"``.
        model: the model's name (e.g. ``"gpt-4o-mini"``, ``"SmolLM2-135M-Instruct"``).
        usage: calls, tokens, cost, cache hits, retries, fallbacks and faults by kind.
    """

    name: str
    model: str
    usage: UsageMeter

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Answer one request (blocking). Never raises on a failed answer: falls back."""
        ...

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        """Answer one request from a running event loop."""
        ...

    def complete_many(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Answer a batch concurrently (asyncio + the backend's concurrency limit); same order."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32] | None:
        """``(N, D)`` embeddings, or None when the backend has no embedding endpoint."""
        ...

    def close(self) -> None:
        """Release connections, threads and model memory."""
        ...

    def begin_step(self) -> None:
        """A simulation step begins: its calls share the step's deadline (``llm.step_deadline_s``)."""
        ...

    def end_step(self) -> None:
        """The step ended: later calls have no deadline."""
        ...

    @property
    def unavailable(self) -> LLMUnavailable | None:
        """Set once the endpoint is judged unusable (circuit breaker open, ``llm.on_unavailable=stop``)."""
        ...


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of a constrained choice: ``{"choice": <one of choices>}``."""
    return {
        "type": "object",
        "properties": {"choice": {"type": "string", "enum": list(choices)}},
        "required": ["choice"],
        "additionalProperties": False,
    }


def max_answer_chars(request: LLMRequest) -> int:
    """Longest acceptable answer in characters (generous: 8 characters per token)."""
    return 8 * request.max_tokens + 64


def match_choice(text: str, choices: Sequence[str]) -> str | None:
    """The entry of ``choices`` that ``text`` names: exact, or up to case, quotes and punctuation."""
    if text in choices:
        return text
    cleaned = text.strip().strip("\"'`*.:!").strip().casefold()
    for c in choices:
        if c.casefold() == cleaned:
            return c
    return None


def validate_answer(request: LLMRequest, text: str, *, truncated: bool = False) -> LLMResponse:
    """Check a raw answer against the request's constraint and parse it.

    Args:
        request: what was asked.
        text: the model's answer.
        truncated: the backend stopped at the length limit (a fault for choice/JSON answers).

    Returns:
        A response with ``text`` and, for constrained requests, ``choice`` or ``data``.

    Raises:
        LLMFault: ``empty``, ``too_long``, ``malformed_json``, ``schema_mismatch``, ``semantic`` or
            ``out_of_choices``.
    """
    if not text or not text.strip():
        raise LLMFault("empty", "the answer has no content")
    if len(text) > max_answer_chars(request) or (truncated and request.constraint != "text"):
        raise LLMFault("too_long", f"{len(text)} characters for max_tokens={request.max_tokens}")
    if request.constraint == "text":
        return LLMResponse(text=text)
    if request.constraint == "choice":
        choice = match_choice(text, request.choices)
        if choice is None:  # JSON {"choice": ...} as asked through a schema
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("choice"), str):
                choice = match_choice(obj["choice"], request.choices)
                if choice is None:
                    raise LLMFault("out_of_choices", f"{obj['choice'][:40]!r} is not one of {request.choices}")
            elif text.lstrip().startswith("{"):
                raise LLMFault("malformed_json", f"not a JSON object with a 'choice': {text[:60]!r}")
            else:
                raise LLMFault("out_of_choices", f"{text[:40]!r} is not one of {request.choices}")
        return LLMResponse(text=text, choice=choice)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LLMFault("malformed_json", f"{exc.msg} at {exc.pos}: {text[:60]!r}") from None
    if not isinstance(obj, dict):
        raise LLMFault("schema_mismatch", f"expected a JSON object, got {type(obj).__name__}")
    problem = schema_problem(obj, request.schema or {})
    if problem:
        raise LLMFault("schema_mismatch", problem)
    if request.check is not None:
        problem = request.check(obj)
        if problem:
            raise LLMFault("semantic", problem[:200])
    return LLMResponse(text=text, data=obj)


def schema_problem(obj: Any, schema: Mapping[str, Any]) -> str | None:
    """The first way ``obj`` violates ``schema`` (JSON Schema, via ``jsonschema``), or None."""
    import jsonschema

    try:
        validator = _validator(json.dumps(schema, sort_keys=True, default=str))
    except jsonschema.SchemaError as exc:  # the caller's schema is wrong, not the answer
        raise ValueError(f"LLMRequest: schema: invalid JSON schema ({exc.message}). Fix: the request's schema") from exc
    if validator.is_valid(obj):  # the common case: no need to rank the errors
        return None
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:120]}"


@functools.lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    """A checked validator of one schema, built once (checking a schema costs far more than using it)."""
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def default_answer(request: LLMRequest) -> str | dict[str, Any]:
    """A deterministic answer when a request has no ``fallback``: first choice, minimal object, or a note."""
    if request.choices:
        return request.choices[0]
    if request.schema is not None:
        return minimal_instance(request.schema)
    return f"(no answer: no rule-based fallback for {request.kind!r})"


def minimal_instance(schema: Mapping[str, Any]) -> Any:
    """The simplest value matching a (simple) JSON schema: first enum/const, zero, empty, all required keys."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props.get(k, {})) for k in schema.get("required", list(props))}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(int(schema.get("minItems", 0)))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        return math.ceil(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "" if not schema.get("minLength") else "x" * int(schema["minLength"])


def normalise_logprobs(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Shift log-preferences so that they sum (in probability) to 1 over the choices."""
    values = np.array(list(logprobs.values()), dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {k: -math.log(len(values)) for k in logprobs}
    m = finite.max()
    lse = m + math.log(float(np.exp(finite - m).sum()))
    return {k: float(v - lse) for k, v in zip(logprobs, values, strict=True)}
