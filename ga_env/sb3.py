"""The town as a Stable-Baselines3 ``VecEnv`` with action masks (for sb3-contrib's ``MaskablePPO``).

One row per persona of each of ``n_envs`` towns (parameter sharing: the group one-hot is part of
the observation), stepped as ONE :class:`ga_env.batched.BatchedTownEnv` program on ``(E, N, ...)``
arrays, with the town's action masks exposed as ``action_masks()`` (and through ``env_method``, as
``sb3_contrib.common.maskable.utils.get_action_masks`` asks a ``VecEnv``)::

    from sb3_contrib import MaskablePPO
    venv = TownVecEnv(ga_env.parallel_env(), n_envs=8, seed=0)
    model = MaskablePPO("MlpPolicy", venv, n_steps=144, seed=0).learn(8 * 144 * 25)

Every town ends its day together (the town has no early termination): the rows' episodes are
truncated (``TimeLimit.truncated`` in their infos, so PPO bootstraps the value of the last
observation, ``terminal_observation``), and the next days start from fresh seeds: day ``d`` of copy
``e`` is seeded ``seed + e + n_envs * d`` (SB3's ``VecEnv.seed`` convention: copy ``e`` gets
``seed + e``). Each row's ``episode`` info (``r``, ``l``) is what SB3's logger expects from a
``VecMonitor``.

Needs the ``[marl]`` extra (stable-baselines3; sb3-contrib for ``MaskablePPO``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import numpy.typing as npt
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from ga_env.batched import BatchedTownEnv
from ga_env.town import TownEnv

__all__ = ["TownVecEnv"]


class TownVecEnv(VecEnv):
    """``n_envs`` towns x N personas as ``n_envs * N`` rows of an SB3 ``VecEnv`` with action masks.

    Args:
        env: the town to copy (its world, dynamics and ``max_cycles``; its ``obs_mode`` does not
            matter: rows get the observation vector, the mask comes from ``action_masks()``).
        n_envs: towns stepped together.
        seed: seed of the first day of copy 0 (None = drawn from the OS; ``seed()`` sets it too).
    """

    def __init__(self, env: TownEnv, n_envs: int, seed: int | None = None) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"TownVecEnv: n_envs: {n_envs!r} is not a positive integer. Fix: give e.g. 8")
        if env.action_mode != "discrete":
            raise ValueError(
                f"TownVecEnv: env.action_mode: {env.action_mode!r} actions hold an utterance. "
                "Fix: build the town with action_mode='discrete'"
            )
        self.town = env
        self.batch = BatchedTownEnv(env, n_envs)
        self.n_towns, self.n_agents = n_envs, len(env.possible_agents)
        space = env.observation_space(env.possible_agents[0])
        box = space["observation"] if isinstance(space, gymnasium.spaces.Dict) else space
        super().__init__(n_envs * self.n_agents, box, env.action_space(env.possible_agents[0]))
        self._seed = seed
        self._day = 0
        self._actions: npt.NDArray[np.int64] = np.zeros(self.num_envs, dtype=np.int64)
        self._mask: npt.NDArray[np.int8] = np.ones((self.num_envs, 4), dtype=np.int8)
        self._returns = np.zeros(self.num_envs)
        self._length = 0

    # -- SB3 VecEnv ---------------------------------------------------------------------------------
    def seed(self, seed: int | None = None) -> Sequence[int | None]:  # type: ignore[override]
        """Seed the next reset (copy ``e``: ``seed + e``) and restart the day count."""
        self._seed, self._day = seed, 0
        return [None if seed is None else seed + e for e in range(self.n_towns)]

    def _day_seeds(self) -> list[int]:
        if self._seed is None:
            self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        base = self._seed + self.n_towns * self._day
        self._day += 1
        return [base + e for e in range(self.n_towns)]

    def _new_day(self) -> npt.NDArray[np.float32]:
        obs, mask = self.batch.reset_arrays(seeds=self._day_seeds())
        self._mask = mask.reshape(self.num_envs, -1)
        self._returns[:] = 0.0
        self._length = 0
        return obs.reshape(self.num_envs, -1)

    def reset(self) -> VecEnvObs:
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._new_day()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, mask, rewards, done = self.batch.step_arrays(self._actions.reshape(self.n_towns, self.n_agents))
        obs = obs.reshape(self.num_envs, -1)
        rew = rewards.reshape(self.num_envs).astype(np.float32)
        self._mask = mask.reshape(self.num_envs, -1)
        self._returns += rew
        self._length += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        dones = np.full(self.num_envs, bool(done))
        if done:
            for k in range(self.num_envs):
                infos[k] = {
                    "terminal_observation": obs[k],
                    "TimeLimit.truncated": True,
                    "episode": {"r": float(self._returns[k]), "l": self._length},
                }
            obs = self._new_day()
        return obs, rew, dones, infos

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """``(rows, 4)`` booleans: the actions each persona can take now."""
        return self._mask.astype(bool)

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "action_masks":
            return [self.action_masks] * len(self._indices(indices))
        if not hasattr(self.town, attr_name):
            raise AttributeError(f"TownVecEnv: the town has no attribute {attr_name!r}")
        return [getattr(self.town, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"TownVecEnv: set_attr({attr_name!r}): the rows share one town and cannot differ")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        rows = self._indices(indices)
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[k] for k in rows]
        raise AttributeError(f"TownVecEnv: env_method({method_name!r}) is not supported (only action_masks)")

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return [int(k) for k in indices]
