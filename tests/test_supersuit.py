"""SuperSuit vector envs on the town: numeric mode with both base classes, Dict mode, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import ga_env
from ga_env import TownDataError

supersuit = pytest.importorskip("supersuit")

N, CYCLES = 6, 20


def _small(**kwargs: object) -> dict[str, object]:
    return {"max_agents": N, "max_cycles": CYCLES, **kwargs}


def test_gymnasium_base_class_matches_the_parallel_env() -> None:
    """Rows are personas; the vector env's first day equals stepping the ParallelEnv by hand."""
    venv = ga_env.vec_env(2, base_class="gymnasium", **_small())
    ref = ga_env.parallel_env(obs_mode="box", **_small())
    obs, _ = venv.reset(seed=7)
    ref_obs, _ = ref.reset(seed=7)  # copy 0 is seeded with 7, copy 1 with 8
    assert obs.shape == (2 * N, ref.obs_dim) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:N], np.stack([ref_obs[a] for a in ref.possible_agents]))
    rng = np.random.default_rng(0)
    for t in range(CYCLES):
        actions = rng.integers(0, 4, size=2 * N)
        obs, rewards, terms, truncs, infos = venv.step(actions)
        ref_obs, ref_rew, _, ref_trunc, _ = ref.step({a: int(actions[i]) for i, a in enumerate(ref.possible_agents)})
        np.testing.assert_allclose(rewards[:N], [ref_rew[a] for a in ref.possible_agents], rtol=1e-6)
        assert not terms.any() and truncs[:N].tolist() == [ref_trunc[a] for a in ref.possible_agents]
        if t < CYCLES - 1:
            np.testing.assert_array_equal(obs[:N], np.stack([ref_obs[a] for a in ref.possible_agents]))
            assert not truncs.any()
    # The day ended for every persona at once (fixed population: no black_death needed) ...
    assert truncs.all() and all("terminal_observation" in info for info in infos)
    np.testing.assert_array_equal(infos[0]["terminal_observation"], ref_obs[ref.possible_agents[0]])
    # ... and the vector env started the next day by itself.
    assert np.isfinite(obs).all() and obs.shape == (2 * N, ref.obs_dim)
    assert venv.step(np.zeros(2 * N, dtype=np.int64))[3].sum() == 0


def test_stable_baselines3_base_class() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import VecEnv

    venv = ga_env.vec_env(3, base_class="stable_baselines3", **_small())
    assert isinstance(venv, VecEnv) and venv.num_envs == 3 * N
    obs = venv.reset()
    assert obs.shape == (3 * N, ga_env.parallel_env(**_small()).obs_dim)
    dones_seen = 0
    for _ in range(CYCLES + 5):  # crosses one automatic reset
        obs, rewards, dones, infos = venv.step(np.full(3 * N, 2))
        assert venv.observation_space.contains(obs[0]) and rewards.shape == (3 * N,)
        dones_seen += int(dones.all())
        assert not dones.any() or dones.all()
    assert dones_seen == 1
    assert all(info["TimeLimit.truncated"] for info in infos if "TimeLimit.truncated" in info)


def test_built_env_is_copied_and_worker_processes_work() -> None:
    """``env=`` takes an already built town (as trainers build it); ``num_cpus`` runs worker processes."""
    built = ga_env.parallel_env(obs_mode="box", **_small())
    inproc = ga_env.vec_env(2, env=built)
    workers = ga_env.vec_env(2, env=built, num_cpus=2)
    try:
        a, _ = inproc.reset(seed=3)
        b, _ = workers.reset(seed=3)
        np.testing.assert_array_equal(a, b)
        actions = np.random.default_rng(1).integers(0, 4, size=(5, 2 * N))
        for act in actions:
            ra = inproc.step(act)
            rb = workers.step(act)
            np.testing.assert_array_equal(ra[0], rb[0])
            np.testing.assert_allclose(ra[1], rb[1], rtol=1e-6)
    finally:
        workers.close()
    assert built.agents == []  # the given env itself was copied, not stepped


def test_dict_obs_mode_batches_as_a_dict_of_arrays() -> None:
    venv = ga_env.vec_env(2, obs_mode="dict", **_small())
    obs, _ = venv.reset(seed=0)
    assert set(obs) == {"observation", "action_mask"}
    assert obs["action_mask"].shape == (2 * N, 4) and obs["action_mask"][:, 0].all()  # Move is always possible
    obs, *_ = venv.step(np.zeros(2 * N, dtype=np.int64))
    assert obs["observation"].shape == (2 * N, ga_env.parallel_env(**_small()).obs_dim)


def test_rich_action_mode_is_refused_with_the_mode_to_use() -> None:
    with pytest.raises(TownDataError, match=r"action_mode: .*Text.*Fix: use action_mode='discrete'"):
        ga_env.vec_env(2, action_mode="rich", **_small())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"base_class": "rllib"}, "base_class"), ({"num_envs": 0}, "num_envs")],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(TownDataError, match=f"argument: {field}: .* Fix: "):
        ga_env.vec_env(**kwargs)  # type: ignore[arg-type]


def test_env_and_env_arguments_are_exclusive() -> None:
    with pytest.raises(TownDataError, match="argument: env: "):
        ga_env.vec_env(env=ga_env.parallel_env(obs_mode="box", **_small()), max_agents=3)


def test_stable_baselines3_seeding_reaches_the_towns() -> None:
    """``VecEnv.seed`` (what ``PPO(seed=...)`` calls) seeds the next reset: copy i gets seed + i."""
    pytest.importorskip("stable_baselines3")
    sb3 = ga_env.vec_env(2, base_class="stable_baselines3", **_small())
    gym = ga_env.vec_env(2, base_class="gymnasium", **_small())
    sb3.seed(11)
    expected, _ = gym.reset(seed=11)
    np.testing.assert_array_equal(sb3.reset(), expected)
    np.testing.assert_array_equal(sb3.reset(seed=11), expected)
    assert not np.array_equal(sb3.reset(), expected)  # a seed is used once; the next day differs
