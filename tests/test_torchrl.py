"""IPPO / MAPPO from TorchRL on the town (``trainers/torchrl_ppo.py``, ``scripts/train_torchrl.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchrl")
torch = pytest.importorskip("torch")

from conf.compose import compose  # noqa: E402
from trainers import torchrl_ppo  # noqa: E402
from trainers.grpo import EVAL_SEED_BASE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "+experiment=artists",
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=16",
    "trainer.eval_episodes=2",
    "trainer.eval_every=1",
]


def _train(tmp_path: Path, algorithm: str, *overrides: str) -> dict[str, object]:
    cfg = compose([*TINY, *overrides])
    settings = torchrl_ppo.TorchRLSettings(algorithm=algorithm, n_epochs=2)
    return torchrl_ppo.train_torchrl(cfg, settings, tmp_path / f"{algorithm}{len(list(tmp_path.iterdir()))}")


@pytest.mark.parametrize("algorithm", ["ippo", "mappo"])
def test_trains_per_group_on_the_grpo_budget_and_evaluates_like_grpo(tmp_path: Path, algorithm: str) -> None:
    report = _train(tmp_path, algorithm)
    assert report["algorithm"] == algorithm and report["env_steps"] == 2 * 2 * 16
    assert report["eval_seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]  # GRPO's final-evaluation seeds
    assert report["curve_seeds"] == [EVAL_SEED_BASE + 1000, EVAL_SEED_BASE + 1001]  # GRPO's curve seeds
    assert [p["env_steps"] for p in report["curve"]] == [32]  # type: ignore[index, union-attr]
    returns = report["returns"]["trained"]  # type: ignore[index]
    assert set(returns) == {"artist_collective", "residents"} and all(np.isfinite(list(returns.values())))
    again = _train(tmp_path, algorithm)
    assert again["returns"] == report["returns"]  # same seed, same result
    other = _train(tmp_path, algorithm, "trainer.seed=1")
    assert other["returns"] != report["returns"]


def test_groups_have_their_own_nets_and_mappo_critics_see_the_state() -> None:
    cfg = compose(TINY)
    env = cfg.env.make(obs_mode="dict")
    settings = torchrl_ppo.TorchRLSettings(algorithm="mappo")
    _, actors, critics = torchrl_ppo.build(env, settings, 0)
    assert set(actors) == set(critics) == {"artist_collective", "residents"}
    assert "state" in critics["residents"].in_keys
    a, b = (actors[g].module[0].module for g in ("artist_collective", "residents"))
    assert a is not b and a.n_agents + b.n_agents == len(env.possible_agents)
    _, _, ippo_critics = torchrl_ppo.build(env, torchrl_ppo.TorchRLSettings(algorithm="ippo"), 0)
    assert "state" not in ippo_critics["residents"].in_keys


def test_policy_samples_only_allowed_actions() -> None:
    cfg = compose(TINY)
    env = cfg.env.make(obs_mode="dict")
    _, actors, _ = torchrl_ppo.build(env, torchrl_ppo.TorchRLSettings(), 0)
    policy = torchrl_ppo.TorchRLPolicy(env, actors)
    town = cfg.env.make()
    obs, _ = town.reset_arrays(0)
    obs = np.tile(obs, (20, 1))  # 20 towns' rows
    mask = np.zeros((len(obs), 4), dtype=np.int8)
    mask[:, 0] = 1
    mask[::3, 2] = 1
    acts = policy.act(obs, mask, np.random.default_rng(0))
    assert mask[np.arange(len(acts)), acts].all() and set(acts[::3].tolist()) == {0, 2}


def test_command_line_smoke_and_bad_input(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "train_torchrl.py"
    cmd = [sys.executable, str(script), *TINY, "--algorithm", "ippo", "--n-epochs", "1", "--json"]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "run")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["algorithm"] == "ippo" and report["settings"]["n_epochs"] == 1
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.yaml", "eval.json", "actors.pt"}
    bad = subprocess.run(
        [sys.executable, str(script), *TINY, "--algorithm", "qmix", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "invalid choice: 'qmix'" in bad.stderr and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="--learning-rate: must be > 0"):
        torchrl_ppo.TorchRLSettings(learning_rate=0)
