"""GRPO maths as pure NumPy functions (named as in the papers; shapes in comments).

* Group-relative advantages: Shao et al., *DeepSeekMath* (arXiv 2402.03300), §4.1.2:
  ``A = (R - mean(R_group)) / std(R_group)``; Liu et al., *Understanding R1-Zero-like
  training* (Dr. GRPO, arXiv 2503.20783) drop the std scaling (``scale="none"``).
* Clipped surrogate (Schulman et al. 2017, PPO) with a KL penalty to a frozen reference
  policy estimated with Schulman's "k3" estimator ``exp(ref - logp) - (ref - logp) - 1``
  (unbiased, non-negative), as in DeepSeekMath eq. (4).
* Adam (Kingma & Ba 2015) and global gradient-norm clipping.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from conf.schema import GROUP_BY, SCALES  # the accepted values live in the config schema

FloatArray = npt.NDArray[np.float64]
ZERO_STD = 1e-8


def discounted_returns(rewards: FloatArray, gamma: float) -> FloatArray:
    """Per-agent discounted reward-to-go ``R_t = sum_k gamma^k r_{t+k}`` along axis 1.

    Args:
        rewards: ``(G, T, N)`` per-step rewards of G rollouts, T steps, N agents.
        gamma: discount in ``[0, 1]``; 1 gives the undiscounted return-to-go.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma={gamma} must be in [0, 1]")
    out = np.empty_like(rewards, dtype=np.float64)  # (G, T, N)
    acc = np.zeros((rewards.shape[0], rewards.shape[2]))  # (G, N)
    for t in range(rewards.shape[1] - 1, -1, -1):
        acc = rewards[:, t] + gamma * acc
        out[:, t] = acc
    return out


