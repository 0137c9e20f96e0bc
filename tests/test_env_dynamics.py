"""Dynamics and rewards: each action does what the docs say, and groups are rewarded by their objective."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ga_env
from ga_env.world import CHAT, IDLE, MOVE, RESEARCH, TASK

IDLE_ALL = IDLE


def _env(groups: list[str], **dyn: float) -> ga_env.TownEnv:
    # Exact formulas of the mechanics shared by both versions, checked on Town-v0 (v1: test_town_versions).
    env = ga_env.parallel_env(groups=groups, version=0, dynamics={"persuasion": 1.0, **dyn}, start="2023-02-13 09:00")
    env.reset(seed=0)
    return env


def _idx(env: ga_env.TownEnv, name: str) -> int:
    return [p.name for p in env.personas].index(name)


def _tile(env: ga_env.TownEnv, place: str, k: int = 0) -> tuple[int, int]:
    tiles = env.town_map.place_tiles(env.town_map.place_index(place))
    x, y = tiles[len(tiles) // 2 + k]
    return int(x), int(y)


def _place(env: ga_env.TownEnv, where: dict[str, tuple[int, int]]) -> None:
    xy = np.array([env.position(i) for i in range(len(env.personas))])
    for name, tile in where.items():
        xy[_idx(env, name)] = tile
    env.set_positions(xy)


def _act(env: ga_env.TownEnv, actions: dict[str, int]) -> np.ndarray:
    a = np.full(len(env.personas), IDLE_ALL, dtype=np.int64)
    for name, act in actions.items():
        a[_idx(env, name)] = act
    return env.step_arrays(a)[2]


def test_chat_spreads_awareness_and_builds_relationships() -> None:
    env = _env(["artist_collective", "residents"])
    isabel, marco = _idx(env, "Isabel Ortiz"), _idx(env, "Marco Rossi")
    _place(
        env,
        {
            "Isabel Ortiz": _tile(env, "Willow Cafe:dining area"),
            "Marco Rossi": _tile(env, "Willow Cafe:dining area", 1),
        },
    )
    assert env._mask[isabel, CHAT] == 1 and env._partner[isabel] == marco
    before = env.aware[0, marco]
    rewards = _act(env, {"Isabel Ortiz": CHAT})
    gain = env.dynamics.spread_rate * (1 - before) * (1 - env.dynamics.awareness_decay)
    assert env.aware[0, marco] == pytest.approx(
        before * (1 - env.dynamics.awareness_decay)
        + env.dynamics.spread_rate * (1 - before * (1 - env.dynamics.awareness_decay))
    )
    assert gain > 0.5 * env.dynamics.spread_rate
    assert env.relationship[isabel, marco] > 0 and env.relationship[marco, isabel] > 0  # both remember it
    assert rewards[isabel] > rewards[_idx(env, "Theo Ortiz")] > 0  # individual + team share
    assert rewards[marco] > 0  # residents value relationships and conversations
    assert env.last_partner[isabel] == marco


def test_advocates_spread_a_cause_on() -> None:
    env = _env(["artist_collective", "residents"])
    marco, ana = _idx(env, "Marco Rossi"), _idx(env, "Ana Rossi")
    env.aware[0, marco] = 0.9  # Marco is an advocate of the exhibition
    env.aware[0, ana] = 0.0
    _place(env, {"Marco Rossi": _tile(env, "Willow Cafe:kitchen"), "Ana Rossi": _tile(env, "Willow Cafe:kitchen", 1)})
    rewards = _act(env, {"Marco Rossi": CHAT})
    assert env.aware[0, ana] == pytest.approx(env.dynamics.spread_rate * env.dynamics.advocate_strength)
    members = [i for i, p in enumerate(env.personas) if p.group == "artist_collective"]
    assert all(rewards[i] > 0 for i in members)  # credited to the artists' team


def test_task_only_at_task_sites_and_rest_at_home() -> None:
    env = _env(["artist_collective", "residents"])
    theo, yuki = _idx(env, "Theo Ortiz"), _idx(env, "Yuki Nakamura")
    _place(
        env, {"Theo Ortiz": _tile(env, "Lumen Gallery:artist studio"), "Yuki Nakamura": _tile(env, "Town Square:plaza")}
    )
    assert env._mask[theo, TASK] == 1 and env._mask[yuki, TASK] == 0
    progress = env.group_progress[0]
    _act(env, {"Theo Ortiz": TASK, "Yuki Nakamura": TASK})
    assert env.group_progress[0] - progress == pytest.approx(
        env.dynamics.task_rate * env.energy[theo] / (1 - 0.0), rel=0.1
    )
    assert env.last_action[yuki] == IDLE  # a masked action is a no-op
    # At home, Task is rest: energy goes up.
    home = env.town_map.place_tiles(int(env.home[yuki]))[0]
    _place(env, {"Yuki Nakamura": (int(home[0]), int(home[1]))})
    env.energy[yuki] = 0.3
    _act(env, {"Yuki Nakamura": TASK})
    assert env.energy[yuki] > 0.3


def test_research_is_better_together() -> None:
    env = _env(["research_lab"])
    lab = "Oak Library:research lab"
    _place(env, {"Priya Haddad": _tile(env, lab), "Samuel Haddad": _tile(env, lab, 3)})
    env.energy[:] = 1.0
    before = env.group_knowledge[0]
    _act(env, {"Priya Haddad": RESEARCH})
    alone = env.group_knowledge[0] - before
    env.energy[:] = 1.0
    env.trace[:] = 0.0
    before = env.group_knowledge[0]
    _act(env, {"Priya Haddad": RESEARCH, "Samuel Haddad": RESEARCH})
    together = env.group_knowledge[0] - before
    assert alone == pytest.approx(env.dynamics.research_rate * (1 - env.dynamics.energy_drain) ** 0, rel=0.05)
    assert together / 2 == pytest.approx(alone * (1 + env.dynamics.collab_bonus), rel=0.05)


def test_research_masked_away_from_research_sites() -> None:
    env = _env(["research_lab"])
    _place(env, {"Priya Haddad": _tile(env, "Willow Cafe:dining area")})
    assert env._mask[_idx(env, "Priya Haddad"), RESEARCH] == 0


def test_move_walks_the_shortest_path_and_cycles_the_itinerary() -> None:
    env = _env(["artist_collective"])
    i = _idx(env, "Isabel Ortiz")
    target = env.current_targets[i]
    assert env.places[target] == "Lumen Gallery:artist studio"
    d0 = env.town_map.distance_field(int(target))[env.position(i)[1], env.position(i)[0]]
    _act(env, {"Isabel Ortiz": MOVE})
    d1 = env.town_map.distance_field(int(target))[env.position(i)[1], env.position(i)[0]]
    assert d1 == max(d0 - env.dynamics.move_speed, 0)
    while env.current_places[i] != target:
        _act(env, {"Isabel Ortiz": MOVE})
    _act(env, {"Isabel Ortiz": MOVE})  # at the target: Move heads to the next place
    assert env.places[env.current_targets[i]] == "Lumen Gallery:exhibition hall"


def test_night_lowers_output_and_sends_everyone_home() -> None:
    env = ga_env.parallel_env(groups=["research_lab"], start="2023-02-13 23:00")
    env.reset(seed=0)
    assert env.is_night
    assert (env.current_targets == env.home).all()
    _place(env, {"Priya Haddad": _tile(env, "Oak Library:research lab")})
    env.energy[:] = 1.0
    _act(env, {"Priya Haddad": RESEARCH})
    d = env.dynamics  # Town-v1: a lab that has done no lab work yet researches at its readiness floor
    assert env.group_knowledge[0] == pytest.approx(d.research_rate * d.night_factor * d.readiness_floor, rel=0.05)


def test_invalid_actions_are_value_errors_naming_the_agent() -> None:
    env = ga_env.parallel_env(max_agents=3)
    env.reset(seed=0)
    a = env.agents[1]
    for bad in (7, -1, "chat", 1.0, None, True):
        acts = dict.fromkeys(env.agents, 0)
        acts[a] = bad
        with pytest.raises(
            ga_env.ActionError, match=f"actions\\['{a}'\\]: action: {re.escape(repr(bad))} is not in Discrete\\(4\\)"
        ):
            env.step(acts)
    with pytest.raises(
        ValueError, match=re.escape("actions['nobody']: agent: is not an agent of this env. Fix: use agents among")
    ):
        env.step({"nobody": 0})
    rich = ga_env.parallel_env(max_agents=3, action_mode="rich")
    rich.reset(seed=0)
    with pytest.raises(ValueError, match="target: 999 is not an index in"):
        rich.step({rich.agents[0]: {"action": 0, "target": 999}})
    with pytest.raises(ValueError, match=re.escape("keys: rich action has keys ['act']. Fix: give 'action'")):
        rich.step({rich.agents[0]: {"act": 0}})


def test_bad_arguments() -> None:
    with pytest.raises(
        ga_env.TownDataError, match=r"argument: obs_mode: 'pixels' is unknown\. Fix: use 'dict' or 'box'"
    ):
        ga_env.parallel_env(obs_mode="pixels")
    with pytest.raises(ga_env.TownDataError, match="dynamics: move_speed"):
        ga_env.parallel_env(dynamics={"move_speed": -2})
    with pytest.raises(ga_env.TownDataError, match=r"dynamics: .*unexpected keyword"):
        ga_env.parallel_env(dynamics={"warp": 1})
    with pytest.raises(ga_env.TownDataError, match="groups: unknown group"):
        ga_env.parallel_env(groups=["pirates"])


def test_random_day_uses_every_action_and_rewards_every_group() -> None:
    env = ga_env.parallel_env(max_cycles=144)
    assert len(env.possible_agents) == 25
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    while env.agents:
        obs, _, _, _, _ = env.step({a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents})
    counts = env.action_counts[:, :4].sum(0)
    assert (counts > 0).all(), counts
    for g, group in enumerate(env.groups):
        assert env.episode_rewards[env.group_of == g].sum() > 0, group.name


def test_text_observation_and_utterances() -> None:
    env = ga_env.parallel_env(
        groups=["artist_collective", "residents"], action_mode="rich", text_obs=True, start="2023-02-13 09:00"
    )
    env.reset(seed=0)
    _place(
        env,
        {
            "Isabel Ortiz": _tile(env, "Willow Cafe:dining area"),
            "Marco Rossi": _tile(env, "Willow Cafe:dining area", 1),
        },
    )
    marco = _idx(env, "Marco Rossi")
    acts = {a: {"action": IDLE_ALL - 1, "target": len(env.places)} for a in env.agents}
    acts["isabel_ortiz"] = {"action": CHAT, "partner": marco, "utterance": "Come to the opening on Friday!"}
    _, _, _, _, infos = env.step(acts)
    text = infos["marco_rossi"]["text"]
    assert "Monday February 13, 2023, 09:10" in text
    assert "Willowbrook:Willow Cafe:dining area" in text
    assert "Isabel Ortiz is chatting with Marco Rossi" in text
    assert 'Isabel Ortiz said to you: "Come to the opening on Friday!"' in text
    assert "text" not in ga_env.parallel_env(max_agents=2).reset(seed=0)[1]["isabel_ortiz"]


def test_campaign_wins_a_supporter_once() -> None:
    env = _env(["campaign_team", "residents"], awareness_decay=0.0)
    grace, ben = _idx(env, "Grace Mendes"), _idx(env, "Ben Carter")
    g = [grp.name for grp in env.groups].index("campaign_team")
    env.aware[g, ben] = env.dynamics.supporter_threshold - 0.01
    _place(
        env,
        {
            "Grace Mendes": _tile(env, "Corner Market:shop floor"),
            "Ben Carter": _tile(env, "Corner Market:shop floor", 1),
        },
    )
    rewards = _act(env, {"Grace Mendes": CHAT})
    sup = ga_env.OBJECTIVE_TERMS.index("supporters")
    assert env.supporter[g, ben] and env.episode_terms[sup, g] == 1.0
    assert rewards[grace] > env.groups[g].objective["supporters"] * env.groups[g].individual_share
    _act(env, {"Grace Mendes": CHAT})
    assert env.episode_terms[sup, g] == 1.0  # a supporter is won once


def test_rgb_and_ansi_render_show_the_agents() -> None:
    env = ga_env.parallel_env(render_mode="rgb_array", max_agents=5)
    env.reset(seed=0)
    img = env.render()
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8
    assert img.shape == (env.town_map.height * 8, env.town_map.width * 8, 3)
    x, y = env.position(0)
    assert tuple(img[y * 8 + 4, x * 8 + 4]) == (230, 80, 60)  # first group's colour
    env = ga_env.parallel_env(render_mode="ansi", max_agents=5)
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "Willowbrook  Monday 2023-02-13 07:00" in text and "Isabel Ortiz" in text
