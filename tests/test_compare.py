"""``scripts/compare.py``: GRPO vs SB3 PPO with tiny budgets (the CI smoke test of the benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts.compare import main
from trainers import compare

pytest.importorskip("supersuit")
pytest.importorskip("stable_baselines3")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"
TINY = [
    "+experiment=artists",
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=12",
    "trainer.eval_episodes=2",
    "trainer.eval_every=0",
]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, *args], capture_output=True, text=True, check=False, cwd=tmp_path
    )


def test_compare_json_line(tmp_path: Path) -> None:
    done = _run(tmp_path, "--seeds", "0", "1", "--out", str(tmp_path / "cmp"), "--json", "--", "--n-epochs", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON line, nothing else on stdout
    summary = json.loads(lines[0])
    assert summary["benchmark"] == "grpo_vs_sb3_ppo" and summary["experiment"] == "artists"
    assert summary["seeds"] == [0, 1] and summary["groups"] == ["artist_collective", "residents"]
    # Equal budgets: 2 iterations x 2 rollouts x 12 steps of the town for both learners.
    assert summary["algorithms"]["grpo"]["env_steps"] == summary["algorithms"]["ppo"]["env_steps"] == 48
    for algo in summary["algorithms"].values():
        assert 0 < algo["train_s"] <= algo["total_s"]
    for kind in ("grpo", "ppo", "random", "scripted", "chat", "heuristic"):
        for group in summary["groups"]:
            cell = summary["returns"][kind][group]
            assert np.isfinite(cell["mean"]) and cell["std"] >= 0 and cell["ci95"] >= 0
    # The mean ± std come from the per-seed evaluations written by each run.
    per_seed = [json.loads((tmp_path / "cmp" / f"ppo_seed{s}" / "eval.json").read_text()) for s in (0, 1)]
    assert all(r["ppo"]["n_epochs"] == 2 and r["env_steps"] == 48 for r in per_seed)
    values = [r["returns"]["trained"]["residents"] for r in per_seed]
    assert summary["returns"]["ppo"]["residents"]["mean"] == pytest.approx(np.mean(values))
    assert summary["returns"]["ppo"]["residents"]["std"] == pytest.approx(np.std(values))
    grpo = [json.loads((tmp_path / "cmp" / f"grpo_seed{s}" / "eval.json").read_text()) for s in (0, 1)]
    assert [g["eval_seeds"] for g in grpo] == [r["eval_seeds"] for r in per_seed]  # same evaluation seeds
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text()) == summary


def test_table_and_seed_override_error(capsys: pytest.CaptureFixture[str]) -> None:
    cell = {"mean": 12.25, "std": 0.4, "ci95": 0.5}
    summary = {
        "seeds": [0, 1, 2],
        "groups": ["artist_collective"],
        "returns": {k: {"artist_collective": cell} for k in compare.KINDS},
        "algorithms": {"grpo": {"env_steps": 48, "train_s": 1.0, "total_s": 2.0}},
    }
    text = compare.table(summary, "artists")
    assert "| group | grpo | ppo | random | scripted | chat | heuristic |" in text
    assert "| artist_collective | 12.2 ± 0.5 | 12.2 ± 0.5 | 12.2 ± 0.5 | 12.2 ± 0.5 | 12.2 ± 0.5 | 12.2 ± 0.5 |" in text
    assert "| grpo | 48 | 1.0 | 2.0 |" in text
    with pytest.raises(SystemExit):
        main([*TINY, "trainer.seed=1"])
    assert "trainer.seed is set by --seeds" in capsys.readouterr().err
