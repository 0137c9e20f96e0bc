"""The policy contract and small helpers shared by the policies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ga_env.world import BASE_OBS_DIM

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of observations (all live agents of one or more steps) to actions."""

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        """Choose one action per row.

        Args:
            obs: ``(B, D)`` observations (``env.reset_arrays`` / ``env.step_arrays`` layout).
            mask: ``(B, 4)`` action mask, 1 = possible.
            rng: the caller's generator (policies never touch the global RNG).

        Returns:
            ``(B,)`` int64 actions in ``[0, 4)``.
        """
        ...

    def set_lessons(self, group: str, lessons: Sequence[str]) -> None:
        """Receive the plain-language lessons of ``group`` (reward-to-prompt injection)."""
        ...


@runtime_checkable
class TrainablePolicy(Policy, Protocol):
    """A policy with exact log-probabilities and analytic gradients (GRPO needs both)."""

    params: dict[str, FloatArray]

    def forward(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer]) -> tuple[FloatArray, Any]:
        """``(B, 4)`` masked log-probabilities and a cache for :meth:`backward`."""
        ...

    def backward(self, cache: Any, dlogits: FloatArray) -> dict[str, FloatArray]:
        """Gradients of a scalar loss w.r.t. ``params`` given ``dloss/dlogits`` ``(B, 4)``."""
        ...


def group_index(obs: npt.NDArray[np.floating], n_groups: int) -> IntArray:
    """``(B,)`` index of each row's group, read from the group one-hot of the observation."""
    return np.argmax(obs[:, BASE_OBS_DIM : BASE_OBS_DIM + n_groups], axis=1).astype(np.int64)


def masked_log_softmax(logits: FloatArray, mask: npt.NDArray[np.integer]) -> FloatArray:
    """Log-softmax over the valid actions only; masked entries get ``-inf``.

    Args:
        logits: ``(B, A)``.
        mask: ``(B, A)``, at least one valid entry per row.
    """
    valid = mask.astype(bool)
    z = np.where(valid, logits, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def sample_from_logp(logp: FloatArray, rng: np.random.Generator) -> IntArray:
    """One categorical draw per row from ``(B, A)`` log-probabilities (inverse CDF, vectorised)."""
    cdf = np.cumsum(np.exp(logp), axis=1)
    u = rng.random((logp.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), logp.shape[1] - 1).astype(np.int64)


class LessonsMixin:
    """Holds the lessons handed to each group (the numeric policies keep them for inspection)."""

    lessons: dict[str, list[str]]

    def set_lessons(self, group: str, lessons: Sequence[str]) -> None:
        self.lessons[group] = list(lessons)
