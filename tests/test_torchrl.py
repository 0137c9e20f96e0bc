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


def _train(tmp_path: Path, algorithm: str, *overrides: str, env: str = "batched") -> dict[str, object]:
    cfg = compose([*TINY, *overrides])
    settings = torchrl_ppo.TorchRLSettings(algorithm=algorithm, n_epochs=2, env=env)
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


def test_trains_through_the_pettingzoo_wrapper_too(tmp_path: Path) -> None:
    report = _train(tmp_path, "mappo", env="pettingzoo")
    assert report["env_steps"] == 2 * 2 * 16 and report["settings"]["env"] == "pettingzoo"  # type: ignore[index]
    assert all(np.isfinite(list(report["returns"]["trained"].values())))  # type: ignore[index]


def test_batched_town_gives_what_the_pettingzoo_wrapper_gives() -> None:
    """Copy 1 of a batched town seeded 5 is the wrapped town reset with seed 6: same data for the same actions."""
    from torchrl.envs.utils import check_env_specs

    from ga_env.torchrl_env import TownTorchEnv

    cfg = compose([*TINY, "env.max_cycles=6"])
    batched = TownTorchEnv(cfg.env.make(obs_mode="dict"), 3, seed=5, return_state=True)
    check_env_specs(batched)
    batched.set_seed(5)
    wrapped, _, _ = torchrl_ppo.build(cfg.env.make(obs_mode="dict"), torchrl_ppo.TorchRLSettings(env="pettingzoo"), 0)
    tb, tp = batched.reset(), wrapped.reset(seed=6)
    for key in [("artist_collective", "observation", "observation"), ("residents", "action_mask"), "state"]:
        assert torch.equal(tb[key][1], tp[key]), key
    rng = np.random.default_rng(0)
    keys = [
        *((g, k) for g in batched.members for k in ("reward", "done", "terminated", "truncated")),
        ("residents", "observation", "observation"),
        "done",
        "terminated",
        "truncated",
        "state",
    ]
    for t in range(6):
        tb, tp = tb.clone(), tp.clone()
        for g, idx in batched.members.items():
            mask = tb[g, "action_mask"]
            logits = torch.as_tensor(rng.normal(size=(3, len(idx), 4)), dtype=torch.float32).masked_fill(~mask, -1e9)
            acts = logits.argmax(-1)  # a random allowed action per persona
            tb[g, "action"], tp[g, "action"] = acts, acts[1]
        nb, np_ = batched.step(tb)["next"], wrapped.step(tp)["next"]
        for key in keys:
            assert torch.equal(nb[key][1], np_[key]), (t, key)
        if t < 5:  # after the day's last step the wrapper leaves the masks of finished personas unset
            assert torch.equal(nb["residents", "action_mask"][1], np_["residents", "action_mask"])
        tb, tp = nb, np_
    assert bool(tb["done"].all()) and not bool(tb["terminated"].any())  # the day ends truncated, never terminated


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
