"""A NumPy softmax policy: linear or one-hidden-layer MLP, one parameter set per group.

``logits = W2 · tanh(W1 · obs + b1) + b2`` (or ``W · obs + b`` when ``hidden == 0``), with the
weights of the agent's group (parameter sharing within a group), then a masked softmax:
impossible actions get probability exactly 0. Log-probabilities are exact and the gradients
are analytic (:meth:`SoftmaxPolicy.backward`), checked against finite differences in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agents.base import FloatArray, IntArray, LessonsMixin, group_index, masked_log_softmax, sample_from_logp
from ga_env.world import N_ACTIONS


@dataclass
class SoftmaxCache:
    """What :meth:`SoftmaxPolicy.backward` needs from the forward pass."""

    obs: FloatArray  # (B, D)
    group: IntArray  # (B,)
    hidden: FloatArray | None  # (B, H) tanh activations, None for the linear policy
    logp: FloatArray  # (B, A) masked log-probabilities


class SoftmaxPolicy(LessonsMixin):
    """Masked softmax over a per-group linear/MLP score of the observation.

    Args:
        obs_dim: observation size ``D`` (``env.obs_dim``).
        n_groups: number of groups ``G`` in the env (size of the observation's group one-hot).
        hidden: hidden units (0 = linear policy).
        init_scale: standard deviation of the output layer at initialisation (small: near-uniform start).
        rng: generator for the initial weights.
        greedy: act by argmax instead of sampling (evaluation only; GRPO rollouts sample).
    """

    def __init__(
        self,
        obs_dim: int,
        n_groups: int,
        *,
        hidden: int = 32,
        init_scale: float = 0.01,
        rng: np.random.Generator,
        greedy: bool = False,
    ) -> None:
        if hidden < 0:
            raise ValueError(f"hidden={hidden} must be >= 0 (0 = linear policy)")
        self.lessons = {}
        self.obs_dim, self.n_groups, self.hidden, self.greedy = obs_dim, n_groups, hidden, greedy
        g, d, a = n_groups, obs_dim, N_ACTIONS
        if hidden:
            self.params: dict[str, FloatArray] = {
                "w1": rng.normal(0.0, 1.0 / np.sqrt(d), (g, d, hidden)),  # (G, D, H)
                "b1": np.zeros((g, hidden)),  # (G, H)
                "w2": rng.normal(0.0, init_scale, (g, hidden, a)),  # (G, H, A)
                "b2": np.zeros((g, a)),  # (G, A)
            }
        else:
            self.params = {"w": rng.normal(0.0, init_scale, (g, d, a)), "b": np.zeros((g, a))}

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer]) -> tuple[FloatArray, SoftmaxCache]:
        """``(B, A)`` masked log-probabilities and the cache for :meth:`backward`."""
        x = np.asarray(obs, dtype=np.float64)  # (B, D)
        grp = group_index(x, self.n_groups)  # (B,)
        logits = np.empty((len(x), N_ACTIONS))
        h = np.empty((len(x), self.hidden)) if self.hidden else None
        p = self.params
        for k in range(self.n_groups):  # a few groups: one matmul per group, no (B, D, H) gather
            rows = np.flatnonzero(grp == k)
            if not len(rows):
                continue
            if h is not None:
                hk = np.tanh(x[rows] @ p["w1"][k] + p["b1"][k])  # (b, H)
                h[rows] = hk
                logits[rows] = hk @ p["w2"][k] + p["b2"][k]
            else:
                logits[rows] = x[rows] @ p["w"][k] + p["b"][k]
        logp = masked_log_softmax(logits, mask)
        return logp, SoftmaxCache(obs=x, group=grp, hidden=h, logp=logp)

    def backward(self, cache: SoftmaxCache, dlogits: FloatArray) -> dict[str, FloatArray]:
        """Gradients of a scalar loss w.r.t. ``params`` from ``dloss/dlogits`` ``(B, A)``."""
        grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        x, h, p = cache.obs, cache.hidden, self.params
        for k in range(self.n_groups):
            rows = np.flatnonzero(cache.group == k)
            if not len(rows):
                continue
            dz = dlogits[rows]  # (b, A)
            if h is not None:
                hk = h[rows]
                grads["w2"][k] = hk.T @ dz
                grads["b2"][k] = dz.sum(0)
                dpre = (dz @ p["w2"][k].T) * (1.0 - hk**2)  # (b, H) through tanh
                grads["w1"][k] = x[rows].T @ dpre
                grads["b1"][k] = dpre.sum(0)
            else:
                grads["w"][k] = x[rows].T @ dz
                grads["b"][k] = dz.sum(0)
        return grads

    @staticmethod
    def dlogits_from_dlogp(cache: SoftmaxCache, actions: IntArray, dlogp: FloatArray) -> FloatArray:
        """Chain rule through the masked log-softmax: ``d logp[a] / d logits = onehot(a) - p``.

        Masked actions have ``p = 0`` and are never taken, so their logits get no gradient.
        """
        probs = np.exp(cache.logp)  # (B, A)
        onehot = np.zeros_like(probs)
        onehot[np.arange(len(actions)), actions] = 1.0
        return dlogp[:, None] * (onehot - probs)

    # -- acting ------------------------------------------------------------------------------
    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        actions, _ = self.act_with_logp(obs, mask, rng)
        return actions

    def act_with_logp(
        self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator
    ) -> tuple[IntArray, FloatArray]:
        """Actions ``(B,)`` and their log-probabilities ``(B,)`` (sampled, or argmax if ``greedy``)."""
        logp, _ = self.forward(obs, mask)
        actions = np.argmax(logp, axis=1).astype(np.int64) if self.greedy else sample_from_logp(logp, rng)
        return actions, logp[np.arange(len(actions)), actions]

    def entropy(self, logp: FloatArray) -> FloatArray:
        """``(B,)`` entropy of the masked distribution from ``(B, A)`` log-probabilities."""
        probs = np.exp(logp)
        return -(probs * np.where(probs > 0, logp, 0.0)).sum(1)

    def copy_params(self) -> dict[str, FloatArray]:
        """A deep copy of the parameters (the frozen reference policy, checkpoints)."""
        return {k: v.copy() for k, v in self.params.items()}
