"""Decisions of small models worth measuring (issue 15): contextual calibration and shuffled options.

**Contextual calibration** (Zhao et al. 2021, "Calibrate before use: improving few-shot performance
of language models"). A small model prefers some answers whatever the question (SmolLM2-135M picks
the first listed option on every decide prompt). The bias is estimated by asking the same request
with its content removed, the *content-free* request (:func:`content_free_request`: the user
message replaced by ``"N/A"``, the system prompt, choices and constraint kept), and divided out:

    q_i ∝ p_i / p_cf_i,   i.e.   log q_i = log p_i − log p_cf_i − logsumexp_j(log p_j − log p_cf_j)

(the paper's ``W = diag(p_cf)^-1``, ``b = 0``). The returned choice is the argmax of the calibrated
log-probabilities (:func:`calibrate`, :func:`argmax_choice`). A backend computes the content-free
log-probabilities once per distinct content-free request and keeps them (:class:`ContentFreePriors`).

**Shuffled options** (:func:`shuffle_request`): the choices are listed in the prompt in a random order,
drawn from a hash of the request (its seed included), so reruns stay deterministic. Listings of the
choices in the user message (``move = ...; chat = ...`` or ``move, chat, task``: each line that names
every choice in the request's order, separated by one separator) are rewritten in that order, and
the choices are passed to the backend in it (a JSON schema's ``enum`` lists them). The answer is a
choice name either way; :func:`in_order` puts log-probabilities back in the request's order.

All functions here are pure (no model, no I/O); :class:`ContentFreePriors` is a thread-safe dict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from agents.llm.base import LLMRequest, normalise_logprobs

CONTENT_FREE = "N/A"
"""The content-free user message (Zhao et al. 2021 use "N/A", "[MASK]" and the empty string)."""

PRIOR_FLOOR = math.log(1e-9)
"""Content-free log-probabilities are floored here: an answer the model never gives without content
would otherwise get an unbounded boost."""

SEPARATORS: tuple[str, ...] = ("; ", ", ", " / ", " | ", "；", "，", "、", ";", ",")
"""Separators of a listing of the choices that :func:`reorder_listings` recognises (tried in this order)."""


# --- calibration maths ------------------------------------------------------------------------
def calibrate(logprobs: Mapping[str, float], prior: Mapping[str, float]) -> dict[str, float]:
    """Contextually calibrated log-probabilities: ``logprobs − prior``, renormalised over the choices.

    Args:
        logprobs: log-probabilities of the choices for the real request (normalised or not).
        prior: log-probabilities of the same choices for the content-free request; a choice missing
            from it counts as uniform. Values are floored at :data:`PRIOR_FLOOR`.

    Returns:
        Log-probabilities over the keys of ``logprobs`` (same order), ``logsumexp == 0``. A choice
        with ``-inf`` stays ``-inf``; a uniform prior leaves the (normalised) input unchanged.
    """
    if not logprobs:
        return {}
    base = normalise_logprobs(logprobs)
    uniform = -math.log(len(base))
    shifted = {}
    for c, lp in base.items():
        p = float(prior[c]) if c in prior else uniform
        p = max(p, PRIOR_FLOOR) if not math.isnan(p) else uniform
        shifted[c] = lp - p if math.isfinite(lp) else -math.inf
    return normalise_logprobs(shifted)


def argmax_choice(logprobs: Mapping[str, float], choices: Sequence[str] | None = None) -> str:
    """The choice with the highest log-probability (ties: the first in ``choices``, else in ``logprobs``)."""
    names = list(choices) if choices is not None else list(logprobs)
    if not names:
        raise ValueError("argmax_choice: no choices")
    return max(names, key=lambda c: (logprobs.get(c, -math.inf), -names.index(c)))


def sample_choice(logprobs: Mapping[str, float], temperature: float, seed: int | None) -> str:
    """The argmax at ``temperature == 0``, else a draw from ``softmax(logprobs / temperature)``."""
    names = list(logprobs)
    if temperature == 0.0:
        return argmax_choice(logprobs)
    z = np.array([logprobs[c] for c in names], dtype=np.float64) / temperature
    z = np.where(np.isfinite(z), z, -np.inf)
    p = np.exp(z - z.max())
    return names[int(np.random.default_rng(seed).choice(len(names), p=p / p.sum()))]


def entropy(logprobs: Mapping[str, float]) -> float:
    """Entropy in nats of the distribution ``exp(logprobs)`` (normalised first)."""
    values = np.array(list(normalise_logprobs(logprobs).values()), dtype=np.float64)
    p = np.exp(values)
    mask = p > 0
    return float(-(p[mask] * values[mask]).sum())


def in_order(logprobs: Mapping[str, float], choices: Sequence[str]) -> dict[str, float]:
    """``logprobs`` keyed in the order of ``choices`` (missing choices get ``-inf``)."""
    return {c: float(logprobs.get(c, -math.inf)) for c in choices}


# --- content-free requests ----------------------------------------------------------------------
def content_free_request(request: LLMRequest) -> LLMRequest:
    """The request with its user message replaced by :data:`CONTENT_FREE` (greedy, logprobs wanted)."""
    return dataclasses.replace(
        request,
        user=CONTENT_FREE,
        temperature=0.0,
        seed=None,
        want_logprobs=bool(request.choices),
        fallback=None,
    )


def content_free_key(request: LLMRequest) -> str:
    """What the content-free log-probabilities depend on: the system prompt, kind and choices (as a set)."""
    blob = json.dumps(
        [request.kind, request.system, sorted(request.choices), request.schema, request.max_tokens],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ContentFreePriors:
    """Content-free log-probabilities, computed once per :func:`content_free_key` (thread-safe).

    ``None`` is remembered too (the backend gave no log-probabilities for the content-free
    request): it is not asked again.
    """

    def __init__(self) -> None:
        self._priors: dict[str, dict[str, float] | None] = {}
        self._lock = threading.Lock()
        self.computed = 0

    def __len__(self) -> int:
        return len(self._priors)

    def lookup(self, request: LLMRequest) -> tuple[str, bool, dict[str, float] | None]:
        """``(key, found, prior)`` for ``request``."""
        key = content_free_key(request)
        with self._lock:
            if key in self._priors:
                return key, True, self._priors[key]
        return key, False, None

    def store(self, key: str, prior: Mapping[str, float] | None) -> dict[str, float] | None:
        value = None if prior is None else normalise_logprobs(prior)
        with self._lock:
            self._priors.setdefault(key, value)
            self.computed += 1
            return self._priors[key]

    def get(
        self, request: LLMRequest, score: Callable[[LLMRequest], Mapping[str, float] | None]
    ) -> dict[str, float] | None:
        """The prior of ``request``, computing ``score(content_free_request(request))`` on a miss."""
        key, found, prior = self.lookup(request)
        if found:
            return prior
        return self.store(key, score(content_free_request(request)))


# --- shuffled options ------------------------------------------------------------------------------
def hashed_permutation(key: str, n: int) -> list[int]:
    """A permutation of ``range(n)`` drawn from a SHA-256 hash of ``key``: the same key, the same order, in every
    process and after a resume."""
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def shuffle_order(request: LLMRequest) -> list[int]:
    """A permutation of ``range(len(request.choices))`` drawn from a hash of the request (seed included)."""
    blob = json.dumps(
        [request.seed, request.kind, request.system, request.user, list(request.choices)],
        ensure_ascii=False,
        default=str,
    )
    return hashed_permutation(blob, len(request.choices))


def reorder_listings(text: str, choices: Sequence[str], order: Sequence[int]) -> str:
    """``text`` with every listing of ``choices`` (in their order, one per line) rewritten in ``order``.

    A listing is a stretch of one line that starts at a whole-word ``choices[0]`` and whose items
    each start with the next choice and end with the same separator (one of :data:`SEPARATORS`);
    the last item runs to the end of the line. ``move = walk; chat = talk; task = work`` and
    ``move, chat, task`` are listings of ``(move, chat, task)``. Lines without one are unchanged.
    """
    if len(choices) < 2:
        return text
    return "\n".join(_reorder_line(line, choices, order) for line in text.split("\n"))


def _word_at(line: str, at: int, word: str) -> bool:
    if not line.startswith(word, at):
        return False
    before = line[at - 1] if at > 0 else " "
    after = line[at + len(word)] if at + len(word) < len(line) else " "
    return not (_is_word_char(before) and _is_word_char(word[0])) and not (
        _is_word_char(after) and _is_word_char(word[-1])
    )


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _reorder_line(line: str, choices: Sequence[str], order: Sequence[int]) -> str:
    first = choices[0]
    for start in (m.start() for m in re.finditer(re.escape(first), line)):
        if not _word_at(line, start, first):
            continue
        for sep in SEPARATORS:
            items = _items(line, start, choices, sep)
            if items is not None:
                return line[:start] + sep.join(items[i] for i in order)
    return line


def _items(line: str, start: int, choices: Sequence[str], sep: str) -> list[str] | None:
    """The items of a listing of ``choices`` separated by ``sep`` from ``start`` to the line's end, or None."""
    items: list[str] = []
    at = start
    for k in range(1, len(choices)):
        nxt = choices[k]
        found = -1
        search = at + len(choices[k - 1])
        while True:
            found = line.find(sep + nxt, search)
            if found < 0:
                return None
            if _word_at(line, found + len(sep), nxt):
                break
            search = found + 1
        item = line[at:found]
        if sep in item:  # the item would span another separator: not a clean listing
            return None
        items.append(item)
        at = found + len(sep)
    last = line[at:]
    if sep in last or not _word_at(line, at, choices[-1]):
        return None
    items.append(last)
    return items


def shuffle_request(request: LLMRequest) -> LLMRequest:
    """``request`` with its choices listed (in the prompt and in ``choices``) in :func:`shuffle_order`.

    The choice names are unchanged, so an answer needs no mapping; log-probabilities are put back
    in the request's order with :func:`in_order`.
    """
    if len(request.choices) < 2:
        return request
    order = shuffle_order(request)
    choices = tuple(request.choices[i] for i in order)
    return dataclasses.replace(request, user=reorder_listings(request.user, request.choices, order), choices=choices)
