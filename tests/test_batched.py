"""Batched env: E episodes as one NumPy program give the same trajectories as E single envs."""

from __future__ import annotations

import numpy as np
import pytest

import ga_env
from ga_env.batched import BatchedTownEnv


def _run_both(
    groups: list[str] | None, seeds: list[int], steps: int, chat_bias: float = 0.4
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Step E single envs one by one and one batched env with the same seeds and actions."""
    e = len(seeds)
    singles = [ga_env.parallel_env(groups=groups, obs_mode="box") for _ in range(e)]
    batch = BatchedTownEnv(ga_env.parallel_env(groups=groups, obs_mode="box"), e)
    n = len(singles[0].possible_agents)
    rng = np.random.default_rng(123)
    one: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "mask", "rew", "eff", "partner", "place")}
    many: dict[str, list[np.ndarray]] = {k: [] for k in one}
    states = [s.reset_arrays(seed) for s, seed in zip(singles, seeds, strict=True)]
    obs, mask = batch.reset_arrays(seeds=seeds)
    one["obs"].append(np.stack([s[0] for s in states]))
    one["mask"].append(np.stack([s[1] for s in states]))
    many["obs"].append(obs.copy())
    many["mask"].append(mask.copy())
    for _ in range(steps):
        actions = rng.integers(0, 4, (e, n))
        actions[rng.random((e, n)) < chat_bias] = 1  # plenty of conversations (the random part)
        one["place"].append(np.stack([s.current_places for s in singles]))
        many["place"].append(batch.current_places)
        out = [s.step_arrays(a) for s, a in zip(singles, actions, strict=True)]
        obs, mask, rew, done = batch.step_arrays(actions)
        assert done == out[0][3]
        for k, v in (("obs", 0), ("mask", 1), ("rew", 2)):
            one[k].append(np.stack([o[v] for o in out]))
        many["obs"].append(obs.copy())
        many["mask"].append(mask.copy())
        many["rew"].append(rew.copy())
        one["eff"].append(np.stack([s.last_action for s in singles]))
        one["partner"].append(np.stack([s.last_partner for s in singles]))
        many["eff"].append(batch.last_action.copy())
        many["partner"].append(batch.last_partner.copy())
    a = {k: np.array(v) for k, v in one.items()}
    b = {k: np.array(v) for k, v in many.items()}
    for name in ("episode_rewards", "episode_terms", "aware", "relationship", "action_counts", "energy"):
        a[name] = np.stack([getattr(s, name) for s in singles])
        b[name] = getattr(batch, name)
    return a, b


@pytest.mark.parametrize("groups", [None, ["artist_collective", "residents"]])
def test_batched_equals_single_envs_bit_for_bit_over_a_day(groups: list[str] | None) -> None:
    # The same seed for every episode (a GRPO group) and different seeds, over a full day.
    for seeds in ([5] * 4, [0, 1, 2]):
        a, b = _run_both(groups, seeds, steps=144)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert b["eff"].shape == (144, len(seeds), len(ga_env.parallel_env(groups=groups).possible_agents))
        # The episodes did diverge (different action draws), so the test compares real dynamics.
        assert not np.array_equal(b["rew"][:, 0], b["rew"][:, 1])
        assert (b["eff"] == 1).mean() > 0.05 and b["episode_terms"].any()


def test_single_env_is_the_one_episode_batch() -> None:
    # TownEnv's state is the E = 1 core: writes through its attributes reach the dynamics.
    env = ga_env.parallel_env(obs_mode="box")
    env.reset_arrays(0)
    core = env._core
    assert isinstance(core, BatchedTownEnv) and core.num_envs == 1
    env.energy[3] = 0.25
    assert core.energy[0, 3] == 0.25
    env.step_arrays(np.zeros(len(env.possible_agents), dtype=np.int64))
    assert env.energy[3] == core.energy[0, 3] and env.obs_dim == core.obs.shape[2]


def test_reset_arguments_and_errors() -> None:
    batch = BatchedTownEnv(ga_env.parallel_env(max_agents=6, obs_mode="box"), 3)
    with pytest.raises(RuntimeError, match="before reset_arrays"):
        batch.step_arrays(np.zeros((3, 6), dtype=np.int64))
    obs, mask = batch.reset_arrays(7)
    assert obs.shape == (3, 6, batch.obs_dim) and mask.shape == (3, 6, 4)
    np.testing.assert_array_equal(obs[0], obs[2])  # one seed: the same initial state everywhere
    obs2, _ = batch.reset_arrays(seeds=[7, 8, 9])
    np.testing.assert_array_equal(obs2[0], obs[0])
    assert not np.array_equal(obs2[0], obs2[1])
    assert batch.state().shape == (3, ga_env.parallel_env(max_agents=6).state_space.shape[0])
    with pytest.raises(ValueError, match="at most one"):
        batch.reset_arrays(1, seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="2 generators for 3 envs"):
        batch.reset_arrays(rngs=[np.random.default_rng(0)] * 2)
    with pytest.raises(ValueError, match="num_envs"):
        BatchedTownEnv(ga_env.parallel_env(), 0)
