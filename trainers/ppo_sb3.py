"""sb3-contrib's MaskablePPO on the town, one policy shared by every persona (parameter sharing).

The command line is ``scripts/train_sb3_ppo.py`` (``python scripts/train_sb3_ppo.py +experiment=artists
trainer.seed=0 [--env-steps 46080] [--json]``); this module is what it calls (:func:`run`).

The town is built exactly as the GRPO trainer builds it (``cfg.env.make()`` from the same ``conf/``
composition), and ``trainer.group_size`` copies of it become ``group_size x N`` rows of
:class:`ga_env.sb3.TownVecEnv` (one NumPy program for all copies): one PPO policy for every persona
of every group (the group one-hot is part of the observation; GRPO has one MLP per group).

**Action masks.** MaskablePPO samples from the policy's distribution with the town's mask applied, in
training as in the evaluation (:class:`SB3Policy`: masked logits, the action **sampled** from the
masked, renormalised distribution as GRPO's trained policy is evaluated, or greedy with
``--eval-greedy``). It replaces SB3's PPO, which had no masks: a forbidden action was a wasted no-op
step in training and then masked in the evaluation.

**Budget.** ``--env-steps`` counts town steps (each steps all N personas), as GRPO's
``iterations x group_size x max_cycles``, which is the default. PPO's ``n_steps`` defaults to one
day (``max_cycles``) per row, so one PPO rollout holds as many town steps as one GRPO iteration.

**Evaluation** is GRPO's: :func:`trainers.evaluate.evaluate` on the same fresh env seeds as
``trainers.grpo``: the learning curve every ``trainer.eval_every`` rollouts on GRPO's curve seeds
(``EVAL_SEED_BASE + 1000 + i``), the final one on ``EVAL_SEED_BASE + 100 * trainer.seed + i``
(``trainer.eval_episodes`` of each).

Writes ``ppo_model.zip`` and ``eval.json`` (same layout as GRPO's, plus ``env_steps``, the ``curve``
and times) into ``--out`` and prints a table, or one JSON line with ``--json``.
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
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import CategoricalDistribution

from agents.base import IntArray, LessonsMixin, masked_log_softmax, sample_from_logp
from conf.compose import compose
from conf.schema import Config
from ga_env.checkpoint import atomic_write_bytes
from ga_env.sb3 import TownVecEnv
from trainers import cli
from trainers.evaluate import evaluate
from trainers.grpo import EVAL_SEED_BASE


@dataclass(frozen=True, kw_only=True)
class PPOSettings:
    """PPO hyperparameters (SB3 names). Defaults are SB3's, except where a comment says why."""

    env_steps: int | None = None
    """Town steps to train for (None = GRPO's ``iterations x group_size x max_cycles``)."""
    n_envs: int | None = None
    """Copies of the town stepped together (None = ``trainer.group_size``, as GRPO's G rollouts)."""
    n_steps: int | None = None
    """Steps per row per rollout (None = ``max_cycles``: one day per copy, as a GRPO iteration)."""
    batch_size: int | None = None
    """Minibatch size (None = a 16th of a rollout of n_envs * N * n_steps samples: 1080 on artists)."""
    n_epochs: int = 10
    """Passes over each rollout (SB3 default)."""
    learning_rate: float = 1e-3
    """Adam step (3x SB3's 3e-4: the default budget is only 40 rollouts)."""
    gamma: float | None = None
    """Discount (None = ``trainer.gamma``, GRPO's: 0.99 on Town-v1, whose sleep pays off the next day).
    On Town-v0 (one-day episodes) 0.95 was better: artist_collective 16.1 ± 1.5 at 0.99 vs 25.2 ± 2.4."""
    gae_lambda: float = 0.95
    """GAE lambda (SB3 default)."""
    clip_range: float = 0.2
    """Ratio clip (SB3 default; GRPO's epsilon is 0.2 too)."""
    ent_coef: float = 0.01
    """Entropy bonus (keeps 4-way exploration alive over a day of 144 steps)."""
    vf_coef: float = 0.5
    """Value-loss weight (SB3 default)."""
    max_grad_norm: float = 0.5
    """Gradient clip (SB3 default)."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layers of the separate policy and value MLPs (SB3 default)."""
    torch_threads: int = 1
    """Torch intra-op threads (1: the nets are small and the machine has 2 shared cores)."""
    eval_greedy: bool = False
    """Evaluate by the masked argmax instead of sampling the masked distribution."""

    def __post_init__(self) -> None:
        for name in ("env_steps", "n_envs", "n_steps", "batch_size", "n_epochs", "torch_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(
                    f"train_sb3_ppo: --{name.replace('_', '-')}: {value} must be >= 1. Fix: give a positive integer"
                )
        for name in ("learning_rate", "clip_range"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train_sb3_ppo: --{name.replace('_', '-')}: must be > 0. Fix: give a positive number")
        if not ((self.gamma is None or 0 <= self.gamma <= 1) and 0 <= self.gae_lambda <= 1):
            raise ValueError("train_sb3_ppo: --gamma/--gae-lambda: must be in [0, 1]. Fix: use e.g. 0.99 and 0.95")


class SB3Policy(LessonsMixin):
    """A trained SB3 model as an ``agents.Policy``: masked logits, sampled (or greedy) actions.

    Args:
        model: a trained ``MaskablePPO`` (or SB3 ``PPO``: any on-policy model with a categorical policy).
        greedy: take the most likely valid action instead of sampling.
    """

    def __init__(self, model: Any, *, greedy: bool = False) -> None:
        self.lessons = {}
        self.model = model
        self.greedy = greedy

    def logits(self, obs: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """``(B, 4)`` unmasked action logits of the model."""
        with torch.no_grad():
            dist = self.model.policy.get_distribution(torch.as_tensor(obs, dtype=torch.float32))
        if not isinstance(dist, (CategoricalDistribution, MaskableCategoricalDistribution)):
            raise TypeError(
                f"SB3Policy: model: {type(dist).__name__} is not a categorical policy. "
                "Fix: train the model on the town's Discrete(4) actions"
            )
        return dist.distribution.logits.numpy().astype(np.float64)

    def act(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer], rng: np.random.Generator) -> IntArray:
        logp = masked_log_softmax(self.logits(obs), mask)  # (B, 4), -inf where the mask forbids
        if self.greedy:
            return np.argmax(logp, axis=1).astype(np.int64)
        return sample_from_logp(logp, rng)


def load_config(overrides: Sequence[str]) -> tuple[Config, str]:
    """The GRPO trainer's typed config from Hydra overrides (``+experiment=artists ...``) and its YAML.

    Raises:
        ConfigError: an override names an unknown key or gives a value the schema rejects.
    """
    cfg = compose(overrides)
    return cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg))


