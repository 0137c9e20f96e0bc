"""Uniform random policy over the valid (masked) actions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agents.base import IntArray, LessonsMixin


class RandomPolicy(LessonsMixin):
    """Picks uniformly among the actions the mask allows (a baseline; lessons are ignored)."""

    def __init__(self) -> None:
        self.lessons = {}

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        # Random keys on the valid entries, argmax: uniform over the valid set, vectorised.
        keys = np.where(mask.astype(bool), rng.random(mask.shape), -1.0)
        return np.argmax(keys, axis=1).astype(np.int64)
