"""The reliability layer every backend goes through: cache, usage meter, retries, fallback.

:class:`ReliableBackend` wraps a *raw* backend (``scripted``, ``openai`` or ``local``, see
:class:`RawBackend`) and implements :class:`agents.llm.base.LLMBackend`:

1. a warm on-disk cache answers without a call;
2. the spending cap, when reached, stops new calls;
3. each attempt's answer is validated against the request (:func:`agents.llm.base.validate_answer`);
4. retryable faults are retried with exponential backoff and jitter (tenacity);
5. after the last attempt, the request's rule-based ``fallback`` answers, and the fault is counted;
6. a simulation step's calls share a deadline (:meth:`ReliableBackend.begin_step`,
   ``llm.step_deadline_s``): calls still running then are cancelled and fall back (fault ``deadline``);
7. a circuit breaker: after ``breaker_failures`` endpoint failures in a row (refused or dropped
   connections, timeouts, a refused key, an unknown model) no more calls are made; with
   ``on_unavailable="stop"`` :attr:`ReliableBackend.unavailable` then tells the simulation to
   checkpoint and stop, with ``"fallback"`` one probe call every ``BREAKER_COOLDOWN_S`` tests whether
   the endpoint is back. :meth:`ReliableBackend.preflight` checks the endpoint before a run.

Nothing a backend does (timeouts, HTTP errors, malformed or out-of-choice answers, a library
exception) escapes :meth:`ReliableBackend.complete`: a long run never dies of one bad answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from agents.llm.base import (
    RETRYABLE_FAULTS,
    LLMFault,
    LLMRequest,
    LLMResponse,
    LLMUnavailable,
    default_answer,
    validate_answer,
)
from agents.llm.cache import ResponseCache, cache_key
from agents.llm.usage import UsageMeter

log = logging.getLogger("agents.llm")


@dataclass(kw_only=True)
class RawAnswer:
    """What a raw backend returns before validation.

    Attributes:
        text: the answer's content.
        prompt_tokens, completion_tokens: token counts of the call.
        truncated: the backend stopped at ``max_tokens``.
        choice_logprobs: log-preferences over the request's choices, when the backend gave them.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False
    choice_logprobs: dict[str, float] | None = None


