"""Trainer: Hydra configs, the real entry point end to end, exact resume."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

import ga_env
from agents import SoftmaxPolicy
from agents.factory import make_policy
from conf.schema import Config, ConfigError, register_configs, to_config
from ga_env.batched import BatchedTownEnv
from trainers.evaluate import evaluate
from trainers.grpo import train
from trainers.rollout import EnvAwarePolicy, InProcessRollouts, collect, rollout_generators

EXPERIMENTS = {
    "artists": ["artist_collective", "residents"],
    "scientists": ["research_lab", "residents"],
    "campaign": ["campaign_team", "residents"],
    "society": ["artist_collective", "research_lab", "campaign_team", "residents"],
}
TINY = [
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=12",
    "trainer.eval_episodes=1",
    "agent.hidden=4",
]


def _compose(overrides: list[str]) -> Config:
    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        return to_config(compose(config_name="config", overrides=overrides))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_composes_and_builds(name: str) -> None:
    cfg = _compose([f"+experiment={name}", "trainer.seed=3"])
    assert cfg.experiment == name and cfg.trainer.seed == 3 and cfg.llm.backend == "scripted"
    env = cfg.env.make()
    assert [g.name for g in env.groups] == sorted(EXPERIMENTS[name], key=[g.name for g in env.groups].index)
    assert set(EXPERIMENTS[name]) == {g.name for g in env.groups}


def test_bad_key_and_bad_value_give_clear_errors() -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as e:
        _compose(["+experiment=artists", "trainer.learning_rate=0.1"])
    assert "learning_rate" in str(e.value) + str(e.value.__cause__)
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        _compose(["trainer.iterations=many"])
    assert "iterations" in str(e.value) + str(e.value.__cause__)
    with pytest.raises(ConfigError, match=r"trainer\.scale.*Fix: use one of group, batch, none"):
        _compose(["trainer.scale=median"])
    with pytest.raises(ConfigError, match=r"env\.dynamics"):
        _compose(["+env.dynamics.spread=0.1"])


def test_entry_point_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainers.grpo", "+experiment=artists", *TINY, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Evaluation (artists" in proc.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in (
        "rewards/artist_collective/mean",
        "rewards/residents/mean",
        "charts/episodic_return",
        "losses/policy",
        "losses/kl",
        "losses/clipfrac",
        "policy/entropy",
        "grpo/frac_reward_zero_std",
        "actions/residents/chat",
        "eval/artist_collective/trained",
        "eval/artist_collective/random",
        "eval/residents/scripted",
        "eval/residents/heuristic",
        "eval/artist_collective/upper",
        "goals/artist_collective/awareness_end",
        "goals/artist_collective/night_at_home",
        "goals/residents/task_progress",
        "goals/residents/chat_at_social_sites",
    ):
        assert tag in scalars, tag
    assert len(acc.Scalars("losses/policy")) == 2
    texts = set(acc.Tags()["tensors"])
    assert {"hyperparameters/text_summary", "lessons/artist_collective/text_summary"} <= texts

    ckpt = np.load(out / "checkpoint.npz")
    assert int(ckpt["iteration"]) == 2
    assert {"param/w1", "ref/w1", "adam_m/w1", "adam_v/w1", "rng_state", "config_yaml"} <= set(ckpt.files)
    assert "experiment: artists" in str(ckpt["config_yaml"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    report = json.loads((out / "eval.json").read_text())
    policies = {"trained", "random", "scripted", "chat", "heuristic", "upper"}
    assert set(report["returns"]) == policies and report["env_version"] == 1
    assert set(report["returns"]["random"]) == {"artist_collective", "residents"}
    # Goal metrics of every evaluated policy: goals[policy][group][metric], with CIs beside them.
    assert set(report["goals"]) == policies
    for policy in policies:
        artists, residents = report["goals"][policy]["artist_collective"], report["goals"][policy]["residents"]
        assert {"night_at_home", "task_progress", "chat_at_social_sites", "awareness_end", "supporters"} <= set(artists)
        assert {"night_at_home", "task_progress", "chat_at_social_sites"} <= set(residents)
        assert "awareness_end" not in residents
        assert 0.0 <= artists["night_at_home"] <= 1.0 and 0.0 <= artists["chat_at_social_sites"] <= 1.0
        mean, half = report["ci95"][policy]["residents"]["return"]
        assert mean == pytest.approx(report["returns"][policy]["residents"]) and half >= 0.0


def test_resume_continues_exactly(tmp_path: Path) -> None:
    base = [*TINY, "trainer.iterations=4", "trainer.checkpoint_every=2", "trainer.eval_every=0"]
    straight = tmp_path / "straight"
    train(_compose(base), straight)
    first = tmp_path / "first"
    train(_compose([*base, "trainer.iterations=2"]), first)
    resumed = tmp_path / "resumed"
    train(_compose([*base, f"trainer.resume={first / 'checkpoint.npz'}"]), resumed)
    a, b = np.load(straight / "checkpoint.npz"), np.load(resumed / "checkpoint.npz")
    for key in a.files:
        if key.startswith(("param/", "adam_")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert int(b["iteration"]) == 4


def test_batched_and_one_env_per_rollout_train_the_same_parameters(tmp_path: Path) -> None:
    base = [*TINY, "trainer.group_size=3", "trainer.eval_every=0"]
    train(_compose(base), tmp_path / "batched")
    train(_compose([*base, "trainer.rollout.batched=false"]), tmp_path / "envs")
    a, b = np.load(tmp_path / "batched" / "checkpoint.npz"), np.load(tmp_path / "envs" / "checkpoint.npz")
    for key in a.files:
        if key.startswith(("param/", "adam_")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


class _TargetAwarePolicy(SoftmaxPolicy):
    """A policy needing env context: appends each agent's normalised Move target to its observation."""

    def __init__(self, env: ga_env.TownEnv) -> None:
        super().__init__(env.obs_dim + 1, len(env.groups), hidden=4, rng=np.random.default_rng(0))
        self.calls: list[int] = []

    def augment_obs(self, envs: Sequence[ga_env.TownEnv], obs: np.ndarray) -> np.ndarray:
        self.calls.append(len(envs))
        extra = np.stack([e.current_targets / len(e.places) for e in envs])[:, :, None]  # (G, N, 1)
        return np.concatenate([obs, extra.astype(np.float32)], axis=2)


