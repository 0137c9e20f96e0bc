"""Usage meter: calls, tokens, estimated cost, cache hits, retries, fallbacks and faults by kind.

One meter per backend, shared by every thread and task that uses it (all updates take a lock).
An optional spending cap stops new calls before the estimated cost could pass it: each call
first books its worst-case cost (prompt size and ``max_tokens``), so calls in flight together
cannot overshoot; refused requests get their rule-based fallback, counted as ``spending_cap``
faults, and one warning says how to raise the cap.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("agents.llm")

# USD per million tokens (input, output), list prices of the providers as of 2025; local and
# self-hosted models cost nothing. Override with llm.price_in_per_mtok / llm.price_out_per_mtok.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "deepseek-chat": (0.27, 1.10),
    "deepseek-reasoner": (0.55, 2.19),
}


def price_of(model: str) -> tuple[float, float]:
    """``(input, output)`` USD per million tokens of ``model`` (0 for unknown/local models)."""
    return PRICES_PER_MTOK.get(model, (0.0, 0.0))


@dataclass
class UsageMeter:
    """Counts of one backend's use; thread-safe.

    Attributes:
        price_in_per_mtok: USD per million prompt tokens.
        price_out_per_mtok: USD per million completion tokens.
        max_cost_usd: spending cap (None = no cap); reached → no new calls.
        requests: requests answered (by any means).
        calls: attempts that reached the backend (retries included, cache hits excluded).
        prompt_tokens, completion_tokens: as reported by the backend.
        cached: requests answered from the on-disk cache.
        retries: attempts after a retryable fault.
        fallbacks: requests answered by their rule-based fallback.
        faults: faults by kind (see ``agents.llm.base.FAULT_KINDS``), every attempt counted.
        fallbacks_by_fault: fallbacks by the kind of the last fault.
        requests_by_kind: requests by cognition step (``LLMRequest.kind``).
        tokens_by_kind: prompt + completion tokens of the calls by cognition step.
    """

    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    max_cost_usd: float | None = None
    requests: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: int = 0
    retries: int = 0
    fallbacks: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    fallbacks_by_fault: Counter[str] = field(default_factory=Counter)
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    tokens_by_kind: Counter[str] = field(default_factory=Counter)
    seconds_by_kind: dict[str, float] = field(default_factory=dict, metadata={"state": False})
    """Wall seconds of the calls by cognition step (concurrent calls overlap). A measurement of this process, read by
    ``scripts/bench_generative.py``: not in :meth:`report`, nor in a checkpoint (a resumed run must equal an
    uninterrupted one)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _cap_warned: bool = field(default=False, repr=False, compare=False)
    _reserved: float = field(default=0.0, repr=False, compare=False)

    @property
    def cost_usd(self) -> float:
        """Estimated spend so far from the token counts and the price table."""
        return (self.prompt_tokens * self.price_in_per_mtok + self.completion_tokens * self.price_out_per_mtok) / 1e6

    def cap_reached(self) -> bool:
        """True when the spending cap forbids new calls (warns once, naming the fix)."""
        if self.max_cost_usd is None or self.cost_usd < self.max_cost_usd:
            return False
        self._warn_cap()
        return True

    def estimate_usd(self, prompt_bytes: int, max_tokens: int) -> float:
        """A call's worst-case cost: its prompt at one token per 3 bytes (+16), plus ``max_tokens`` out."""
        return ((prompt_bytes // 3 + 16) * self.price_in_per_mtok + max_tokens * self.price_out_per_mtok) / 1e6

    def reserve(self, estimate_usd: float) -> bool:
        """Book ``estimate_usd`` of the spending cap for a call about to start.

        False (with one warning) when the spend so far, the calls in flight and this one could
        pass the cap: then no call is made, so concurrent calls cannot overshoot it together.
        Always True without a cap. Pair every True with :meth:`release` once the call is over.
        """
        if self.max_cost_usd is None:
            return True
        with self._lock:
            ok = self.cost_usd + self._reserved + estimate_usd <= self.max_cost_usd
            if ok:
                self._reserved += estimate_usd
        if not ok:
            self._warn_cap()
        return ok

    def release(self, estimate_usd: float) -> None:
        """Give back a reservation (the call's real cost is counted by :meth:`add_call`)."""
        if self.max_cost_usd is None:
            return
        with self._lock:
            self._reserved = max(0.0, self._reserved - estimate_usd)

    def _warn_cap(self) -> None:
        with self._lock:
            if self._cap_warned:
                return
            self._cap_warned = True
        log.warning(
            "LLM spending cap reached: estimated $%.4f spent (+ calls in flight) of llm.max_cost_usd=$%.4f; new "
            "requests get the rule-based fallback. Fix: raise llm.max_cost_usd (or set it to null for no cap)",
            self.cost_usd,
            self.max_cost_usd,
        )

    def add_request(self, kind: str) -> None:
        with self._lock:
            self.requests += 1
            self.requests_by_kind[kind] += 1

    def add_call(
        self, prompt_tokens: int, completion_tokens: int, kind: str | None = None, seconds: float = 0.0
    ) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            if kind is not None:
                self.tokens_by_kind[kind] += prompt_tokens + completion_tokens
                self.seconds_by_kind[kind] = self.seconds_by_kind.get(kind, 0.0) + seconds

    def add_fault(self, kind: str, *, called: bool = True) -> None:
        with self._lock:
            self.faults[kind] += 1
            if called:
                self.calls += 1

    def add_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def add_cached(self) -> None:
        with self._lock:
            self.cached += 1

    def add_fallback(self, fault_kind: str) -> None:
        with self._lock:
            self.fallbacks += 1
            self.fallbacks_by_fault[fault_kind] += 1

    def report(self) -> dict[str, Any]:
        """A JSON-ready snapshot (the usage report of a run)."""
        with self._lock:
            return {
                "requests": self.requests,
                "calls": self.calls,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6),
                "max_cost_usd": self.max_cost_usd,
                "cached": self.cached,
                "retries": self.retries,
                "fallbacks": self.fallbacks,
                "faults": dict(sorted(self.faults.items())),
                "fallbacks_by_fault": dict(sorted(self.fallbacks_by_fault.items())),
                "requests_by_kind": dict(sorted(self.requests_by_kind.items())),
                "tokens_by_kind": dict(sorted(self.tokens_by_kind.items())),
            }

    def scalars(self, prefix: str = "llm") -> dict[str, float]:
        """Flat ``{tag: value}`` for TensorBoard (``llm/calls``, ``llm/faults/timeout``...)."""
        return report_scalars(self.report(), prefix)

    def summary(self) -> str:
        """One readable line."""
        return report_summary(self.report())


def report_summary(r: dict[str, Any]) -> str:
    """One readable line of a usage report."""
    faults = ", ".join(f"{k}={v}" for k, v in r["faults"].items()) or "none"
    return (
        f"{r['requests']} requests, {r['calls']} calls, {r['cached']} cached, {r['retries']} retries, "
        f"{r['fallbacks']} fallbacks; tokens {r['prompt_tokens']} in / {r['completion_tokens']} out; "
        f"~${r['cost_usd']:.4f}; faults: {faults}"
    )


_COUNTS = ("requests", "calls", "prompt_tokens", "completion_tokens", "cached", "retries", "fallbacks")
_BY_KIND = ("faults", "fallbacks_by_fault", "requests_by_kind", "tokens_by_kind")


def combine_reports(add: Sequence[dict[str, Any]], subtract: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The usage reports ``add`` summed, minus ``subtract`` (e.g. the counts before a run began).

    Combines the meters of several processes (a trainer and its Ray workers) into one report of
    :meth:`UsageMeter.report`'s layout (``max_cost_usd`` is the first report's).
    """
    out: dict[str, Any] = {k: 0 for k in _COUNTS}
    out["cost_usd"] = 0.0
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in _BY_KIND}
    for sign, reports in ((1, add), (-1, subtract)):
        for r in reports:
            for k in _COUNTS:
                out[k] += sign * int(r.get(k, 0))
            out["cost_usd"] += sign * float(r.get("cost_usd", 0.0))
            for k in _BY_KIND:
                by_kind[k].update({kind: sign * int(n) for kind, n in r.get(k, {}).items()})
    out["cost_usd"] = round(out["cost_usd"], 6)
    out["max_cost_usd"] = add[0].get("max_cost_usd") if add else None
    for k in _BY_KIND:
        out[k] = {kind: n for kind, n in sorted(by_kind[k].items()) if n}
    return out


def report_scalars(report: dict[str, Any], prefix: str = "llm") -> dict[str, float]:
    """Flat ``{tag: value}`` of a usage report for TensorBoard (``llm/calls``, ``llm/faults/timeout``...)."""
    out = {f"{prefix}/{k}": float(report[k]) for k in (*_COUNTS, "cost_usd")}
    for kind, n in report["faults"].items():
        out[f"{prefix}/faults/{kind}"] = float(n)
    return out
