"""The ``openai`` backend through the REAL ``openai`` client against the loopback HTTP server.

Covers sync, async and concurrent calls, structured output (json_schema and llama.cpp-style
json_object), choice logprobs, embeddings, the on-disk cache, the spending cap, every injected
fault kind (retried or fallen back, and counted), and that a planted API key never leaks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from agents.llm import LLMRequest, ReliableBackend, make_backend
from agents.testing.loopback import FAULTS, LoopbackServer
from conf.schema import LLMConfig

ACTIONS = ("Move", "Chat", "Task", "Research")
PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "plan": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
        "start_hour": {"type": "integer", "minimum": 6, "maximum": 10},
        "mood": {"type": "string", "enum": ["calm", "eager"]},
    },
    "required": ["plan", "start_hour", "mood"],
    "additionalProperties": False,
}


def decide(i: int = 0, fallback: str = "Task", logprobs: bool = True) -> LLMRequest:
    return LLMRequest(
        kind="decide",
        system=f"You are persona {i} of Willowbrook.",
        user="You are at the cafe. Choose Move, Chat, Task or Research.",
        choices=ACTIONS,
        want_logprobs=logprobs,
        fallback=lambda: fallback,
    )


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def backend_for(srv: LoopbackServer, tmp_path: Path | None = None, **overrides: object) -> ReliableBackend:
    kwargs: dict[str, object] = {
        "backend": "openai",
        "preset": "loopback",
        "base_url": srv.base_url,
        "cache": tmp_path is not None,
        "backoff_s": 0.0,
        "timeout_s": 5.0,
    }
    kwargs.update(overrides)
    return make_backend(LLMConfig(**kwargs), cache_dir=tmp_path)  # type: ignore[arg-type]


def test_server_binds_loopback_and_speaks_the_protocol(server: LoopbackServer) -> None:
    assert server.host == "127.0.0.1" and server.port > 0
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["loopback", "loopback-embed"]
    out = client.chat.completions.create(model="loopback", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content and out.usage is not None and out.usage.completion_tokens > 0
    again = client.chat.completions.create(model="loopback", messages=[{"role": "user", "content": "hi"}])
    assert again.choices[0].message.content == out.choices[0].message.content  # deterministic
    with pytest.raises(openai.NotFoundError):
        client.post("/nowhere", cast_to=object, body={})


def test_choices_schema_and_logprobs(server: LoopbackServer) -> None:
    backend = backend_for(server)
    r = backend.complete(decide())
    assert r.choice in ACTIONS and not r.fallback
    assert r.choice_logprobs is not None and set(r.choice_logprobs) == set(ACTIONS)
    assert math.isclose(sum(math.exp(v) for v in r.choice_logprobs.values()), 1.0, rel_tol=1e-6)
    assert max(r.choice_logprobs, key=r.choice_logprobs.__getitem__) == r.choice
    assert r.prompt_tokens > 0 and r.completion_tokens > 0

    plan = backend.complete(LLMRequest(kind="plan_day", system="s", user="Plan your day.", schema=PLAN_SCHEMA))
    assert plan.data is not None and 6 <= plan.data["start_hour"] <= 10 and plan.data["mood"] in ("calm", "eager")
    text = backend.complete(LLMRequest(kind="converse", system="s", user="Say hello."))
    assert text.text.startswith("Loopback answer") and text.choice is None and text.data is None
    assert backend.usage.fallbacks == 0 and backend.usage.requests == 3
    backend.close()


def test_json_object_mode_sends_the_schema_in_the_prompt(server: LoopbackServer) -> None:  # e.g. deepseek
    backend = backend_for(server, structured="json_object")
    params = backend.inner.params(LLMRequest(kind="plan", system="s", user="u", schema=PLAN_SCHEMA))  # type: ignore[attr-defined]
    assert params["response_format"] == {"type": "json_object", "schema": PLAN_SCHEMA}
    assert "matching this JSON schema" in params["messages"][-1]["content"]
    r = backend.complete(LLMRequest(kind="plan", system="s", user="u", schema=PLAN_SCHEMA))
    assert r.data is not None and not r.fallback
    backend.close()


def test_async_calls(server: LoopbackServer) -> None:
    backend = backend_for(server)

    async def run() -> list[str | None]:
        results = await asyncio.gather(*(backend.acomplete(decide(i)) for i in range(6)))
        return [r.choice for r in results]

    choices = asyncio.run(run())
    assert all(c in ACTIONS for c in choices)
    assert choices == [backend.complete(decide(i)).choice for i in range(6)]  # sync and async agree
    backend.close()


def test_complete_many_is_concurrent_and_ordered() -> None:
    with LoopbackServer(latency_s=0.3) as srv:
        backend = backend_for(srv, concurrency=32)
        requests = [decide(i) for i in range(25)]
        results = backend.complete_many(requests)
        assert len(results) == 25 and all(r.choice in ACTIONS and not r.fallback for r in results)
        assert [r.choice for r in results[:4]] == [backend.complete(r).choice for r in requests[:4]]  # in order
        # 25 answers of 0.3 s each were in flight together (no wall-clock assertion: a busy CI machine)
        assert srv.stats()["max_in_flight"] >= 20
        backend.close()


def test_concurrency_limit_is_respected() -> None:
    with LoopbackServer(latency_s=0.1) as srv:
        backend = backend_for(srv, concurrency=3)
        backend.complete_many([decide(i) for i in range(12)])
        assert srv.stats()["max_in_flight"] <= 3
        backend.close()


def test_embeddings(server: LoopbackServer) -> None:
    backend = backend_for(server)
    emb = backend.embed(["the gallery", "the lab", "the gallery"])
    assert emb is not None and emb.shape == (3, 64)
    assert (emb[0] == emb[2]).all() and not (emb[0] == emb[1]).all()
    assert abs(float((emb[1] ** 2).sum()) - 1.0) < 1e-5
    backend.close()
    no_endpoint = backend_for(server, preset="vllm")  # the vllm preset has no embedding model
    assert no_endpoint.embed(["x"]) is None


def test_warm_cache_makes_zero_calls(server: LoopbackServer, tmp_path: Path) -> None:
    requests = [decide(i) for i in range(5)] + [LLMRequest(kind="plan", system="s", user="u", schema=PLAN_SCHEMA)]
    first = backend_for(server, tmp_path)
    cold = first.complete_many(requests)
    served = server.stats()["served"]["chat"]
    assert served == 6 and first.usage.cached == 0
    first.close()

    second = backend_for(server, tmp_path)  # a new process would see the same files
    warm = second.complete_many(requests)
    assert server.stats()["served"]["chat"] == served  # zero calls
    assert second.usage.cached == 6 and second.usage.calls == 0
    assert all(w.cached for w in warm)
    assert [(w.choice, w.data, w.choice_logprobs) for w in warm] == [
        (c.choice, c.data, c.choice_logprobs) for c in cold
    ]
    # a different sampling parameter is a different key
    second.complete(LLMRequest(kind="plan", system="s", user="u", schema=PLAN_SCHEMA, max_tokens=64))
    assert server.stats()["served"]["chat"] == served + 1
    second.close()


def test_fallbacks_are_not_cached(tmp_path: Path) -> None:
    with LoopbackServer(fault_rate=1.0, fault_weights={"http_500": 1}) as srv:
        backend = backend_for(srv, tmp_path, max_retries=0)
        assert backend.complete(decide()).fallback
        assert backend.complete(decide()).fallback
        assert srv.stats()["served"]["chat"] == 2 and backend.usage.cached == 0
        backend.close()


def test_spending_cap_stops_calls(server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    # a (fictitious) price high enough that a few calls reach the cap
    backend = backend_for(server, price_in_per_mtok=1000.0, price_out_per_mtok=1000.0, max_cost_usd=0.3)
    with caplog.at_level(logging.WARNING, logger="agents.llm"):
        results = [backend.complete(decide(i, fallback="Chat")) for i in range(10)]
    served = server.stats()["served"]["chat"]
    assert 1 <= served < 10
    # The cap is never passed: each call books its worst case before it starts.
    assert backend.usage.cost_usd <= 0.3 < backend.usage.cost_usd + backend._estimate_usd(decide(0))
    capped = results[served:]
    assert all(r.fallback and r.choice == "Chat" and (r.error or "").startswith("spending_cap") for r in capped)
    assert backend.usage.fallbacks_by_fault["spending_cap"] == len(capped)
    assert (
        sum(
            "spending cap reached" in rec.message and "Fix: raise llm.max_cost_usd" in rec.message
            for rec in caplog.records
        )
        == 1
    )
    backend.close()


# Server fault → how the client counts it.
FAULT_AS = {
    "timeout": "timeout",
    "http_500": "http_5xx",
    "http_503": "http_5xx",
    "http_429": "http_429",
    "malformed_json": "malformed_json",
    "empty": "empty",
    "bad_choice": "out_of_choices",
    "too_long": "too_long",
    "drop": "connection",
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_injected_fault_falls_back_and_is_counted(fault: str) -> None:
    with LoopbackServer(fault_rate=1.0, fault_weights={fault: 1.0}, hang_s=3.0) as srv:
        backend = backend_for(srv, max_retries=1, timeout_s=0.5)
        r = backend.complete(decide(fallback="Research"))
        assert (r.choice, r.fallback) == ("Research", True)
        assert r.choice_logprobs is None
        assert srv.stats()["injected"] == {fault: 2}  # the first attempt and one retry
        assert backend.usage.faults == {FAULT_AS[fault]: 2}
        assert backend.usage.retries == 1 and backend.usage.fallbacks == 1
        backend.close()


def test_concurrent_calls_never_overshoot_the_spending_cap() -> None:
    with LoopbackServer(latency_s=0.2) as srv:
        backend = backend_for(
            srv, price_in_per_mtok=1000.0, price_out_per_mtok=1000.0, max_cost_usd=0.3, concurrency=32
        )
        results = backend.complete_many([decide(i, fallback="Chat") for i in range(40)])  # all in flight at once
        served = srv.stats()["served"]["chat"]
        assert 1 <= served < 40 and sum(r.fallback for r in results) == 40 - served
        assert backend.usage.cost_usd <= 0.3
        assert backend.usage.fallbacks_by_fault["spending_cap"] == 40 - served
        backend.close()


def test_malformed_http_body_on_free_text() -> None:
    with LoopbackServer(fault_rate=1.0, fault_weights={"malformed_json": 1.0}) as srv:
        backend = backend_for(srv, max_retries=0)
        r = backend.complete(LLMRequest(kind="converse", system="s", user="hi", fallback=lambda: "Hello."))
        assert (r.text, r.fallback) == ("Hello.", True)
        assert backend.usage.faults == {"malformed_response": 1}
        backend.close()


def test_thirty_percent_faults_every_one_counted() -> None:
    with LoopbackServer(fault_rate=0.3, hang_s=3.0, seed=7) as srv:
        backend = backend_for(srv, max_retries=3, timeout_s=1.5, concurrency=32)
        results = backend.complete_many([decide(i) for i in range(60)])
        assert all(r.choice in ACTIONS for r in results)
        injected = srv.stats()["injected"]
        assert sum(injected.values()) > 0
        expected: dict[str, int] = {}
        for kind, n in injected.items():
            expected[FAULT_AS[kind]] = expected.get(FAULT_AS[kind], 0) + n
        seen = dict(backend.usage.faults)
        # every injected fault was seen and counted (a loaded machine may add genuine timeouts)
        assert seen.pop("timeout", 0) >= expected.pop("timeout", 0)
        assert seen == expected
        u = backend.usage
        assert u.retries + u.fallbacks == sum(u.faults.values())  # each fault was retried or fell back
        assert u.calls == srv.stats()["served"]["chat"]
        backend.close()


def test_refused_connection_falls_back() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = make_backend(
        LLMConfig(
            backend="openai",
            preset="vllm",
            base_url=f"http://127.0.0.1:{port}/v1",
            cache=False,
            max_retries=1,
            backoff_s=0.0,
        )
    )
    r = backend.complete(decide(fallback="Move"))
    assert (r.choice, r.fallback) == ("Move", True) and backend.usage.faults == {"connection": 2}


def test_planted_key_never_leaks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-planted-7f3e9a1b2c4d5e6f"
    monkeypatch.setenv("GA_TEST_LLM_KEY", key)
    with LoopbackServer(api_key=key) as srv, caplog.at_level(logging.DEBUG):
        cfg = LLMConfig(
            backend="openai", preset="loopback", base_url=srv.base_url, api_key_env="GA_TEST_LLM_KEY", backoff_s=0.0
        )
        backend = make_backend(cfg, cache_dir=tmp_path)
        r = backend.complete(decide())
        assert not r.fallback  # the key from the environment was sent and accepted
        backend.complete(LLMRequest(kind="plan", system="s", user="u", schema=PLAN_SCHEMA))
        texts = [repr(cfg), str(cfg), repr(backend), repr(backend.inner), json.dumps(backend.usage.report())]
        backend.close()

    with LoopbackServer(api_key="another-key") as srv, caplog.at_level(logging.DEBUG):
        wrong = make_backend(
            LLMConfig(
                backend="openai", preset="loopback", base_url=srv.base_url, api_key_env="GA_TEST_LLM_KEY", cache=False
            ),
        )
        r = wrong.complete(decide())
        assert r.fallback and (r.error or "").startswith("http_4xx")
        texts += [r.error or "", repr(r)]
        wrong.close()
    texts += [rec.getMessage() for rec in caplog.records]
    texts += [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    assert len(list(tmp_path.rglob("*.json"))) == 2
    assert not [t for t in texts if key in t]


def test_command_line_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.testing.loopback", "--port", "0", "--fault-rate", "1", "--faults", "http_503=1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        client = openai.OpenAI(base_url=match.group(1), api_key="unused", max_retries=0)
        assert next(m.id for m in client.models.list()) == "loopback"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="loopback", messages=[{"role": "user", "content": "hi"}])
    finally:
        proc.send_signal(signal.SIGINT)  # with the client's keep-alive connection still open
        out, _ = proc.communicate(timeout=10)
    assert json.loads(out.strip().splitlines()[-1])["injected"] == {"http_503": 1}


def test_llamacpp_preset_keeps_the_schema_out_of_the_prompt() -> None:
    """llama-server reads ``response_format: json_schema``: the schema is sent there, not pasted into the prompt."""
    from agents.llm.factory import resolve

    cfg = resolve(LLMConfig(backend="openai", preset="llamacpp"))
    assert cfg.structured == "json_schema"
