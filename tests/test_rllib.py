"""RLlib multi-agent PPO on the town (``trainers/rllib_ppo.py``, ``scripts/train_rllib.py``) on a local Ray runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.rllib")
pytest.importorskip("torch")

from conf.compose import compose
from trainers import rllib_ppo
from trainers.grpo import EVAL_SEED_BASE

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "+experiment=artists",
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=16",
    "trainer.eval_episodes=2",
    "trainer.eval_every=1",
]


def test_the_town_as_an_rllib_multi_agent_env() -> None:
    env = rllib_ppo.RLlibTown({"overrides": TINY})
    obs, _ = env.reset(seed=3)
    town = compose(TINY).env.make(obs_mode="dict")
    ref, _ = town.reset(seed=3)
    a = env.possible_agents[0]
    np.testing.assert_array_equal(obs[a]["observations"], ref[a]["observation"])
    assert obs[a]["action_mask"].dtype == np.float32 and env.observation_spaces[a].contains(obs[a])
    for t in range(16):
        obs, rewards, terms, truncs, _ = env.step(dict.fromkeys(env.possible_agents, 0))
        assert set(rewards) == set(env.possible_agents) and terms["__all__"] is False
        assert truncs["__all__"] == (t == 15)
    mapping = rllib_ppo.groups_of(town)
    assert set(mapping.values()) == {"artist_collective", "residents"} and len(mapping) == len(town.possible_agents)


def test_one_policy_per_group_trains_and_evaluates_like_grpo(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "train_rllib.py"
    cmd = [sys.executable, str(script), *TINY, "--num-epochs", "2", "--json", "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["algorithm"] == "rllib_ppo" and report["env_steps"] == 2 * 2 * 16
    assert report["eval_seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]
    assert [p["env_steps"] for p in report["curve"]] == [32]
    returns = report["returns"]["trained"]
    assert set(returns) == {"artist_collective", "residents"} and all(np.isfinite(list(returns.values())))
    assert (tmp_path / "run" / "rllib_checkpoint").is_dir() and (tmp_path / "run" / "eval.json").is_file()


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "train_rllib.py"
    bad = subprocess.run(
        [sys.executable, str(script), *TINY, "--lr", "0", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "--lr/--clip-param: must be > 0" in bad.stderr and not (tmp_path / "x").exists()
