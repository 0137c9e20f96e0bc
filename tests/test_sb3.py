"""sb3-contrib MaskablePPO on the town (``ga_env/sb3.py``, ``trainers/ppo_sb3.py``, ``scripts/train_sb3_ppo.py``)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import ga_env

pytest.importorskip("sb3_contrib")
pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_sb3_ppo.py"
TINY = [
    "+experiment=artists",
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=16",
    "trainer.eval_episodes=2",
]


@pytest.fixture(scope="module")
def ppo_script() -> ModuleType:
    """The library module the script calls (``trainers.ppo_sb3``: settings, training, the policy wrapper)."""
    return importlib.import_module("trainers.ppo_sb3")


@pytest.fixture(scope="module")
def ppo_main() -> ModuleType:
    """The command line (``scripts/train_sb3_ppo.py``)."""
    return importlib.import_module("scripts.train_sb3_ppo")


def _train(ppo_script: ModuleType, tmp_path: Path, name: str, *overrides: str) -> tuple[dict[str, object], object]:
    cfg, _ = ppo_script.load_config([*TINY, *overrides])
    report = ppo_script.train_ppo(cfg, ppo_script.PPOSettings(), tmp_path / name)
    return report, cfg


def test_ppo_trains_on_the_grpo_budget_and_evaluates_like_grpo(ppo_script: ModuleType, tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    from ga_env.sb3 import TownVecEnv
    from trainers.grpo import EVAL_SEED_BASE

    report, cfg = _train(ppo_script, tmp_path, "a")
    n = len(cfg.env.make().possible_agents)  # type: ignore[attr-defined]
    assert report["env_steps"] == 2 * 2 * 16  # GRPO's iterations x group_size x max_cycles
    assert report["agent_steps"] == 2 * 2 * 16 * n
    assert report["eval_seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]  # GRPO's final-evaluation seeds
    assert report["algorithm"] == "maskable_ppo"
    returns = report["returns"]["trained"]  # type: ignore[index]
    assert set(returns) == {"artist_collective", "residents"} and all(np.isfinite(list(returns.values())))
    saved = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert saved["returns"] == report["returns"]
    # The model learned something: its weights moved from a fresh model's with the same seed.
    trained = MaskablePPO.load(tmp_path / "a" / "ppo_model.zip", device="cpu")
    fresh = MaskablePPO("MlpPolicy", TownVecEnv(cfg.env.make(), 1), seed=0)  # type: ignore[attr-defined]
    fresh_params = fresh.policy.state_dict()
    moved = [k for k, v in trained.policy.state_dict().items() if "action_net" in k and not v.equal(fresh_params[k])]
    assert moved


def test_same_seed_same_result_other_seed_differs(ppo_script: ModuleType, tmp_path: Path) -> None:
    a, _ = _train(ppo_script, tmp_path, "a")
    b, _ = _train(ppo_script, tmp_path, "b")
    c, _ = _train(ppo_script, tmp_path, "c", "trainer.seed=1")
    assert a["returns"] == b["returns"]
    assert a["returns"] != c["returns"]


def test_policy_wrapper_masks_invalid_actions(ppo_script: ModuleType) -> None:
    from sb3_contrib import MaskablePPO

    from agents import Policy
    from ga_env.sb3 import TownVecEnv

    env = ga_env.parallel_env(obs_mode="box", max_agents=6, max_cycles=8)
    model = MaskablePPO("MlpPolicy", TownVecEnv(env, 1), seed=0, device="cpu")
    # Make the untrained policy strongly prefer Research (3), which the mask below forbids.
    with torch.no_grad():
        model.policy.action_net.bias[:] = torch.tensor([0.0, 0.0, 0.0, 20.0])
    sampled, greedy = ppo_script.SB3Policy(model), ppo_script.SB3Policy(model, greedy=True)
    assert isinstance(sampled, Policy)
    obs, _ = env.reset_arrays(0)
    obs = np.repeat(obs, 50, axis=0)  # (300, D)
    mask = np.zeros((len(obs), 4), dtype=np.int8)
    mask[:, 0] = 1
    mask[::2, 2] = 1  # even rows may Move or Task, odd rows only Move
    rng = np.random.default_rng(0)
    acts = sampled.act(obs, mask, rng)
    assert mask[np.arange(len(acts)), acts].all()  # never a forbidden action
    assert set(acts[::2].tolist()) == {0, 2} and set(acts[1::2].tolist()) == {0}  # samples among the valid ones
    logits = greedy.logits(obs)
    expected = np.where(mask.astype(bool), logits, -np.inf).argmax(1)
    np.testing.assert_array_equal(greedy.act(obs, mask, rng), expected)
    unmasked = ppo_script.SB3Policy(model).act(obs, np.ones_like(mask), rng)
    assert (unmasked == 3).mean() > 0.9  # the mask, not the model, kept Research out


def test_command_line_smoke(tmp_path: Path) -> None:
    """The real entry point with tiny settings prints one JSON line and writes its artefacts."""
    cmd = [sys.executable, str(SCRIPT), *TINY, "--out", str(tmp_path / "run"), "--json", "--n-epochs", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["algorithm"] == "maskable_ppo" and report["ppo"]["n_epochs"] == 2 and report["env_steps"] == 64
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.yaml", "eval.json", "ppo_model.zip"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learning-rate", "0"], "--learning-rate: must be > 0"),
        (["experiment"], "are not key=value"),
        (["+experiment=artists", "trainer.lr=-1"], "config: trainer.lr: -1.0 must be > 0"),
        (["+experiment=artists", "trainer.bogus=1"], "bogus"),
    ],
)
def test_bad_input_is_a_clear_error(
    ppo_main: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        ppo_main.main([*args, "--out", str(tmp_path / "x")])
    assert exc.value.code != 0
    assert message in capsys.readouterr().err + str(exc.value.code)
    assert not (tmp_path / "x").exists()


def test_town_vec_env_steps_the_town_with_masks_and_fresh_days() -> None:
    """Rows = copies x personas; the masks are the town's; a day ends for every row together, truncated (PPO
    bootstraps), with the episode's return; the next day starts from new seeds; seeding reproduces."""
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    from ga_env.sb3 import TownVecEnv

    env = ga_env.parallel_env(max_agents=6, max_cycles=4)
    venv = TownVecEnv(env, 3)
    assert venv.num_envs == 18 and is_masking_supported(venv)
    venv.seed(5)
    obs = venv.reset()
    town = ga_env.parallel_env(max_agents=6, max_cycles=4)
    first, mask = town.reset_arrays(6)  # copy 1 of the first day: seed 5 + 1
    np.testing.assert_array_equal(obs[6:12], first)
    np.testing.assert_array_equal(get_action_masks(venv)[6:12], mask.astype(bool))
    total = np.zeros(18)
    for t in range(4):
        actions = np.zeros(18, dtype=np.int64)  # Move is always allowed
        obs, rew, dones, infos = venv.step(actions)
        total += rew
        assert dones.all() == (t == 3) and dones.any() == (t == 3)
    assert all(i["TimeLimit.truncated"] and i["episode"]["l"] == 4 for i in infos)
    np.testing.assert_allclose([i["episode"]["r"] for i in infos], total, rtol=1e-5)
    second, _ = town.reset_arrays(5 + 3 + 1)  # day 2 of copy 1: seed + n_envs * day + e
    np.testing.assert_array_equal(obs[6:12], second)
    with pytest.raises(ValueError, match="n_envs"):
        TownVecEnv(env, 0)