def group_advantages(
    rewards: FloatArray,
    group_size: int,
    scale: str = "group",
    *,
    group_by: str = "rollout",
    teams: npt.NDArray[np.integer] | None = None,
    eps: float = 1e-4,
) -> tuple[FloatArray, float]:
    """Group-relative advantages (GRPO) and the fraction of zero-variance groups.

    Args:
        rewards: ``(B, ..., N)`` returns; axis 0 holds ``B = n_prompts * group_size`` rollouts in
            consecutive blocks of ``group_size`` that share a seed (the GRPO group), the last axis
            the N agents. Any axes in between (e.g. time ``T`` for reward-to-go) are kept.
        group_size: rollouts per group (``G``).
        scale: ``"group"`` divides by the std of each group (GRPO), ``"batch"`` by the std of all
            centred returns, ``"none"`` not at all (Dr. GRPO).
        group_by: ``"rollout"``: baseline = mean over the G rollouts of the same agent (and step);
            ``"team"``: mean over the agents of the same team within one rollout; ``"both"``:
            centre over rollouts, then over teammates.
        teams: ``(N,)`` team (semantic group) of each agent; needed unless ``group_by="rollout"``.
        eps: added to the std (avoids 0/0: a zero-variance group gives advantage 0).

    Returns:
        ``(advantages, frac_zero_std)``: advantages of the same shape as ``rewards`` and the
        fraction of groups whose returns all coincide (they carry no learning signal).
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by={group_by!r} is unknown; use one of {GROUP_BY}")
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is unknown; use one of {SCALES}")
    if group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rollouts do not split into groups of group_size={group_size}")
    r = np.asarray(rewards, dtype=np.float64)
    grouped = r.reshape(-1, group_size, *r.shape[1:])  # (P, G, ..., N)
    centred = grouped
    std_sq = np.zeros_like(grouped)  # per-element variance of the element's group
    if group_by in ("rollout", "both"):
        centred = centred - centred.mean(axis=1, keepdims=True)
        std_sq = np.broadcast_to((centred**2).mean(axis=1, keepdims=True), centred.shape)
    if group_by in ("team", "both"):
        if teams is None or len(teams) != r.shape[-1]:
            raise ValueError(f"group_by={group_by!r} needs teams of shape ({r.shape[-1]},)")
        onehot = np.eye(int(np.max(teams)) + 1)[np.asarray(teams)]  # (N, K)
        count = onehot.sum(0)  # (K,)
        mean = (centred @ onehot) / count  # (P, G, ..., K)
        centred = centred - mean @ onehot.T
        var = ((centred**2) @ onehot) / count  # (P, G, ..., K) variance over teammates
        if group_by == "both":  # the team std is taken over rollouts and teammates together
            var = var.mean(axis=1, keepdims=True)
        std_sq = np.broadcast_to(var @ onehot.T, centred.shape)
    std = np.sqrt(std_sq)
    frac_zero_std = float(np.mean(std < ZERO_STD))
    if scale == "group":
        adv = centred / (std + eps)
    elif scale == "batch":
        adv = centred / (centred.std() + eps)
    else:
        adv = centred
    return adv.reshape(r.shape), frac_zero_std


def grpo_loss(
    logp: FloatArray,
    old_logp: FloatArray,
    ref_logp: FloatArray,
    adv: FloatArray,
    mask: FloatArray,
    epsilon: float,
    beta: float,
) -> tuple[float, FloatArray, dict[str, float]]:
    """Clipped-ratio surrogate + ``beta`` * k3 KL to the reference, averaged over ``mask``.

    ``L = -mean[min(rho A, clip(rho, 1-eps, 1+eps) A)] + beta mean[exp(ref-logp) - (ref-logp) - 1]``
    with ``rho = exp(logp - old_logp)`` (DeepSeekMath eq. 3-4).

    Args:
        logp, old_logp, ref_logp: ``(S,)`` log-probabilities of the taken actions under the
            current, behaviour (rollout) and frozen reference policies.
        adv: ``(S,)`` advantages.
        mask: ``(S,)`` 1 for samples that count (0 = padding).
        epsilon: clip range.
        beta: KL coefficient (0 = no KL term).

    Returns:
        ``(loss, dloss/dlogp (S,), stats)`` with stats ``policy``, ``kl``, ``clipfrac``.
    """
    m = mask.astype(np.float64)
    n = max(float(m.sum()), 1.0)
    ratio = np.exp(logp - old_logp)  # (S,)
    unclipped = ratio * adv
    clipped = np.clip(ratio, 1.0 - epsilon, 1.0 + epsilon) * adv
    surrogate = np.minimum(unclipped, clipped)
    # The gradient flows through rho*A where it is the minimum (or where clipping is inactive).
    active = unclipped <= clipped
    dsur = np.where(active, ratio * adv, 0.0)  # d(rho A)/dlogp = rho A
    log_ratio_ref = ref_logp - logp
    kl = np.exp(log_ratio_ref) - log_ratio_ref - 1.0  # k3 >= 0, = 0 when logp == ref_logp
    dkl = 1.0 - np.exp(log_ratio_ref)
    policy_loss = -float((surrogate * m).sum() / n)
    kl_mean = float((kl * m).sum() / n)
    loss = policy_loss + beta * kl_mean
    dlogp = (-dsur + beta * dkl) * m / n
    clipfrac = float(((np.abs(ratio - 1.0) > epsilon) * m).sum() / n)
    return loss, dlogp, {"policy": policy_loss, "kl": kl_mean, "clipfrac": clipfrac}


def clip_grad_norm(grads: Mapping[str, FloatArray], max_norm: float) -> tuple[dict[str, FloatArray], float]:
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``."""
    norm = float(np.sqrt(sum(float((g**2).sum()) for g in grads.values())))
    factor = min(1.0, max_norm / (norm + 1e-12)) if max_norm > 0 else 1.0
    return {k: g * factor for k, g in grads.items()}, norm


class Adam:
    """Adam (Kingma & Ba 2015) over a dict of arrays; its state is plain arrays for checkpoints."""

    def __init__(self, params: Mapping[str, FloatArray], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.lr, self.betas, self.eps = lr, betas, 1e-8
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, FloatArray], grads: Mapping[str, FloatArray]) -> None:
        """Update ``params`` in place (gradient descent on the loss)."""
        self.t += 1
        b1, b2 = self.betas
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g**2
            m_hat = self.m[k] / (1 - b1**self.t)
            v_hat = self.v[k] / (1 - b2**self.t)
            params[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
