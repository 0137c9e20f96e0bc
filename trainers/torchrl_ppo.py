"""IPPO and MAPPO from TorchRL on the town: one agent group per town group, batched or through TorchRL's PettingZoo wrapper.

The command line is ``scripts/train_torchrl.py`` (``python scripts/train_torchrl.py +experiment=artists
--algorithm mappo trainer.seed=0 [--json]``); this module is what it calls (:func:`run`).

Why TorchRL itself and not BenchMARL: BenchMARL runs its own Hydra app with its own task registry
(a custom PettingZoo town would be a new ``Task`` class and config files inside its tree) and its own
evaluation; here the town is composed from the same ``conf/`` overrides as the GRPO trainer and evaluated
by the same code on the same seeds, which is what a fair comparison needs. The algorithm is TorchRL's
multi-agent PPO recipe (its ``multiagent_ppo`` tutorial): ``MultiAgentMLP`` actors and critics,
``ClipPPOLoss`` with GAE, a ``Collector`` on the town.

- **Environment.** By default ``trainer.group_size`` towns stepped together as one
  :class:`ga_env.torchrl_env.TownTorchEnv` (batch size ``(group_size,)``: a collection is one day of each, as a
  GRPO iteration); ``--env pettingzoo`` uses ``PettingZooWrapper`` on one town instead: the same tensordict
  layout (a test checks both give the same data for the same actions), but a Python loop per persona per step
  (about 100 town steps/s against 3,000 batched on artists).

- **Groups.** ``PettingZooWrapper(group_map=...)`` puts each town group's personas in their own
  tensordict group; each group has its own actor and critic (parameters shared within the group, as
  GRPO's one MLP per group).
- **Masks.** The town's ``action_mask`` (its Dict observation) becomes ``(group, "action_mask")``; the
  actor samples from a ``MaskedCategorical``.
- **IPPO**: each persona's critic sees its own observation. **MAPPO**: it sees its own observation and
  the town's global ``state()`` (``return_state=True``): the agent-specific global state that Yu et
  al. (2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games") recommend.
- **Budget and evaluation** as GRPO's: ``trainer.iterations`` collections of ``trainer.group_size``
  days (``max_cycles`` steps each) of one town; a learning-curve point every ``trainer.eval_every``
  iterations on GRPO's curve seeds, the final evaluation on GRPO's final seeds, with the actors sampled
  under the mask (:class:`TorchRLPolicy`, the ``agents.Policy`` protocol).

Needs the ``[marl]`` extra (torchrl, tensordict; torch CPU).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import EnvBase
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.modules import MaskedCategorical, MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from agents.base import IntArray, LessonsMixin, masked_log_softmax, sample_from_logp
from conf.schema import Config
from ga_env.checkpoint import atomic_write_bytes
from ga_env.torchrl_env import TownTorchEnv
from ga_env.town import TownEnv
from trainers import cli
from trainers.evaluate import evaluate
from trainers.grpo import EVAL_SEED_BASE

ALGORITHMS = ("ippo", "mappo")
ENVS = ("batched", "pettingzoo")


@dataclass(frozen=True, kw_only=True)
class TorchRLSettings:
    """Multi-agent PPO hyperparameters. Defaults are TorchRL's ``multiagent_ppo`` tutorial's unless said."""

    algorithm: str = "mappo"
    """``ippo`` (critic on the persona's own observation) or ``mappo`` (and the global state)."""
    env: str = "batched"
    """``batched``: ``trainer.group_size`` towns in one :class:`ga_env.torchrl_env.TownTorchEnv` (30x faster);
    ``pettingzoo``: one town through TorchRL's ``PettingZooWrapper`` (the same tensordicts, a Python loop per
    persona: 23 min for artists' budget instead of about 1)."""
    env_steps: int | None = None
    """Town steps to train for (None = GRPO's ``iterations x group_size x max_cycles``)."""
    n_epochs: int = 10
    """Passes over each collection (the tutorial's 30 is slow on 2 cores; SB3's default)."""
    minibatches: int = 8
    """Minibatches per epoch (of time steps; each holds every persona of that step)."""
    learning_rate: float = 1e-3
    """Adam step (as our MaskablePPO's: the default budget is 40 collections)."""
    gamma: float | None = None
    """Discount (None = ``trainer.gamma``)."""
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    hidden: int = 64
    """Width of the two hidden layers of each actor and critic."""
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"train_torchrl: --algorithm: {self.algorithm!r} is unknown. Fix: use one of {list(ALGORITHMS)}"
            )
        if self.env not in ENVS:
            raise ValueError(f"train_torchrl: --env: {self.env!r} is unknown. Fix: use one of {list(ENVS)}")
        for name in ("env_steps", "n_epochs", "minibatches", "hidden", "torch_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(
                    f"train_torchrl: --{name.replace('_', '-')}: {value} must be >= 1. Fix: give a positive integer"
                )
        for name in ("learning_rate", "clip_range"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train_torchrl: --{name.replace('_', '-')}: must be > 0. Fix: give a positive number")
        if not ((self.gamma is None or 0 <= self.gamma <= 1) and 0 <= self.gae_lambda <= 1):
            raise ValueError("train_torchrl: --gamma/--gae-lambda: must be in [0, 1]. Fix: use e.g. 0.99 and 0.95")


def group_mlp(n_in: int, n_out: int, n_agents: int, hidden: int) -> MultiAgentMLP:
    """One MLP shared by a group's ``n_agents`` personas (two tanh layers of ``hidden``), each on its own input."""
    return MultiAgentMLP(
        n_agent_inputs=n_in,
        n_agent_outputs=n_out,
        n_agents=n_agents,
        centralised=False,
        share_params=True,
        depth=2,
        num_cells=hidden,
        activation_class=nn.Tanh,
    )


class StateCritic(nn.Module):
    """Each persona's value from its observation and the town's global state (MAPPO), parameters shared."""

    def __init__(self, obs_dim: int, state_dim: int, n_agents: int, hidden: int) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.mlp = group_mlp(obs_dim + state_dim, 1, n_agents, hidden)

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        expanded = state.unsqueeze(-2).expand(*obs.shape[:-1], state.shape[-1])
        return self.mlp(torch.cat([obs, expanded], dim=-1))


def group_map(env: TownEnv) -> dict[str, list[str]]:
    """``{town group: its personas' agent names}`` (the tensordict groups)."""
    return {
        grp.name: [a for a, g in zip(env.possible_agents, env.group_of.tolist(), strict=True) if g == k]
        for k, grp in enumerate(env.groups)
    }


def _obs_key(group: str) -> tuple[str, ...]:
    return (group, "observation", "observation")


def build(
    env: TownEnv, settings: TorchRLSettings, seed: int, n_envs: int = 1
) -> tuple[EnvBase, dict[str, ProbabilisticActor], dict[str, TensorDictModule]]:
    """The town as a TorchRL environment (``settings.env``: ``n_envs`` batched towns, or one town through
    ``PettingZooWrapper``; built with ``obs_mode="dict"``: the mask is part of the observation) and each group's
    actor and critic."""
    groups = group_map(env)
    state = settings.algorithm == "mappo"
    wrapped: EnvBase
    if settings.env == "batched":
        wrapped = TownTorchEnv(env, n_envs, seed=seed, return_state=state)
    else:
        wrapped = PettingZooWrapper(
            env=env, return_state=state, group_map=groups, categorical_actions=True, device="cpu"
        )
        wrapped.set_seed(seed)
    obs_dim = int(env.obs_dim)
    state_dim = int(env.state_space.shape[0])
    torch.manual_seed(seed)
    actors, critics = {}, {}
    for name, agents in groups.items():
        n = len(agents)
        net = group_mlp(obs_dim, 4, n, settings.hidden)
        module = TensorDictModule(net, in_keys=[_obs_key(name)], out_keys=[(name, "logits")])
        actors[name] = ProbabilisticActor(
            module=module,
            spec=wrapped.full_action_spec[name, "action"],
            in_keys={"logits": (name, "logits"), "mask": (name, "action_mask")},
            out_keys=[(name, "action")],
            distribution_class=MaskedCategorical,
            return_log_prob=True,
            log_prob_key=(name, "action_log_prob"),
        )
        if settings.algorithm == "mappo":
            critics[name] = TensorDictModule(
                StateCritic(obs_dim, state_dim, n, settings.hidden),
                in_keys=[_obs_key(name), "state"],
                out_keys=[(name, "state_value")],
            )
        else:
            value = group_mlp(obs_dim, 1, n, settings.hidden)
            critics[name] = TensorDictModule(value, in_keys=[_obs_key(name)], out_keys=[(name, "state_value")])
    return wrapped, actors, critics


class TorchRLPolicy(LessonsMixin):
    """The trained group actors as an ``agents.Policy``: rows of ``(E * N, D)`` observations, masked sampling.

    Args:
        env: the town (which persona is in which group).
        actors: each group's actor (its ``MultiAgentMLP``).
    """

    def __init__(self, env: TownEnv, actors: dict[str, ProbabilisticActor]) -> None:
        self.lessons = {}
        self.n = len(env.possible_agents)
        self.members = {grp.name: np.flatnonzero(env.group_of == k) for k, grp in enumerate(env.groups)}
        self.nets = {name: actor.module[0].module for name, actor in actors.items()}

    def logits(self, obs: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """``(B, 4)`` unmasked logits; ``B`` is a multiple of the town's personas (rows persona-major per town)."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(-1, self.n, obs.shape[-1])
        out = torch.empty(x.shape[0], self.n, 4)
        with torch.no_grad():
            for name, idx in self.members.items():
                out[:, idx] = self.nets[name](x[:, idx])
        return out.reshape(-1, 4).numpy().astype(np.float64)

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        return sample_from_logp(masked_log_softmax(self.logits(obs), mask), rng)


def train_torchrl(cfg: Config, settings: TorchRLSettings, out_dir: Path) -> dict[str, Any]:
    """Train IPPO or MAPPO on the town of ``cfg``, evaluate it like GRPO, write ``eval.json``; return the report."""
    t_start = time.perf_counter()
    torch.set_num_threads(settings.torch_threads)
    tc = cfg.trainer
    out_dir.mkdir(parents=True, exist_ok=True)
    env = cfg.env.make()
    wrapped, actors, critics = build(cfg.env.make(obs_mode="dict"), settings, tc.seed, tc.group_size)
    groups = list(actors)
    frames = tc.group_size * env.max_cycles  # one GRPO iteration's town steps
    env_steps = settings.env_steps or tc.iterations * frames
    gamma = tc.gamma if settings.gamma is None else settings.gamma
    losses = {}
    for name in groups:
        loss = ClipPPOLoss(
            actor_network=actors[name],
            critic_network=critics[name],
            clip_epsilon=settings.clip_range,
            entropy_coeff=settings.ent_coef,
            normalize_advantage=False,
        )
        loss.set_keys(
            reward=(name, "reward"),
            action=(name, "action"),
            sample_log_prob=(name, "action_log_prob"),
            value=(name, "state_value"),
            done=(name, "done"),
            terminated=(name, "terminated"),
            advantage=(name, "advantage"),  # per group: the groups' GAE must not overwrite each other
            value_target=(name, "value_target"),
        )
        loss.make_value_estimator(ValueEstimators.GAE, gamma=gamma, lmbda=settings.gae_lambda)
        losses[name] = loss
    params = [p for name in groups for p in losses[name].parameters()]
    optim = torch.optim.Adam(params, lr=settings.learning_rate)
    policy = TensorDictSequential(*actors.values())
    collector = Collector(
        wrapped,
        policy,
        frames_per_batch=frames,
        total_frames=env_steps,
        device="cpu",
        storing_device="cpu",
        auto_register_policy_transforms=False,  # the actors are plain MLPs: no InitTracker needed
    )
    curve_seeds = [EVAL_SEED_BASE + 1000 + i for i in range(tc.eval_episodes)]
    curve: list[dict[str, Any]] = []
    eval_seconds = 0.0
    done_steps = 0
    generator = torch.Generator().manual_seed(tc.seed)
    t_learn = time.perf_counter()
    for it, batch in enumerate(collector):
        with torch.no_grad():
            for name in groups:
                losses[name].value_estimator(
                    batch,
                    params=losses[name].critic_network_params,
                    target_params=losses[name].target_critic_network_params,
                )
        data = batch.reshape(-1)
        for _ in range(settings.n_epochs):
            order = torch.randperm(data.shape[0], generator=generator)
            for chunk in order.chunk(settings.minibatches):
                sub = data[chunk]
                total = torch.zeros(())
                for name in groups:
                    out = losses[name](sub)
                    total = total + out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optim.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optim.step()
        collector.update_policy_weights_()
        done_steps += int(batch.numel())
        if tc.eval_every and (it + 1) % tc.eval_every == 0 and done_steps < env_steps:
            t0 = time.perf_counter()
            returns = evaluate(env, TorchRLPolicy(env, actors), curve_seeds, np.random.default_rng(tc.seed))
            curve.append({"env_steps": done_steps, "returns": returns})
            eval_seconds += time.perf_counter() - t0
    learn_seconds = time.perf_counter() - t_learn - eval_seconds
    collector.shutdown()
    torch.save({name: actors[name].state_dict() for name in groups}, out_dir / "actors.pt")

    seeds = [EVAL_SEED_BASE + 100 * tc.seed + i for i in range(tc.eval_episodes)]
    trained = evaluate(env, TorchRLPolicy(env, actors), seeds, np.random.default_rng(tc.seed + 1))
    report = {
        "algorithm": settings.algorithm,
        "experiment": cfg.experiment,
        "seed": tc.seed,
        "eval_seeds": seeds,
        "curve_seeds": curve_seeds,
        "returns": {"trained": trained},
        "curve": curve,
        "env_steps": done_steps,
        "train_seconds": learn_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "settings": {**asdict(settings), "env_steps": env_steps, "gamma": gamma, "frames_per_batch": frames},
    }
    atomic_write_bytes(out_dir / "eval.json", json.dumps(report, indent=2).encode())
    return report


def run(overrides: Sequence[str], settings: TorchRLSettings, out: Path | None = None, *, as_json: bool = False) -> int:
    """What ``scripts/train_torchrl.py`` does (:func:`trainers.cli.run`): compose, train, evaluate, print.

    Raises:
        ConfigError: the overrides do not compose (nothing is written then).
    """
    return cli.run(
        overrides,
        out,
        method=settings.algorithm,
        title=f"TorchRL {settings.algorithm.upper()}",
        train=lambda cfg, out: train_torchrl(cfg, settings, out),
        as_json=as_json,
    )
