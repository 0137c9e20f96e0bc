"""``scripts/bench_lessons.py`` (issue 15 part 4): placebo lessons, the calibrated setting and the measurement.

The model is the loopback OpenAI server (a real HTTP server for the real client; its answers are
a hash of the messages, so any change of the system prompt changes about half of its choices):
what it shows is that the bench detects a prompt-sensitive model, for trained and placebo
lessons alike, and reports paired figures for every condition.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agents.llm import LLMRequest, make_backend
from agents.testing.loopback import LoopbackServer
from conf.schema import LLMConfig
from ga_sim.bench.lessons import CONDITIONS, ConditionLLM, placebo_lessons, run, train_run
from scripts.bench_lessons import main

TINY = [
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=12",
    "trainer.eval_episodes=1",
    "agent.hidden=4",
]


def test_placebo_lessons_match_count_and_length_and_say_nothing_of_the_objective() -> None:
    lessons = {
        "artist_collective": ["To raise awareness: chat at the gallery in the afternoon.", "x" * 380],
        "residents": ["Rest at home at night (80% vs 40% of night steps)."],
        "empty": [],
    }
    placebo = placebo_lessons(lessons)
    assert {g: [len(x) for x in v] for g, v in placebo.items()} == {g: [len(x) for x in v] for g, v in lessons.items()}
    words = " ".join(x for v in placebo.values() for x in v).lower()
    for banned in ("awareness", "chat", "task", "research", "rest", "home", "supporter", "relationship", "%"):
        assert banned not in words
    assert all(x.rstrip().endswith(".") for v in placebo.values() for x in v)
    assert placebo_lessons(lessons) == placebo  # deterministic


def _decide(system: str, user: str) -> LLMRequest:
    return LLMRequest(
        kind="decide", system=system, user=user, choices=("move", "chat", "task"), want_logprobs=True, max_tokens=8
    )


def test_calibrated_setting_equals_the_backends_own_calibration() -> None:
    with LoopbackServer() as srv:
        common = {"backend": "openai", "preset": "loopback", "base_url": srv.base_url, "cache": False, "backoff_s": 0.0}
        plain = make_backend(LLMConfig(**common))  # type: ignore[arg-type]
        own = make_backend(LLMConfig(**common, calibrate=True))  # type: ignore[arg-type]
        wrapped = ConditionLLM(plain, calibrated=True)
        for i in range(6):
            r = _decide(f"You are persona {i % 2}.", f"It is {8 + i}:00. What now?")
            a, b = wrapped.complete(r), own.complete(r)
            assert a.choice_logprobs is not None and b.choice_logprobs is not None
            assert a.choice == b.choice
            for k in r.choices:
                assert math.isclose(a.choice_logprobs[k], b.choice_logprobs[k], abs_tol=1e-9)
        plain.close()
        own.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(tmp_path_factory.mktemp("bench-lessons") / "run", TINY)


def test_bench_measures_a_prompt_sensitive_model_in_every_condition(tiny_run: Path, tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        over = ["llm=openai", "llm.preset=loopback", f"llm.base_url={srv.base_url}", "llm.backoff_s=0.0", *TINY]
        out = run(seeds=3, steps=3, generative_steps=24, generative_agents=6, run_dir=tiny_run, overrides=over,
                  cache_dir=tmp_path / "cache", progress=lambda _: None)  # fmt: skip
    assert out["seeds"] == [1000, 1001, 1002] and out["backend"] == "openai"
    assert out["placebo"].keys() == out["lessons"].keys()
    for mind in ("neurosymbolic", "generative"):
        res = out[mind]
        assert res["fallbacks"] == 0 and res["llm_calls"] > 0
        for setting in ("plain", "calibrated"):
            sec = res[setting]
            assert set(CONDITIONS) <= set(sec)
            for cond in CONDITIONS:
                row = sec[cond]
                shares = [m for m, _ in row["actions"].values()]
                assert math.isclose(sum(shares), 1.0, abs_tol=1e-3)  # rounded to 4 places
                assert 0.0 <= row["first_option_rate"][0] <= 1.0
                assert row["decisions_per_episode"][0] > 0
                assert set(row["returns"]) == {"artist_collective", "residents"} or mind == "generative"
                assert ("vs_none" in row) == (cond != "none")
            # The hashed answers depend on the whole prompt: both lesson texts change many choices.
            for cond in ("trained", "placebo"):
                changed, ci = sec["changed"][cond]
                assert 0.1 < changed <= 1.0 and ci >= 0.0
                assert 0.0 < sec["tv_distance"][cond][0] <= 1.0
    assert "mlp_only" in out["neurosymbolic"]
    assert out["generative"]["other_requests"].startswith("scripted")


def test_cli_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--seeds", "1"])
    assert "--seeds must be >= 2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="minds"):
        run(seeds=2, minds=["telepathic"], run_dir="unused")
