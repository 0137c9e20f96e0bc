"""Trainer: Hydra configs, the real entry point end to end, exact resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from conf.schema import Config, ConfigError, register_configs, to_config
from trainers.grpo import train

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
    assert set(report["returns"]) == {"trained", "random", "scripted"}
    assert set(report["returns"]["random"]) == {"artist_collective", "residents"}


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
