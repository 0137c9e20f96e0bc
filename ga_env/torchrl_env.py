"""The town as a batched TorchRL environment: ``n_envs`` towns in one ``EnvBase`` of batch size ``(n_envs,)``.

TorchRL's ``PettingZooWrapper`` steps one town and fills each persona's observation, reward and done flags in a
Python loop with a spec encode per value (about 10 ms per town step on artists' 15 personas: 23 minutes for
GRPO's budget of 138,240 steps). This environment steps ``n_envs`` towns as ONE
:class:`ga_env.batched.BatchedTownEnv` program on ``(E, N, ...)`` arrays and hands TorchRL the same tensordict
layout as ``PettingZooWrapper(group_map=..., categorical_actions=True, return_state=...)`` on a town built with
``obs_mode="dict"``, so the same actors, critics and losses train on either (``tests/test_torchrl.py`` checks
that both give the same observations, masks, rewards and done flags for the same actions):

- per group ``g``: ``(g, "observation", "observation")`` ``(E, n_g, D)`` float32, ``(g, "action_mask")``
  ``(E, n_g, 4)`` bool, ``(g, "action")`` ``(E, n_g)`` int64, ``(g, "reward")`` ``(E, n_g, 1)``, and
  ``(g, "done" | "terminated" | "truncated")`` ``(E, n_g, 1)``;
- the town's ``"done" | "terminated" | "truncated"`` ``(E, 1)`` and, with ``return_state``, ``"state"`` ``(E, S)``
  (each town's ``TownEnv.state()``).

Every town ends its day together (truncated, never terminated: the town has no early end), so a reset restarts
all of them; day ``d`` of copy ``e`` is seeded ``seed + e + n_envs * d`` (as :class:`ga_env.sb3.TownVecEnv`).

Needs the ``[marl]`` extra (torchrl, tensordict).
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from ga_env.batched import BatchedTownEnv
from ga_env.town import TownEnv

__all__ = ["TownTorchEnv"]


class TownTorchEnv(EnvBase):  # type: ignore[misc]
    """``n_envs`` towns as one TorchRL environment with one agent group per town group.

    Args:
        env: the town to copy (its world, dynamics, groups and ``max_cycles``).
        n_envs: towns stepped together (the batch size).
        seed: seed of the first day of copy 0 (None = drawn from the OS; ``set_seed`` sets it too).
        return_state: also return the towns' global states under ``"state"`` (MAPPO's critic input).
    """

    batch_locked = True

    def __init__(self, env: TownEnv, n_envs: int, *, seed: int | None = None, return_state: bool = False) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"TownTorchEnv: n_envs: {n_envs!r} is not a positive integer. Fix: give e.g. 8")
        if env.action_mode != "discrete":
            raise ValueError(
                f"TownTorchEnv: env.action_mode: {env.action_mode!r} actions hold an utterance. "
                "Fix: build the town with action_mode='discrete'"
            )
        super().__init__(device="cpu", batch_size=torch.Size([n_envs]))
        self.town = env
        self.batch = BatchedTownEnv(env, n_envs)
        self.return_state = return_state
        self.members = {
            grp.name: torch.as_tensor(np.flatnonzero(env.group_of == k)) for k, grp in enumerate(env.groups)
        }
        self._seed = seed
        self._day = 0
        e, d = n_envs, int(env.obs_dim)

        def flag(*shape: int) -> Categorical:
            return Categorical(n=2, shape=torch.Size(shape), dtype=torch.bool)

        obs, act, rew = Composite(shape=(e,)), Composite(shape=(e,)), Composite(shape=(e,))
        done = Composite({k: flag(e, 1) for k in ("done", "terminated", "truncated")}, shape=(e,))
        for name, idx in self.members.items():
            n = len(idx)
            obs[name] = Composite(
                observation=Composite(observation=Unbounded(shape=(e, n, d)), shape=(e, n)),
                action_mask=flag(e, n, 4),
                shape=(e, n),
            )
            act[name] = Composite(action=Categorical(n=4, shape=(e, n)), shape=(e, n))
            rew[name] = Composite(reward=Unbounded(shape=(e, n, 1)), shape=(e, n))
            done[name] = Composite({k: flag(e, n, 1) for k in ("done", "terminated", "truncated")}, shape=(e, n))
        if return_state:
            obs["state"] = Unbounded(shape=(e, int(env.state_space.shape[0])))
        self.observation_spec = obs
        self.action_spec = act
        self.reward_spec = rew
        self.done_spec = done

    def _set_seed(self, seed: int | None) -> None:
        """Seed the next reset (copy ``e``: ``seed + e``) and restart the day count."""
        self._seed, self._day = seed, 0

    def _day_seeds(self) -> list[int]:
        if self._seed is None:
            self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        base = self._seed + self.batch.num_envs * self._day
        self._day += 1
        return [base + k for k in range(self.batch.num_envs)]

    def _out(self, obs: np.ndarray, mask: np.ndarray, rewards: np.ndarray | None, ended: bool) -> TensorDict:
        e = self.batch.num_envs
        o = torch.from_numpy(obs)
        m = torch.from_numpy(mask.astype(bool))
        r = None if rewards is None else torch.from_numpy(rewards.astype(np.float32)).unsqueeze(-1)
        out: dict[str, object] = {}
        for name, idx in self.members.items():
            n = len(idx)
            ends = torch.full((e, n, 1), ended)
            group: dict[str, object] = {
                "observation": TensorDict({"observation": o[:, idx]}, batch_size=(e, n)),
                "action_mask": m[:, idx],
                "done": ends,
                "terminated": torch.zeros((e, n, 1), dtype=torch.bool),
                "truncated": ends.clone(),
            }
            if r is not None:
                group["reward"] = r[:, idx]
            out[name] = TensorDict(group, batch_size=(e, n))
        town_end = torch.full((e, 1), ended)
        out.update(done=town_end, terminated=torch.zeros((e, 1), dtype=torch.bool), truncated=town_end.clone())
        if self.return_state:
            out["state"] = torch.from_numpy(self.batch.state())
        return TensorDict(out, batch_size=(e,))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: object) -> TensorDict:
        partial = None if tensordict is None else tensordict.get("_reset", None)
        if partial is not None and not bool(partial.all()) and bool(partial.any()):
            raise RuntimeError("TownTorchEnv: the towns end their days together; a partial reset cannot happen")
        obs, mask = self.batch.reset_arrays(seeds=self._day_seeds())
        return self._out(obs, mask, None, False)

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        e, n = self.batch.num_envs, self.batch.num_agents
        actions = torch.empty((e, n), dtype=torch.int64)
        for name, idx in self.members.items():
            actions[:, idx] = tensordict.get((name, "action"))
        obs, mask, rewards, ended = self.batch.step_arrays(actions.numpy())
        return self._out(obs, mask, rewards, bool(ended))
