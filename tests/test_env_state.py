"""``TownEnv.state_dict`` / ``load_state_dict``: an explicit, exact save and restore of an episode."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ga_env


def _env(**kw: object) -> ga_env.TownEnv:
    return ga_env.parallel_env(groups=["artist_collective", "residents"], max_agents=8, max_cycles=300, **kw)


def _play(env: ga_env.TownEnv, rng: np.random.Generator, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(steps):
        a = rng.integers(0, 4, len(env.possible_agents))
        obs, _, rewards, _ = env.step_arrays(a)
        out.append((obs.copy(), rewards.copy()))
    return out


@pytest.mark.parametrize("version", [0, 1])
def test_restored_env_continues_exactly(version: int) -> None:
    a = _env(version=version)
    a.reset(seed=3)
    _play(a, np.random.default_rng(0), 150)  # past the first night: day counters, pair decay, overtime
    state = copy.deepcopy(a.state_dict())
    expected = _play(a, np.random.default_rng(1), 120)

    b = _env(version=version)
    b.reset(seed=99)  # another episode in another state, overwritten by the load
    _play(b, np.random.default_rng(5), 17)
    b.load_state_dict(state)
    got = _play(b, np.random.default_rng(1), 120)
    for (o1, r1), (o2, r2) in zip(expected, got, strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
    assert a.goal_metrics() == b.goal_metrics()


def test_state_covers_every_dynamic_attribute() -> None:
    """After a load, every array and number of the dynamics equals the saved env's: nothing is forgotten."""
    a = _env()
    a.reset(seed=1)
    _play(a, np.random.default_rng(2), 160)
    b = _env()
    b.reset(seed=7)
    _play(b, np.random.default_rng(3), 33)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for key, value in vars(a._core).items():
        other = vars(b._core)[key]
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=key)
        elif isinstance(value, (bool, int, float, np.generic)):
            assert value == other, key
    assert a.np_random.bit_generator.state == b.np_random.bit_generator.state


def test_rich_mode_keeps_pending_utterances() -> None:
    a = _env(action_mode="rich", text_obs=True)
    a.reset(seed=0)
    agents = a.possible_agents
    a.step({ag: {"action": 1, "utterance": f"hello from {ag}"} for ag in agents})
    state = copy.deepcopy(a.state_dict())
    b = _env(action_mode="rich", text_obs=True)
    b.reset(seed=5)
    b.load_state_dict(state)
    assert b.last_utterance == a.last_utterance
    assert b.inbox == a.inbox
    assert b.agents == a.agents


def test_state_of_another_town_is_refused() -> None:
    a = _env()
    a.reset(seed=0)
    state = a.state_dict()
    small = ga_env.parallel_env(groups=["artist_collective", "residents"], max_agents=4)
    small.reset(seed=0)
    with pytest.raises(ValueError, match="last_utterance"):
        small.load_state_dict(state)
    v0 = _env(version=0)
    v0.reset(seed=0)
    with pytest.raises(ValueError, match=r"env\.version=1"):
        v0.load_state_dict(state)
    fresh = _env()
    with pytest.raises(RuntimeError, match="before reset"):
        fresh.state_dict()
