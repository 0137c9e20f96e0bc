"""PettingZoo conformance, spaces and determinism of the town env."""

from __future__ import annotations

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, render_test, state_test

import ga_env
from ga_env import town_v0


@pytest.mark.parametrize("obs_mode", ["dict", "box"])
def test_parallel_api(obs_mode: str) -> None:
    parallel_api_test(ga_env.parallel_env(obs_mode=obs_mode, max_cycles=200), num_cycles=400)


def test_parallel_api_rich_actions_and_text() -> None:
    # PettingZoo samples a masked Dict action space with an array mask, so rich mode is checked with obs_mode="box".
    parallel_api_test(
        ga_env.parallel_env(action_mode="rich", obs_mode="box", text_obs=True, max_cycles=50), num_cycles=60
    )


@pytest.mark.parametrize("obs_mode", ["dict", "box"])
def test_aec_api(obs_mode: str) -> None:
    api_test(ga_env.env(obs_mode=obs_mode, max_cycles=100), num_cycles=150)


def test_max_cycles() -> None:
    max_cycles_test(town_v0)


def test_render_modes() -> None:
    render_test(town_v0.env)


def test_state() -> None:
    state_test(ga_env.env(max_cycles=30), ga_env.parallel_env(max_cycles=30), num_cycles=20)


def test_registered_with_pettingzoo() -> None:
    par = pettingzoo.make("parallel", "ga/Town-v0", max_cycles=5, max_agents=4)
    assert isinstance(par, ga_env.TownEnv) and par.max_cycles == 5 and len(par.possible_agents) == 4
    aec = pettingzoo.make("aec", "ga/Town-v0", max_agents=3)
    aec.reset(seed=0)
    assert len(aec.agents) == 3


def test_spaces_are_cached_objects() -> None:
    env = ga_env.parallel_env()
    a = env.possible_agents[0]
    assert env.observation_space(a) is env.observation_space(a)
    assert env.action_space(a) is env.action_space(a)


def _masked_random(env: ga_env.TownEnv, obs: dict, rng: np.random.Generator) -> dict:
    acts = {}
    for a in env.agents:
        valid = np.flatnonzero(obs[a]["action_mask"])
        acts[a] = int(rng.choice(valid))
    return acts


def test_observations_always_in_space_long_rollout() -> None:
    env = ga_env.parallel_env(max_cycles=144)
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=1)
    for _ in range(2 * 144):
        if not env.agents:
            obs, _ = env.reset()
        for a in env.agents:
            assert env.observation_space(a).contains(obs[a]), a
        state = env.state()
        assert env.state_space.contains(state)
        obs, rewards, _, _, _ = env.step(_masked_random(env, obs, rng))
        assert all(np.isfinite(r) for r in rewards.values())


def _rollout(seed: int, steps: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    env = ga_env.parallel_env(max_cycles=steps)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    all_obs, all_rew = [], []
    while env.agents:
        obs, rew, _, _, _ = env.step(_masked_random(env, obs, rng))
        all_obs.append(np.stack([obs[a]["observation"] for a in env.possible_agents]))
        all_rew.append(np.array([rew[a] for a in env.possible_agents]))
    return all_obs, all_rew


def test_same_seed_is_deterministic_over_600_steps() -> None:
    obs1, rew1 = _rollout(7, 600)
    obs2, rew2 = _rollout(7, 600)
    assert len(obs1) == 600
    for t, (o1, o2, r1, r2) in enumerate(zip(obs1, obs2, rew1, rew2, strict=True)):
        np.testing.assert_array_equal(o1, o2, err_msg=f"observations differ at step {t}")
        np.testing.assert_array_equal(r1, r2, err_msg=f"rewards differ at step {t}")
    obs3, _ = _rollout(8, 50)
    assert any(not np.array_equal(a, b) for a, b in zip(obs1[:50], obs3, strict=True))


def test_reset_without_seed_continues_the_rng() -> None:
    env = ga_env.parallel_env(max_cycles=3)
    first, _ = env.reset(seed=3)
    second, _ = env.reset()
    a = env.possible_agents[0]
    again, _ = ga_env.parallel_env(max_cycles=3).reset(seed=3)
    np.testing.assert_array_equal(first[a]["observation"], again[a]["observation"])
    assert any(not np.array_equal(first[b]["observation"], second[b]["observation"]) for b in env.possible_agents)


def test_supersuit_vector_env_in_box_mode() -> None:
    supersuit = pytest.importorskip("supersuit")
    vec = supersuit.pettingzoo_env_to_vec_env_v1(ga_env.parallel_env(obs_mode="box", max_agents=6, max_cycles=20))
    vec = supersuit.concat_vec_envs_v1(vec, 2, num_cpus=0, base_class="gymnasium")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (12, ga_env.parallel_env(max_agents=6).obs_dim)
    for _ in range(45):  # crosses two auto-resets
        obs, rewards, _, _, _ = vec.step(np.random.default_rng(0).integers(0, 4, size=12))
        assert np.isfinite(obs).all() and rewards.shape == (12,)
