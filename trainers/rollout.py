"""GRPO rollouts: the G episodes of one group, in-process or on Ray workers.

Every rollout ``g`` of iteration ``it`` samples its actions from its own generator,
:func:`rollout_generators` ``(trainer seed, it, g)``, and all G episodes start from the same env
seed, so a rollout's trajectory depends on nothing else: not on which process runs it, nor on
how many rollouts share a batch. That is what makes the Ray backend train exactly the same
parameters as the in-process one.

Three ways to step the G episodes, with the same trajectories:

* ``batched`` (default): one :class:`ga_env.batched.BatchedTownEnv`, a single NumPy program on
  ``(G, N, ...)`` arrays;
* one :class:`ga_env.TownEnv` per rollout, stepped one by one (``trainer.rollout.batched=false``),
  and always for a policy that needs per-agent env context (:class:`EnvAwarePolicy`, e.g. a
  neuro-symbolic policy asking its LLM about each persona): the policy's
  ``augment_obs(envs, obs)`` turns the ``(G, N, D)`` observations into ``(G, N, D')`` before
  acting, and the augmented ones are recorded (they are what the policy is trained on);
* :class:`RayRollouts`: the G rollouts split over Ray actors, each running one of the above.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agents.base import FloatArray, IntArray, TrainablePolicy
from ga_env import TownEnv
from ga_env.batched import BatchedTownEnv
from ga_env.world import N_ACTIONS

if TYPE_CHECKING:
    from conf.schema import Config


@runtime_checkable
class EnvAwarePolicy(Protocol):
    """A policy that adds per-agent env context to the observations before acting."""

    def augment_obs(self, envs: Sequence[TownEnv], obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(G, N, D)`` observations of the G envs → ``(G, N, D')`` observations the policy acts on."""
        ...


@dataclass
class GroupRollout:
    """The recorded G episodes of one GRPO group (arrays ``(G, T, N, ...)``)."""

    obs: npt.NDArray[np.float32]  # (G, T, N, D) observations the policy acted on (augmented if any)
    mask: npt.NDArray[np.int8]  # (G, T, N, 4)
    actions: IntArray  # (G, T, N) sampled actions
    effective: IntArray  # (G, T, N) what the env did (4 = no-op: a masked action)
    logp: FloatArray  # (G, T, N) log-probability of the sampled action
    rewards: FloatArray  # (G, T, N)
    places: IntArray  # (G, T, N) place index before the step
    partners: IntArray  # (G, T, N) chat partner (-1 = none)

    @classmethod
    def concat(cls, parts: Sequence[GroupRollout]) -> GroupRollout:
        """Join rollouts run separately (e.g. on several workers) along the G axis, in order."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))


def rollout_generators(seed: int, iteration: int, indices: Sequence[int]) -> list[np.random.Generator]:
    """The generator of each rollout index: ``SeedSequence(seed, spawn_key=(iteration, g))``.

    Independent streams (NumPy's ``SeedSequence`` spawning) that any process can rebuild from
    the three integers alone.
    """
    return [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(iteration, int(g)))) for g in indices]


def sample_actions(logp: FloatArray, rngs: Sequence[np.random.Generator]) -> IntArray:
    """One categorical draw per row of ``logp`` ``(G, N, A)``, rollout ``g`` using ``rngs[g]``.

    Inverse CDF on ``N`` uniforms per rollout and step, so a rollout consumes its generator the
    same way whatever else is in the batch.
    """
    n, a = logp.shape[1:]
    u = np.stack([r.random(n) for r in rngs])[:, :, None]  # (G, N, 1)
    cdf = np.cumsum(np.exp(logp), axis=2)  # (G, N, A)
    return np.minimum((u * cdf[:, :, -1:] > cdf).sum(axis=2), a - 1).astype(np.int64)


def collect(
    env: BatchedTownEnv | Sequence[TownEnv],
    policy: TrainablePolicy,
    env_seed: int,
    rngs: Sequence[np.random.Generator],
) -> GroupRollout:
    """Roll out one episode per generator from ``env_seed``; returns the recorded arrays.

    Args:
        env: a batched env with ``len(rngs)`` episodes, or one ``TownEnv`` per rollout (required
            when the policy is an :class:`EnvAwarePolicy`).
        policy: acts on all agents of all rollouts at once (``forward`` gives the masked log-probs).
        env_seed: seed of every episode (GRPO: the G rollouts start from the same state).
        rngs: one action-sampling generator per rollout (:func:`rollout_generators`).
    """
    aware = isinstance(policy, EnvAwarePolicy)
    if isinstance(env, BatchedTownEnv):
        if aware:
            raise ValueError(
                "trainers.rollout: the policy needs per-agent env context (augment_obs), which the batched env "
                "cannot give. Fix: pass one TownEnv per rollout (trainer.rollout.batched=false)"
            )
        if env.num_envs != len(rngs):
            raise ValueError(f"trainers.rollout: {env.num_envs} batched envs for {len(rngs)} generators")
        obs, mask = env.reset_arrays(env_seed)
        n, t_max = env.num_agents, env.max_cycles
    else:
        envs = list(env)
        if len(envs) != len(rngs):
            raise ValueError(f"trainers.rollout: {len(envs)} envs for {len(rngs)} generators")
        states = [e.reset_arrays(env_seed) for e in envs]
        obs, mask = np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
        n, t_max = len(envs[0].possible_agents), envs[0].max_cycles
    g_size = len(rngs)
    act_buf = np.empty((g_size, t_max, n), dtype=np.int64)
    eff_buf = np.empty((g_size, t_max, n), dtype=np.int64)
    logp_buf = np.empty((g_size, t_max, n))
    rew_buf = np.empty((g_size, t_max, n))
    place_buf = np.empty((g_size, t_max, n), dtype=np.int64)
    partner_buf = np.empty((g_size, t_max, n), dtype=np.int64)
    mask_buf = np.empty((g_size, t_max, n, N_ACTIONS), dtype=np.int8)
    obs_buf: npt.NDArray[np.float32] | None = None
    for t in range(t_max):
        if aware:
            obs = policy.augment_obs(envs, obs)  # type: ignore[attr-defined]
        if obs_buf is None:
            obs_buf = np.empty((g_size, t_max, n, obs.shape[-1]), dtype=np.float32)
        logp_all, _ = policy.forward(obs.reshape(g_size * n, -1), mask.reshape(g_size * n, N_ACTIONS))
        logp_all = logp_all.reshape(g_size, n, N_ACTIONS)
        actions = sample_actions(logp_all, rngs)  # (G, N)
        obs_buf[:, t], mask_buf[:, t], act_buf[:, t] = obs, mask, actions
        logp_buf[:, t] = np.take_along_axis(logp_all, actions[:, :, None], axis=2)[:, :, 0]
        if isinstance(env, BatchedTownEnv):
            place_buf[:, t] = env.current_places
            obs, mask, rew_buf[:, t], _ = env.step_arrays(actions)
            eff_buf[:, t], partner_buf[:, t] = env.last_action, env.last_partner
        else:
            for g, e in enumerate(envs):
                place_buf[g, t] = e.current_places
                o, m, rew_buf[g, t], _ = e.step_arrays(actions[g])
                states[g] = (o, m)
                eff_buf[g, t], partner_buf[g, t] = e.last_action, e.last_partner
            obs, mask = np.stack([s[0] for s in states]), np.stack([s[1] for s in states])
    assert obs_buf is not None
    return GroupRollout(obs_buf, mask_buf, act_buf, eff_buf, logp_buf, rew_buf, place_buf, partner_buf)


class InProcessRollouts:
    """Runs the G rollouts of each iteration in this process (batched, or one env per rollout).

    Args:
        cfg: the run's configuration (``cfg.env``, ``cfg.trainer.seed``, ``group_size``, ``rollout``).
        policy: the policy that will act (an :class:`EnvAwarePolicy` gets one ``TownEnv`` per rollout).
    """

    def __init__(self, cfg: Config, policy: TrainablePolicy) -> None:
        self.seed, self.group_size = cfg.trainer.seed, cfg.trainer.group_size
        self.env: BatchedTownEnv | list[TownEnv]
        if cfg.trainer.rollout.batched and not isinstance(policy, EnvAwarePolicy):
            self.env = BatchedTownEnv(cfg.env.make(), self.group_size)
        else:
            self.env = [cfg.env.make() for _ in range(self.group_size)]

    def run(
        self, policy: TrainablePolicy, iteration: int, env_seed: int, lessons: Mapping[str, Sequence[str]]
    ) -> GroupRollout:
        """The G rollouts of ``iteration`` from ``env_seed`` (``policy`` already holds ``lessons``)."""
        return collect(self.env, policy, env_seed, rollout_generators(self.seed, iteration, range(self.group_size)))

    def llm_usage_reports(self) -> list[dict[str, Any]]:
        """Usage of LLM backends outside this process: none (the learner's policy acts here)."""
        return []

    def close(self) -> None:
        """Nothing to release in-process."""


def _split(total: int, parts: int) -> list[range]:
    """``parts`` contiguous, near-equal ranges covering ``range(total)`` (empty ones dropped)."""
    bounds = np.linspace(0, total, min(parts, total) + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


class _Worker:
    """A Ray actor: its own envs and policy copy; runs the rollouts it is given."""

    def __init__(self, cfg: Config, indices: Sequence[int]) -> None:
        from agents.factory import make_policy

        self.cfg, self.seed, self.indices = cfg, cfg.trainer.seed, list(indices)
        base = cfg.env.make()
        self.policy = make_policy(cfg.agent, cfg.llm, base, np.random.default_rng(0))
        self.env: BatchedTownEnv | list[TownEnv]
        if cfg.trainer.rollout.batched and not isinstance(self.policy, EnvAwarePolicy):
            self.env = BatchedTownEnv(base, len(self.indices))
        else:
            self.env = [base] + [cfg.env.make() for _ in self.indices[1:]]

    def run(
        self, params: dict[str, FloatArray], lessons: Mapping[str, Sequence[str]], iteration: int, env_seed: int
    ) -> GroupRollout:
        """The rollouts of this worker's indices with the learner's current parameters and lessons."""
        self.policy.params = {k: v.copy() for k, v in params.items()}
        for group, text in lessons.items():
            self.policy.set_lessons(group, text)
        return collect(self.env, self.policy, env_seed, rollout_generators(self.seed, iteration, self.indices))

    def llm_usage(self) -> dict[str, Any] | None:
        """The usage report of this worker's LLM backend (None without an LLM in the policy)."""
        from agents.factory import shared_llm_usage

        return shared_llm_usage(self.cfg.agent, self.cfg.llm)


class RayRollouts:
    """Runs the G rollouts of each iteration on ``num_workers`` Ray actors (extra ``[ray]``).

    Connects to ``address`` (``"auto"``: the cluster this machine belongs to, ``"ray://host:10001"``:
    a remote one) or, when ``address`` is None and no runtime is up yet, starts a local one. A
    runtime that was already initialised (e.g. by the caller) is used as it is and left running.
    """

    def __init__(self, cfg: Config, policy: TrainablePolicy) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError(
                "config: trainer.rollout.backend: 'ray' needs Ray. Fix: pip install -e '.[ray]' "
                "or use trainer.rollout.backend=inprocess"
            ) from None
        self._ray = ray
        rc = cfg.trainer.rollout
        self._started = False
        if not ray.is_initialized():
            if rc.address is None:
                ray.init(num_cpus=rc.num_workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=rc.address, log_to_driver=False)
            self._started = True
        actor: Any = ray.remote(num_cpus=1)(_Worker)
        self.workers: list[Any] = [actor.remote(cfg, list(r)) for r in _split(cfg.trainer.group_size, rc.num_workers)]

    def run(
        self, policy: TrainablePolicy, iteration: int, env_seed: int, lessons: Mapping[str, Sequence[str]]
    ) -> GroupRollout:
        """The G rollouts of ``iteration``: each worker runs its slice with the current parameters."""
        ray = self._ray
        params = ray.put(policy.params)
        parts = ray.get([w.run.remote(params, lessons, iteration, env_seed) for w in self.workers])
        return GroupRollout.concat(parts)

    def llm_usage_reports(self) -> list[dict[str, Any]]:
        """The workers' LLM usage reports (each worker has its own backend)."""
        reports = self._ray.get([w.llm_usage.remote() for w in self.workers])
        return [r for r in reports if r is not None]

    def close(self) -> None:
        """Stop the actors, and the runtime if this object started it."""
        for w in self.workers:
            self._ray.kill(w)
        if self._started:
            self._ray.shutdown()