class CurveCallback(BaseCallback):
    """Evaluates the policy every ``every`` rollouts (after training on them), as GRPO's ``trainer.eval_every``."""

    def __init__(self, fn: Any, every: int, rollout_env_steps: int) -> None:
        super().__init__()
        self.fn, self.every, self.rollout_env_steps = fn, every, rollout_env_steps
        self.rollouts = 0
        self.points: list[dict[str, Any]] = []

    def _on_rollout_start(self) -> None:
        if self.rollouts and self.every and self.rollouts % self.every == 0:
            t0 = time.perf_counter()
            self.points.append({"env_steps": self.rollouts * self.rollout_env_steps, "returns": self.fn()})
            self.points[-1]["eval_seconds"] = time.perf_counter() - t0
        self.rollouts += 1

    def _on_step(self) -> bool:
        return True


def train_ppo(cfg: Config, ppo: PPOSettings, out_dir: Path) -> dict[str, Any]:
    """Train MaskablePPO on the town of ``cfg``, evaluate it like GRPO, write ``eval.json``; return the report."""
    t_start = time.perf_counter()
    torch.set_num_threads(ppo.torch_threads)
    tc = cfg.trainer
    out_dir.mkdir(parents=True, exist_ok=True)
    env = cfg.env.make()  # built exactly as trainers.grpo builds it
    n_agents = len(env.possible_agents)
    n_envs = ppo.n_envs or tc.group_size
    n_steps = ppo.n_steps or env.max_cycles
    env_steps = ppo.env_steps or tc.iterations * tc.group_size * env.max_cycles
    venv = TownVecEnv(cfg.env.make(), n_envs)
    rollout = n_envs * n_agents * n_steps
    model = MaskablePPO(
        "MlpPolicy",
        venv,
        n_steps=n_steps,
        batch_size=min(ppo.batch_size or max(rollout // 16, 1), rollout),
        n_epochs=ppo.n_epochs,
        learning_rate=ppo.learning_rate,
        gamma=tc.gamma if ppo.gamma is None else ppo.gamma,
        gae_lambda=ppo.gae_lambda,
        clip_range=ppo.clip_range,
        ent_coef=ppo.ent_coef,
        vf_coef=ppo.vf_coef,
        max_grad_norm=ppo.max_grad_norm,
        policy_kwargs={"net_arch": {"pi": list(ppo.net_arch), "vf": list(ppo.net_arch)}},
        seed=tc.seed,
        device="cpu",
        verbose=0,
    )
    curve_seeds = [EVAL_SEED_BASE + 1000 + i for i in range(tc.eval_episodes)]
    curve = CurveCallback(
        lambda: evaluate(env, SB3Policy(model, greedy=ppo.eval_greedy), curve_seeds, np.random.default_rng(tc.seed)),
        tc.eval_every,
        n_envs * n_steps,
    )
    # SB3 counts agent-steps (one per row); it stops after the first full rollout that reaches the total.
    t_learn = time.perf_counter()
    model.learn(total_timesteps=env_steps * n_agents, progress_bar=False, callback=curve)
    learn_seconds = time.perf_counter() - t_learn - sum(p["eval_seconds"] for p in curve.points)
    venv.close()
    model.save(out_dir / "ppo_model.zip")

    seeds = [EVAL_SEED_BASE + 100 * tc.seed + i for i in range(tc.eval_episodes)]
    trained = evaluate(env, SB3Policy(model, greedy=ppo.eval_greedy), seeds, np.random.default_rng(tc.seed + 1))
    report = {
        "algorithm": "maskable_ppo",
        "experiment": cfg.experiment,
        "seed": tc.seed,
        "eval_seeds": seeds,
        "curve_seeds": curve_seeds,
        "returns": {"trained": trained},
        "curve": [{"env_steps": p["env_steps"], "returns": p["returns"]} for p in curve.points],
        "env_steps": int(model.num_timesteps // n_agents),
        "agent_steps": int(model.num_timesteps),
        "train_seconds": learn_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "ppo": {
            **asdict(ppo),
            "n_envs": n_envs,
            "n_steps": n_steps,
            "env_steps": env_steps,
            "batch_size": model.batch_size,
            "gamma": model.gamma,
        },
    }
    atomic_write_bytes(out_dir / "eval.json", (json.dumps(report, indent=2)).encode())
    return report


def run(overrides: Sequence[str], settings: PPOSettings, out: Path | None = None, *, as_json: bool = False) -> int:
    """What ``scripts/train_sb3_ppo.py`` does (:func:`trainers.cli.run`): compose, train, evaluate, print.

    Raises:
        ConfigError: the overrides do not compose (nothing is written then).
    """
    return cli.run(
        overrides,
        out,
        method="sb3_ppo",
        title="MaskablePPO",
        train=lambda cfg, out: train_ppo(cfg, settings, out),
        as_json=as_json,
    )
