"""Policies: masks respected, exact log-probs, analytic gradients, one GRPO update."""

from __future__ import annotations

import numpy as np
import pytest

import ga_env
from agents import Policy, RandomPolicy, ScriptedPolicy, SoftmaxPolicy, TrainablePolicy
from trainers.grpo_math import grpo_loss


@pytest.fixture(scope="module")
def batch() -> tuple[ga_env.TownEnv, np.ndarray, np.ndarray]:
    env = ga_env.parallel_env(groups=["artist_collective", "research_lab", "residents"])
    obs, mask = env.reset_arrays(0)
    rng = np.random.default_rng(0)
    obs_list, mask_list = [obs], [mask]
    for _ in range(30):
        obs, mask, _, _ = env.step_arrays(RandomPolicy().act(obs, mask, rng))
        obs_list.append(obs)
        mask_list.append(mask)
    return env, np.concatenate(obs_list), np.concatenate(mask_list)


def test_protocols(batch) -> None:
    env, _, _ = batch
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), rng=np.random.default_rng(0))
    assert isinstance(policy, TrainablePolicy)
    assert isinstance(RandomPolicy(), Policy)
    assert isinstance(ScriptedPolicy(env.groups), Policy)


@pytest.mark.parametrize("make", ["random", "scripted", "softmax"])
def test_actions_respect_mask(batch, make: str) -> None:
    env, obs, mask = batch
    rng = np.random.default_rng(1)
    policy = {
        "random": RandomPolicy(),
        "scripted": ScriptedPolicy(env.groups),
        "softmax": SoftmaxPolicy(env.obs_dim, len(env.groups), rng=rng),
    }[make]
    actions = policy.act(obs, mask, rng)
    assert actions.shape == (len(obs),) and actions.dtype == np.int64
    assert np.all(mask[np.arange(len(obs)), actions] == 1)


def test_random_policy_is_uniform_over_valid_actions() -> None:
    mask = np.tile(np.array([[1, 0, 1, 1]], dtype=np.int8), (30_000, 1))
    actions = RandomPolicy().act(np.zeros((30_000, 32)), mask, np.random.default_rng(0))
    freq = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(freq, [1 / 3, 0, 1 / 3, 1 / 3], atol=0.01)


def test_scripted_goes_home_and_rests_at_night(batch) -> None:
    env, obs, mask = batch
    o = obs[: len(env.possible_agents)].copy()
    m = np.ones_like(mask[: len(o)])
    m[:, 1] = 0  # nobody to talk to
    o[:, ga_env.OBS["night"]] = 1.0
    o[:, ga_env.OBS["at_home"]] = 1.0
    assert np.all(ScriptedPolicy(env.groups).act(o, m, np.random.default_rng(0)) == 2)  # rest
    o[:, ga_env.OBS["at_home"]] = 0.0
    assert np.all(ScriptedPolicy(env.groups).act(o, m, np.random.default_rng(0)) == 0)  # walk home


@pytest.mark.parametrize("hidden", [0, 8])
def test_log_probs_are_exact_and_masked(batch, hidden: int) -> None:
    env, obs, mask = batch
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=hidden, init_scale=0.5, rng=np.random.default_rng(0))
    logp, _ = policy.forward(obs, mask)
    probs = np.exp(logp)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert np.all(probs[mask == 0] == 0.0)


@pytest.mark.parametrize("hidden", [0, 6])
def test_analytic_gradients_match_finite_differences(batch, hidden: int) -> None:
    env, obs, mask = batch
    obs, mask = obs[:40], mask[:40]
    rng = np.random.default_rng(0)
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=hidden, init_scale=0.5, rng=rng)
    actions = policy.act(obs, mask, rng)
    adv = rng.normal(size=len(obs))
    old = policy.forward(obs, mask)[0][np.arange(len(obs)), actions] + rng.normal(0, 0.05, len(obs))
    ref = old + rng.normal(0, 0.2, len(obs))

    def loss_of() -> tuple[float, dict[str, np.ndarray]]:
        logp_all, cache = policy.forward(obs, mask)
        logp = logp_all[np.arange(len(obs)), actions]
        loss, dlogp, _ = grpo_loss(logp, old, ref, adv, np.ones(len(obs)), 0.2, 0.1)
        return loss, policy.backward(cache, policy.dlogits_from_dlogp(cache, actions, dlogp))

    _, grads = loss_of()
    h = 1e-6
    for name, p in policy.params.items():
        for idx in [tuple(rng.integers(s) for s in p.shape) for _ in range(6)]:
            orig = p[idx]
            p[idx] = orig + h
            up = loss_of()[0]
            p[idx] = orig - h
            down = loss_of()[0]
            p[idx] = orig
            assert grads[name][idx] == pytest.approx((up - down) / (2 * h), abs=1e-6, rel=1e-4), name


def test_one_update_changes_params_and_lowers_surrogate(batch) -> None:
    env, obs, mask = batch
    rng = np.random.default_rng(0)
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=8, init_scale=0.1, rng=rng)
    actions, old = policy.act_with_logp(obs, mask, rng)
    adv = rng.normal(size=len(obs))
    before = policy.copy_params()

    def surrogate() -> tuple[float, dict[str, np.ndarray]]:
        logp_all, cache = policy.forward(obs, mask)
        logp = logp_all[np.arange(len(obs)), actions]
        loss, dlogp, _ = grpo_loss(logp, old, old, adv, np.ones(len(obs)), 0.2, 0.0)
        return loss, policy.backward(cache, policy.dlogits_from_dlogp(cache, actions, dlogp))

    loss0, grads = surrogate()
    for k in policy.params:
        policy.params[k] -= 0.05 * grads[k]
    loss1, _ = surrogate()
    assert any(not np.array_equal(before[k], policy.params[k]) for k in before)
    assert loss1 < loss0


def test_set_lessons() -> None:
    policy = RandomPolicy()
    policy.set_lessons("residents", ["talk to people"])
    assert policy.lessons == {"residents": ["talk to people"]}
