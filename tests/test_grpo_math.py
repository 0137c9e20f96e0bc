"""Tier 1: the GRPO maths against hand-computed values and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.grpo_math import Adam, clip_grad_norm, discounted_returns, group_advantages, grpo_loss


def test_group_advantages_rollout_hand_computed() -> None:
    rewards = np.array([[1.0], [3.0]])  # (G=2, N=1): mean 2, std 1
    adv, frac = group_advantages(rewards, group_size=2, scale="group", eps=0.0)
    np.testing.assert_allclose(adv, [[-1.0], [1.0]])
    assert frac == 0.0
    adv, _ = group_advantages(rewards, group_size=2, scale="none")
    np.testing.assert_allclose(adv, [[-1.0], [1.0]])


def test_group_advantages_two_groups_and_batch_scale() -> None:
    rewards = np.array([[0.0], [2.0], [10.0], [14.0]])  # two groups of 2: centred -1,1,-2,2
    adv, _ = group_advantages(rewards, group_size=2, scale="none")
    np.testing.assert_allclose(adv.ravel(), [-1, 1, -2, 2])
    adv, _ = group_advantages(rewards, group_size=2, scale="batch", eps=0.0)
    np.testing.assert_allclose(adv.ravel(), np.array([-1, 1, -2, 2]) / np.sqrt(2.5))
    adv, _ = group_advantages(rewards, group_size=2, scale="group", eps=0.0)
    np.testing.assert_allclose(adv.ravel(), [-1, 1, -1, 1])


def test_group_advantages_team_and_both() -> None:
    rewards = np.array([[1.0, 3.0, 5.0], [3.0, 5.0, 5.0]])  # (G=2, N=3); teams 0,0,1
    teams = np.array([0, 0, 1])
    adv, frac = group_advantages(rewards, 2, "none", group_by="team", teams=teams)
    np.testing.assert_allclose(adv, [[-1, 1, 0], [-1, 1, 0]])
    assert frac == pytest.approx(1 / 3)  # the lone member of team 1 has no variance
    adv, _ = group_advantages(rewards, 2, "none", group_by="both", teams=teams)
    # over rollouts: [[-1,-1,0],[1,1,0]]; then over teammates: all zero.
    np.testing.assert_allclose(adv, np.zeros((2, 3)))


def test_zero_variance_group_gives_zero_advantage_and_no_nan() -> None:
    rewards = np.full((4, 5, 3), 7.0)  # (G, T, N) identical rollouts
    for scale in ("group", "batch", "none"):
        adv, frac = group_advantages(rewards, 4, scale)
        assert np.all(np.isfinite(adv)) and np.all(adv == 0.0)
        assert frac == 1.0


def test_unknown_options_raise() -> None:
    with pytest.raises(ValueError, match="scale"):
        group_advantages(np.zeros((2, 1)), 2, "median")
    with pytest.raises(ValueError, match="group_by"):
        group_advantages(np.zeros((2, 1)), 2, "group", group_by="town")
    with pytest.raises(ValueError, match="teams"):
        group_advantages(np.zeros((2, 1)), 2, "group", group_by="team")


def test_discounted_returns() -> None:
    r = np.array([[[1.0], [2.0], [4.0]]])  # (1, T=3, 1)
    np.testing.assert_allclose(discounted_returns(r, 0.5).ravel(), [1 + 1 + 1, 2 + 2, 4])


def test_grpo_loss_hand_computed() -> None:
    logp = np.log(np.array([0.5, 0.9]))
    old = np.log(np.array([0.25, 0.9]))  # ratios 2 and 1
    adv = np.array([1.0, -1.0])
    loss, _, stats = grpo_loss(logp, old, logp, adv, np.ones(2), epsilon=0.2, beta=0.0)
    # sample 0: min(2*1, 1.2*1) = 1.2; sample 1: min(-1, -1) = -1 -> mean 0.1, loss -0.1
    assert loss == pytest.approx(-0.1)
    assert stats["clipfrac"] == pytest.approx(0.5)
    assert stats["kl"] == pytest.approx(0.0)


def test_kl_zero_when_policy_equals_reference_and_positive_otherwise() -> None:
    logp = np.log(np.array([0.2, 0.7]))
    _, _, stats = grpo_loss(logp, logp, logp, np.zeros(2), np.ones(2), 0.2, beta=1.0)
    assert stats["kl"] == 0.0
    _, _, stats = grpo_loss(logp, logp, np.log([0.4, 0.5]), np.zeros(2), np.ones(2), 0.2, beta=1.0)
    assert stats["kl"] > 0.0


def test_grpo_loss_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    logp = np.log(rng.uniform(0.1, 0.9, 6))
    old = logp + rng.normal(0, 0.1, 6)
    ref = logp + rng.normal(0, 0.3, 6)
    adv = rng.normal(size=6)
    mask = np.array([1, 1, 1, 0, 1, 1.0])
    _, grad, _ = grpo_loss(logp, old, ref, adv, mask, 0.2, 0.1)
    h = 1e-6
    for i in range(6):
        up, down = logp.copy(), logp.copy()
        up[i] += h
        down[i] -= h
        fd = (grpo_loss(up, old, ref, adv, mask, 0.2, 0.1)[0] - grpo_loss(down, old, ref, adv, mask, 0.2, 0.1)[0]) / (
            2 * h
        )
        assert grad[i] == pytest.approx(fd, abs=1e-6)


def test_clip_grad_norm_and_adam() -> None:
    grads, norm = clip_grad_norm({"a": np.array([3.0, 4.0])}, max_norm=1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.8])
    params = {"a": np.array([1.0, -1.0])}
    opt = Adam(params, lr=0.1)
    opt.step(params, {"a": np.array([2.0, -3.0])})
    np.testing.assert_allclose(params["a"], [0.9, -0.9])  # first Adam step moves by lr * sign(g)