def test_env_aware_policy_gets_the_envs_and_its_augmented_obs_are_recorded() -> None:
    cfg = _compose([*TINY, "trainer.group_size=3"])
    env = cfg.env.make()
    policy = _TargetAwarePolicy(env)
    assert isinstance(policy, EnvAwarePolicy)
    rngs = rollout_generators(0, 0, range(3))
    with pytest.raises(ValueError, match=r"augment_obs.*Fix: pass one TownEnv per rollout"):
        collect(BatchedTownEnv(env, 3), policy, 5, rngs)
    runner = InProcessRollouts(cfg, policy)
    assert isinstance(runner.env, list) and len(runner.env) == 3  # batched=true falls back to the envs
    ro = runner.run(policy, 0, 5, {})
    assert ro.obs.shape == (3, cfg.env.max_cycles, len(env.possible_agents), env.obs_dim + 1)
    assert policy.calls == [3] * cfg.env.max_cycles
    assert ro.obs[..., -1].std() > 0 and ro.obs[..., -1].max() <= 1.0  # the targets, recorded
    # The same policy evaluates through the same contract (one env).
    result = evaluate(env, policy, [1], np.random.default_rng(0))
    assert set(result) == {"artist_collective", "residents"} and policy.calls[-1] == 1


def test_rollouts_do_not_depend_on_batching() -> None:
    # Rollout g uses generator (seed, iteration, g) only: any subset reproduces its trajectories.
    cfg = _compose(TINY)
    env = cfg.env.make()
    policy = make_policy(cfg.agent, cfg.llm, env, np.random.default_rng(1))
    whole = collect(BatchedTownEnv(env, 4), policy, 9, rollout_generators(3, 7, range(4)))
    part = collect([cfg.env.make()], policy, 9, rollout_generators(3, 7, [2]))
    for name in ("obs", "mask", "actions", "effective", "rewards", "places", "partners"):
        np.testing.assert_array_equal(getattr(whole, name)[2:3], getattr(part, name), err_msg=name)
    assert not np.array_equal(whole.actions[0], whole.actions[1])