class RawBackend(Protocol):
    """A backend without the reliability layer. Raises :class:`LLMFault` on any failure.

    Attributes:
        name: backend name (``openai``...).
        model: model name.
        concurrent: True when many :meth:`acall` may run at once (HTTP); False serialises them.
    """

    name: str
    model: str
    concurrent: bool

    def call(self, request: LLMRequest) -> RawAnswer: ...

    async def acall(self, request: LLMRequest) -> RawAnswer: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32] | None: ...

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or errors (API keys)."""
        ...

    async def aclose(self) -> None:
        """Release what belongs to the running event loop (async connections)."""
        ...

    def close(self) -> None: ...


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, LLMFault) and exc.kind in RETRYABLE_FAULTS


BREAKER_COOLDOWN_S = 30.0
"""With ``on_unavailable="fallback"``: seconds between probe calls while the breaker is open."""
_ENDPOINT_ERRORS = ("AuthenticationError", "PermissionDeniedError", "NotFoundError")


def endpoint_failure(fault: LLMFault) -> bool:
    """Whether ``fault`` says the endpoint itself is unusable (not one bad answer)."""
    if fault.kind in ("connection", "timeout", "deadline"):
        return True
    return fault.kind == "http_4xx" and any(name in str(fault) for name in _ENDPOINT_ERRORS)


class ReliableBackend:
    """Cache + usage meter + retries + fallback around a raw backend (see module docstring).

    Args:
        inner: the raw backend.
        usage: the meter (prices and spending cap).
        cache: the on-disk cache, or None for no caching.
        max_retries: attempts after the first on a retryable fault.
        backoff_s: first backoff delay; doubles per retry, plus up to ``backoff_s`` of jitter.
        backoff_max_s: longest backoff delay.
        concurrency: most requests in flight at once in :meth:`complete_many` / :meth:`acomplete`.
        step_deadline_s: seconds a step's calls may take after :meth:`begin_step` (None: no deadline).
        breaker_failures: endpoint failures in a row that open the circuit breaker.
        on_unavailable: ``stop`` (report :attr:`unavailable`) or ``fallback`` (probe now and then).
        endpoint: where the backend answers from (URL, model file), for messages.
    """

    def __init__(
        self,
        inner: RawBackend,
        *,
        usage: UsageMeter | None = None,
        cache: ResponseCache | None = None,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        concurrency: int = 16,
        step_deadline_s: float | None = None,
        breaker_failures: int = 8,
        on_unavailable: str = "stop",
        endpoint: str = "",
    ) -> None:
        if max_retries < 0 or backoff_s < 0 or concurrency <= 0 or breaker_failures <= 0:
            raise ValueError(
                "ReliableBackend: max_retries/backoff_s must be >= 0, concurrency and breaker_failures > 0"
            )
        if on_unavailable not in ("stop", "fallback"):
            raise ValueError(f"ReliableBackend: on_unavailable: {on_unavailable!r} is unknown; use stop or fallback")
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.usage = usage if usage is not None else UsageMeter()
        self.cache = cache
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.concurrency = concurrency
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._warned: set[str] = set()
        self.step_deadline_s = step_deadline_s
        self.breaker_failures = breaker_failures
        self.on_unavailable = on_unavailable
        self.endpoint = endpoint or inner.name
        self._deadline: float | None = None  # time.monotonic() when the current step's calls must end
        self._failures = 0  # endpoint failures in a row
        self._opened: LLMFault | None = None  # the failure that opened the breaker
        self._opened_at = 0.0
        self._last: LLMFault | None = None  # the latest endpoint failure
        self._step_ok = self._step_failed = 0  # calls of the current step that answered / failed at the endpoint
        self._breaker_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReliableBackend(name={self.name!r}, model={self.model!r}, cache={self.cache!r})"

    # --- the retry policy -------------------------------------------------------------------
    def _retry_kwargs(self) -> dict[str, Any]:
        def before_sleep(state: RetryCallState) -> None:
            self.usage.add_retry()

        return {
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)
            + wait_random(0, self.backoff_s),
            "retry": retry_if_exception(_retryable),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    # --- one request ------------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> LLMResponse:
        """Answer ``request`` (blocking); see the module docstring for the order of events.

        A concurrent (HTTP) backend answers on the private event loop, so that the step's deadline
        can cancel a hung call; a sequential one (in-process model) is not started after it.
        """
        if self.inner.concurrent and self._deadline is not None:
            return asyncio.run_coroutine_threadsafe(self.acomplete(request), self._background_loop()).result()
        self.usage.add_request(request.kind)
        key, hit = self._lookup(request)
        if hit is not None:
            return hit
        try:
            for attempt in Retrying(**self._retry_kwargs()):
                with attempt:
                    self._gate()
                    response = self._check(request, self._call_inner(request))
        except LLMFault as fault:
            return self._fallback(request, fault)
        self._store(key, response)
        return response

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        """Answer ``request`` from a running event loop, at most ``concurrency`` at once, by the step's deadline."""
        self.usage.add_request(request.kind)
        key, hit = self._lookup(request)
        if hit is not None:
            return hit
        remaining = None if self._deadline is None else self._deadline - time.monotonic()
        try:
            if remaining is None:
                response = await self._attempts(request)
            else:
                response = await asyncio.wait_for(self._attempts(request), max(remaining, 0.0))
        except TimeoutError:
            self.usage.add_fault("deadline", called=False)
            fault = LLMFault("deadline", f"the step's deadline (llm.step_deadline_s={self.step_deadline_s}) passed")
            self._note(fault)
            return self._fallback(request, fault)
        except LLMFault as fault:
            return self._fallback(request, fault)
        if key is not None:  # the atomic write fsyncs: keep it off the event loop
            await asyncio.to_thread(self._store, key, response)
        return response

    async def _attempts(self, request: LLMRequest) -> LLMResponse:
        async with self._semaphore():
            async for attempt in AsyncRetrying(**self._retry_kwargs()):
                with attempt:
                    self._gate()
                    return self._check(request, await self._acall_inner(request))
        raise AssertionError("unreachable: tenacity re-raises the last fault")  # pragma: no cover

    # --- step deadline, circuit breaker, preflight -------------------------------------------------
    def begin_step(self) -> None:
        """A step begins: its calls must end within ``step_deadline_s`` from now (until :meth:`end_step`)."""
        self._deadline = None if self.step_deadline_s is None else time.monotonic() + self.step_deadline_s
        with self._breaker_lock:
            self._step_ok = self._step_failed = 0

    def end_step(self) -> None:
        """The step ended: calls outside steps (the console's interviews) have no deadline.

        A step whose every call failed at the endpoint (refused, timed out, cut by the deadline)
        opens the breaker at once: a silent server stops a run after one step, not after many.
        """
        self._deadline = None
        with self._breaker_lock:
            if self._step_failed and not self._step_ok and self._opened is None and self._last is not None:
                self._open(self._last)

    @property
    def unavailable(self) -> LLMUnavailable | None:
        """The endpoint's failure once the breaker opened with ``on_unavailable="stop"`` (else None)."""
        fault = self._opened
        if fault is None or self.on_unavailable != "stop":
            return None
        return LLMUnavailable(
            self.endpoint,
            self.model,
            f"{self._failures} failures in a row, the last: {self._redact(str(fault)).rstrip('.')}",
            "start or repair the server (check llm.base_url, the API key variable and llm.model), then continue "
            "the run with --resume; or set llm.on_unavailable=fallback to go on with the rule-based fallback",
        )

    def _gate(self) -> None:
        """Before an attempt: refuse it when the step's deadline passed or the breaker is open."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.usage.add_fault("deadline", called=False)
            raise LLMFault("deadline", f"the step's deadline (llm.step_deadline_s={self.step_deadline_s}) passed")
        with self._breaker_lock:
            if self._opened is None:
                return
            if self.on_unavailable == "fallback" and time.monotonic() - self._opened_at >= BREAKER_COOLDOWN_S:
                self._opened_at = time.monotonic()  # half-open: this attempt probes the endpoint
                return
        self.usage.add_fault("unavailable", called=False)
        raise LLMFault("unavailable", f"the circuit breaker is open after {self._failures} endpoint failures in a row")

    def _note(self, fault: LLMFault | None) -> None:
        """Count endpoint failures in a row; open the breaker at ``breaker_failures``; close it on success."""
        with self._breaker_lock:
            if fault is None:
                self._failures, self._opened = 0, None
                self._step_ok += 1
                return
            if not endpoint_failure(fault):
                return
            self._failures += 1
            self._step_failed += 1
            self._last = fault
            if self._failures >= self.breaker_failures and self._opened is None:
                self._open(fault)

    def _open(self, fault: LLMFault) -> None:
        """Open the breaker (the lock is held)."""
        self._opened, self._opened_at = fault, time.monotonic()
        log.error(
            "%s (%s): %d endpoint failures in a row (%s); circuit breaker open (llm.on_unavailable=%s)",
            self.endpoint,
            self.model,
            self._failures,
            self._redact(str(fault)),
            self.on_unavailable,
        )

    def preflight(self, timeout_s: float = 10.0) -> None:
        """Check the endpoint before a run: reachable, the key accepted, the model served.

        Raises:
            LLMUnavailable: within about ``timeout_s``, naming the endpoint, the model, the failure and the fix.
        """
        from agents.llm.preflight import check

        check(self.inner, timeout_s)

    def complete_many(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Answer a batch, concurrently when the backend allows it; results in request order."""
        if not requests:
            return []
        if not self.inner.concurrent or len(requests) == 1:
            return [self.complete(r) for r in requests]
        future = asyncio.run_coroutine_threadsafe(self._gather(requests), self._background_loop())
        return future.result()

    async def _gather(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        return list(await asyncio.gather(*(self.acomplete(r) for r in requests)))

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32] | None:
        """Embeddings from the backend's endpoint; None when it has none or it failed (counted)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            for attempt in Retrying(**self._retry_kwargs()):
                with attempt:
                    return self.inner.embed(list(texts))
        except LLMFault as fault:
            self._warn(fault)
        except Exception as exc:  # a library bug must not end the run either
            self.usage.add_fault("backend_error")
            self._warn(LLMFault("backend_error", f"{type(exc).__name__}: {exc}"))
        return None

    def close(self) -> None:
        """Stop the background event loop and release the raw backend."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
            thread, self._loop_thread = self._loop_thread, None
        if loop is not None and thread is not None:
            try:  # close the async connections that live on the private loop
                asyncio.run_coroutine_threadsafe(self.inner.aclose(), loop).result(timeout=5)
            except Exception as exc:
                log.debug("closing %s's async client failed: %s", self.name, exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
        self.inner.close()

    def __enter__(self) -> ReliableBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------
    def _lookup(self, request: LLMRequest) -> tuple[str | None, LLMResponse | None]:
        if self.cache is None or not request.cacheable:
            return None, None
        key = cache_key(self.name, self.model, request)
        hit = self.cache.get(key)
        if hit is not None:
            self.usage.add_cached()
        return key, hit

    def _store(self, key: str | None, response: LLMResponse) -> None:
        if key is not None and self.cache is not None:
            self.cache.put(key, response)

    def _call_inner(self, request: LLMRequest) -> RawAnswer:
        estimate = self._book(request)
        t0 = time.perf_counter()
        try:
            raw = self.inner.call(request)
        except LLMFault as fault:
            self.usage.add_fault(fault.kind)
            self._note(fault)
            raise
        except Exception as exc:  # the raw backend should have mapped it; never let it out
            self.usage.add_fault("backend_error")
            raise LLMFault("backend_error", f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.usage.release(estimate)
        self._note(None)
        self.usage.add_call(raw.prompt_tokens, raw.completion_tokens, request.kind, time.perf_counter() - t0)
        return raw

    async def _acall_inner(self, request: LLMRequest) -> RawAnswer:
        estimate = self._book(request)
        t0 = time.perf_counter()
        try:
            raw = await self.inner.acall(request)
        except LLMFault as fault:
            self.usage.add_fault(fault.kind)
            self._note(fault)
            raise
        except Exception as exc:  # the raw backend should have mapped it; never let it out
            self.usage.add_fault("backend_error")
            raise LLMFault("backend_error", f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.usage.release(estimate)
        self._note(None)
        self.usage.add_call(raw.prompt_tokens, raw.completion_tokens, request.kind, time.perf_counter() - t0)
        return raw

    def _estimate_usd(self, request: LLMRequest) -> float:
        if self.usage.max_cost_usd is None:
            return 0.0
        size = len(request.system.encode()) + len(request.user.encode())
        if request.schema is not None:
            size += len(json.dumps(request.schema))
        return self.usage.estimate_usd(size, request.max_tokens)

    def _book(self, request: LLMRequest) -> float:
        """Book the call's worst-case cost under the spending cap (release it when the call ends)."""
        estimate = self._estimate_usd(request)
        if not self.usage.reserve(estimate):
            self.usage.add_fault("spending_cap", called=False)
            raise LLMFault("spending_cap", f"the estimated cost would pass llm.max_cost_usd={self.usage.max_cost_usd}")
        return estimate

    def _check(self, request: LLMRequest, raw: RawAnswer) -> LLMResponse:
        try:
            response = validate_answer(request, raw.text, truncated=raw.truncated)
        except LLMFault as fault:
            self.usage.add_fault(fault.kind, called=False)
            raise
        response.prompt_tokens = raw.prompt_tokens
        response.completion_tokens = raw.completion_tokens
        if request.want_logprobs and raw.choice_logprobs is not None:
            response.choice_logprobs = raw.choice_logprobs
        return response

    def _fallback(self, request: LLMRequest, fault: LLMFault) -> LLMResponse:
        """The request's rule-based answer after ``fault``; counted, never raises."""
        self.usage.add_fallback(fault.kind)
        self._warn(fault)
        value: Any
        try:
            value = request.fallback() if request.fallback is not None else default_answer(request)
        except Exception as exc:
            log.warning(
                "fallback of a %r request raised %s: %s; using the default answer",
                request.kind,
                type(exc).__name__,
                exc,
            )
            value = default_answer(request)
        error = self._redact(str(fault))
        if request.choices:
            choice = value if isinstance(value, str) and value in request.choices else None
            if choice is None:
                log.warning("fallback of a %r request gave %r, not one of %s", request.kind, value, request.choices)
                choice = request.choices[0]
            return LLMResponse(text=choice, choice=choice, fallback=True, error=error)
        if request.schema is not None:
            data = value if isinstance(value, dict) else {"text": str(value)}
            return LLMResponse(text=json.dumps(data, ensure_ascii=False), data=data, fallback=True, error=error)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return LLMResponse(text=text, fallback=True, error=error)

    def _warn(self, fault: LLMFault) -> None:
        # The first fault of each kind is a warning; the rest go to debug (a 30% fault rate
        # would otherwise flood the log). The counts are in ``usage``.
        level = logging.DEBUG if fault.kind in self._warned else logging.WARNING
        self._warned.add(fault.kind)
        log.log(level, "%s/%s: %s (falling back; counts in usage)", self.name, self.model, self._redact(str(fault)))

    def _redact(self, text: str) -> str:
        for secret in self.inner.secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        """A private event loop in a daemon thread, so that sync callers can run batches (even from a notebook)."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"llm-{self.name}", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop
