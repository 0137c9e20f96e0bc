"""RLlib multi-agent PPO on the town: one policy per town group, on a local Ray runtime or a cluster.

The command line is ``scripts/train_rllib.py`` (``python scripts/train_rllib.py +experiment=artists
trainer.seed=0 [--address auto] [--json]``); this module is what it calls (:func:`run`).

- **Env.** :class:`RLlibTown` is the town as an RLlib ``MultiAgentEnv``, built in each env runner from the
  same Hydra overrides as the GRPO trainer (``conf/`` composition), with the observation RLlib's
  action-masking module reads: ``{"observations": the persona's vector, "action_mask": its mask}``.
- **Policies.** One RLModule per town group (``policy_mapping_fn``: agent → its group), each RLlib's
  ``ActionMaskingTorchRLModule`` (its PPO module with the mask added to the logits, from RLlib's own
  examples), ``fcnet_hiddens`` two layers of 64.
- **Where it runs.** No address starts a local Ray runtime (``num_env_runners=0``: the driver
  collects); ``--address auto`` or ``ray://host:10001`` joins a cluster, with ``--env-runners K``
  collecting in parallel; without ``--address``, ``trainer.rollout.address`` (our GRPO trainer's) is used.
- **Budget and evaluation** as GRPO's: ``trainer.iterations`` PPO iterations of ``trainer.group_size``
  days each (``train_batch_size_per_learner`` counts town steps); a learning-curve point every
  ``trainer.eval_every`` iterations on GRPO's curve seeds, the final evaluation on GRPO's final seeds,
  each module's logits masked and sampled (:class:`RLlibPolicy`).

Needs the ``[ray]`` extra (``ray[rllib]``) and torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import numpy.typing as npt
import torch
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from agents.base import IntArray, LessonsMixin, masked_log_softmax, sample_from_logp
from conf.compose import compose
from conf.schema import Config
from ga_env.checkpoint import atomic_write_bytes
from ga_env.town import TownEnv
from trainers import cli
from trainers.evaluate import evaluate
from trainers.grpo import EVAL_SEED_BASE


@dataclass(frozen=True, kw_only=True)
class RLlibSettings:
    """RLlib PPO hyperparameters (its names), with the values our other PPOs use."""

    env_steps: int | None = None
    """Town steps to train for (None = GRPO's ``iterations x group_size x max_cycles``)."""
    num_epochs: int = 10
    minibatches: int = 8
    """Minibatches per epoch (``minibatch_size`` = the batch's town steps / this)."""
    lr: float = 1e-3
    gamma: float | None = None
    """Discount (None = ``trainer.gamma``)."""
    lambda_: float = 0.95
    clip_param: float = 0.2
    entropy_coeff: float = 0.01
    grad_clip: float = 0.5
    hidden: int = 64
    env_runners: int = 0
    """Env-runner actors collecting in parallel (0 = the driver collects)."""
    address: str | None = None
    """Ray cluster to join (``auto``; ``ray://host:10001``; None = ``trainer.rollout.address``, else a local runtime)."""

    def __post_init__(self) -> None:
        for name in ("num_epochs", "minibatches", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"train_rllib: --{name.replace('_', '-')}: must be >= 1. Fix: give a positive integer")
        if self.env_steps is not None and self.env_steps < 1:
            raise ValueError("train_rllib: --env-steps: must be >= 1. Fix: give a positive integer")
        if self.env_runners < 0:
            raise ValueError("train_rllib: --env-runners: must be >= 0. Fix: 0 collects on the driver")
        if self.lr <= 0 or self.clip_param <= 0:
            raise ValueError("train_rllib: --lr/--clip-param: must be > 0. Fix: give a positive number")


class RLlibTown(MultiAgentEnv):  # type: ignore[misc]
    """The town as an RLlib ``MultiAgentEnv`` (built from ``config["overrides"]``, Hydra overrides of ``conf/``)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        overrides = list((config or {}).get("overrides", []))
        self.town: TownEnv = compose(overrides).env.make(obs_mode="dict")
        self.agents = self.possible_agents = list(self.town.possible_agents)
        box = gymnasium.spaces.Box(-1.0, 1.0, (int(self.town.obs_dim),), np.float32)
        mask = gymnasium.spaces.Box(0.0, 1.0, (4,), np.float32)
        space = gymnasium.spaces.Dict({"observations": box, "action_mask": mask})
        self.observation_spaces = dict.fromkeys(self.agents, space)
        self.action_spaces = {a: self.town.action_space(a) for a in self.agents}

    @staticmethod
    def _obs(obs: dict[str, Any]) -> dict[str, Any]:
        return {
            a: {"observations": o["observation"], "action_mask": o["action_mask"].astype(np.float32)}
            for a, o in obs.items()
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        obs, infos = self.town.reset(seed=seed, options=options)
        return self._obs(obs), infos

    def step(self, action_dict: dict[Any, Any]) -> tuple[dict, dict, dict, dict, dict]:  # type: ignore[override]
        actions = {a: int(action_dict[a]) for a in self.town.possible_agents}
        obs, rewards, _, truncs, infos = self.town.step(actions)
        done = any(truncs.values())
        return self._obs(obs), rewards, {"__all__": False}, {"__all__": done}, infos


def groups_of(town: TownEnv) -> dict[str, str]:
    """``{agent: its town group}`` (the policy mapping)."""
    names = [g.name for g in town.groups]
    return {a: names[k] for a, k in zip(town.possible_agents, town.group_of.tolist(), strict=True)}


class RLlibPolicy(LessonsMixin):
    """The trained RLModules (one per group) as an ``agents.Policy``: masked logits, sampled actions."""

    def __init__(self, town: TownEnv, modules: dict[str, Any]) -> None:
        self.lessons = {}
        self.n = len(town.possible_agents)
        self.members = {grp.name: np.flatnonzero(town.group_of == k) for k, grp in enumerate(town.groups)}
        self.modules = modules

    def logits(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
        from ray.rllib.core.columns import Columns

        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(-1, self.n, obs.shape[-1])
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32)).reshape(-1, self.n, 4)
        out = torch.empty(x.shape[0], self.n, 4)
        with torch.no_grad():
            for name, idx in self.members.items():
                rows = x[:, idx].reshape(-1, x.shape[-1])
                batch = {Columns.OBS: {"observations": rows, "action_mask": m[:, idx].reshape(-1, 4)}}
                logits = self.modules[name].forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
                out[:, idx] = logits.reshape(x.shape[0], len(idx), 4)
        return out.reshape(-1, 4).numpy().astype(np.float64)

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        return sample_from_logp(masked_log_softmax(self.logits(obs, mask), mask), rng)


def build_config(overrides: Sequence[str], cfg: Config, settings: RLlibSettings) -> Any:
    """RLlib's ``PPOConfig``: one masked PPO module per group, GRPO's batch, our PPO hyperparameters."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

    town = cfg.env.make()
    mapping = groups_of(town)
    groups = [g.name for g in town.groups]
    tc = cfg.trainer
    batch = tc.group_size * town.max_cycles  # town steps of one GRPO iteration

    def policy_mapping_fn(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
        return mapping[str(agent_id)]

    return (
        PPOConfig()
        .environment(RLlibTown, env_config={"overrides": list(overrides)})
        .framework("torch")
        .env_runners(num_env_runners=settings.env_runners, rollout_fragment_length="auto")
        .multi_agent(policies=set(groups), policy_mapping_fn=policy_mapping_fn, count_steps_by="env_steps")
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={
                    g: RLModuleSpec(
                        module_class=ActionMaskingTorchRLModule,
                        model_config={"fcnet_hiddens": [settings.hidden, settings.hidden], "fcnet_activation": "tanh"},
                    )
                    for g in groups
                }
            )
        )
        .training(
            train_batch_size_per_learner=batch,
            minibatch_size=max(batch // settings.minibatches, 1),  # counted as the batch is: town steps
            num_epochs=settings.num_epochs,
            lr=settings.lr,
            gamma=tc.gamma if settings.gamma is None else settings.gamma,
            lambda_=settings.lambda_,
            clip_param=settings.clip_param,
            entropy_coeff=settings.entropy_coeff,
            grad_clip=settings.grad_clip,
        )
        .debugging(seed=tc.seed)
    )


def train_rllib(overrides: Sequence[str], settings: RLlibSettings, out_dir: Path) -> dict[str, Any]:
    """Train RLlib PPO on the town of ``overrides``, evaluate it like GRPO, write ``eval.json``; return the report."""
    import ray

    t_start = time.perf_counter()
    cfg = compose(overrides)
    tc = cfg.trainer
    out_dir.mkdir(parents=True, exist_ok=True)
    env = cfg.env.make()
    frames = tc.group_size * env.max_cycles
    env_steps = settings.env_steps or tc.iterations * frames
    address = settings.address or tc.rollout.address  # our GRPO trainer's convention: trainer.rollout.address
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, settings.env_runners + 1), include_dashboard=False, log_to_driver=False)
    try:
        algo = build_config(overrides, cfg, settings).build_algo()
        groups = [g.name for g in env.groups]
        curve_seeds = [EVAL_SEED_BASE + 1000 + i for i in range(tc.eval_episodes)]
        curve: list[dict[str, Any]] = []
        done_steps, it, eval_seconds = 0, 0, 0.0
        t_learn = time.perf_counter()
        while done_steps < env_steps:
            result = algo.train()
            done_steps = int(result["num_env_steps_sampled_lifetime"])
            it += 1
            if tc.eval_every and it % tc.eval_every == 0 and done_steps < env_steps:
                t0 = time.perf_counter()
                policy = RLlibPolicy(env, {g: algo.get_module(g) for g in groups})
                curve.append(
                    {
                        "env_steps": done_steps,
                        "returns": evaluate(env, policy, curve_seeds, np.random.default_rng(tc.seed)),
                    }
                )
                eval_seconds += time.perf_counter() - t0
        learn_seconds = time.perf_counter() - t_learn - eval_seconds
        policy = RLlibPolicy(env, {g: algo.get_module(g) for g in groups})
        seeds = [EVAL_SEED_BASE + 100 * tc.seed + i for i in range(tc.eval_episodes)]
        trained = evaluate(env, policy, seeds, np.random.default_rng(tc.seed + 1))
        algo.save_to_path(str((out_dir / "rllib_checkpoint").resolve()))
        algo.stop()
    finally:
        if started:
            ray.shutdown()
    report = {
        "algorithm": "rllib_ppo",
        "experiment": cfg.experiment,
        "seed": tc.seed,
        "eval_seeds": seeds,
        "curve_seeds": curve_seeds,
        "returns": {"trained": trained},
        "curve": curve,
        "env_steps": done_steps,
        "train_seconds": learn_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "settings": {**asdict(settings), "env_steps": env_steps, "train_batch_size_per_learner": frames},
    }
    atomic_write_bytes(out_dir / "eval.json", json.dumps(report, indent=2).encode())
    return report


def run(overrides: Sequence[str], settings: RLlibSettings, out: Path | None = None, *, as_json: bool = False) -> int:
    """What ``scripts/train_rllib.py`` does (:func:`trainers.cli.run`): compose, train, evaluate, print.

    Raises:
        ConfigError: the overrides do not compose (nothing is written then).
    """
    return cli.run(
        overrides,
        out,
        method="rllib_ppo",
        title="RLlib PPO",
        train=lambda cfg, out: train_rllib(overrides, settings, out),
        as_json=as_json,
    )
