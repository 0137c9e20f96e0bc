"""``scripts/compare.py``: every MARL method against GRPO with tiny budgets (the CI smoke test of the benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts.compare import main
from trainers import compare

pytest.importorskip("sb3_contrib")
pytest.importorskip("torchrl")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"
TINY = [
    "+experiment=artists",
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=12",
    "trainer.eval_episodes=2",
    "trainer.eval_every=1",
]


def test_compare_json_line_with_curves_and_tuning(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), *TINY, "--methods", "grpo", "maskable_ppo", "mappo", "--seeds", "0", "1"]
    cmd += ["--tune-factors", "1", "3", "--out", str(tmp_path / "cmp"), "--json"]
    cmd += ["--", "maskable_ppo:--n-epochs", "maskable_ppo:2", "mappo:--n-epochs", "mappo:2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one JSON line, nothing else on stdout
    summary = json.loads(lines[0])
    assert summary["benchmark"] == "marl_methods" and summary["seeds"] == [0, 1]
    assert summary["groups"] == ["artist_collective", "residents"]
    # Equal budgets: 2 iterations x 2 days x 12 steps of the town for every learner.
    assert {a["env_steps"] for a in summary["algorithms"].values()} == {48}
    # The same curve points (every iteration) and the endpoint for every method.
    for m in ("grpo", "maskable_ppo", "mappo"):
        assert [p["env_steps"] for p in summary["curves"][m]] == [24, 48]
        assert summary["algorithms"][m]["steps_to_90"]["mean"] in (24.0, 36.0, 48.0)
        assert 0 < summary["algorithms"][m]["train_s"]["mean"]
    for kind in ("grpo", "maskable_ppo", "mappo", *compare.BASELINES):
        for group in [*summary["groups"], "overall"]:
            cell = summary["returns"][kind][group]
            assert np.isfinite(cell["mean"]) and cell["std"] >= 0 and cell["ci95"] >= 0
    # Tuning: every method got the same grid (1x and 3x its own default lr) on seed 100, its best value was
    # used for the seeds.
    tuning = summary["tuning"]
    assert tuning["seed"] == 100 and tuning["factors"] == [1.0, 3.0]
    assert tuning["default_lr"] == {"grpo": 0.01, "maskable_ppo": 1e-3, "mappo": 1e-3}
    for m in ("grpo", "maskable_ppo", "mappo"):
        d = tuning["default_lr"][m]
        assert set(tuning["tried"][m]) == {str(d), str(float(f"{3 * d:.3g}"))}
        best = max(tuning["tried"][m], key=tuning["tried"][m].get)
        assert tuning["chosen"][m] == float(best)
    ppo = [json.loads((tmp_path / "cmp" / f"maskable_ppo_seed{s}" / "eval.json").read_text()) for s in (0, 1)]
    assert all(r["ppo"]["n_epochs"] == 2 and r["ppo"]["learning_rate"] == tuning["chosen"]["maskable_ppo"] for r in ppo)
    values = [r["returns"]["trained"]["residents"] for r in ppo]
    assert summary["returns"]["maskable_ppo"]["residents"]["mean"] == pytest.approx(np.mean(values))
    grpo = [json.loads((tmp_path / "cmp" / f"grpo_seed{s}" / "eval.json").read_text()) for s in (0, 1)]
    assert [g["eval_seeds"] for g in grpo] == [r["eval_seeds"] for r in ppo]  # same evaluation seeds
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text()) == summary
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000


def test_finished_runs_are_reused_and_others_run_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "grpo_seed0"
    overrides = [*TINY, "trainer.seed=0"]
    first = compare.run_method("grpo", overrides, run_dir, lr=0.01)
    stamp = (run_dir / "eval.json").stat().st_mtime_ns
    assert compare.run_method("grpo", overrides, run_dir, lr=0.01) == first  # the same settings: reused
    assert (run_dir / "eval.json").stat().st_mtime_ns == stamp
    assert "reusing the finished run" in capsys.readouterr().err
    # Another learning rate runs again, from a clean folder: its metrics are its own 2 iterations only.
    (run_dir / "stray.txt").write_text("left by the earlier run")
    other = compare.run_method("grpo", overrides, run_dir, lr=0.03)
    assert (run_dir / "eval.json").stat().st_mtime_ns != stamp and not (run_dir / "stray.txt").exists()
    assert json.loads((run_dir / compare.RECORD).read_text())["key"]["lr"] == 0.03
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert other["train_s"] == pytest.approx(sum(r["charts/iteration_seconds"] for r in rows))
    # A run killed before its record (no compare_run.json) is run again, not taken for finished.
    (run_dir / compare.RECORD).unlink()
    compare.run_method("grpo", overrides, run_dir, lr=0.03)
    assert "reusing" not in capsys.readouterr().err and (run_dir / compare.RECORD).exists()


def test_steps_to_90_and_table() -> None:
    run = {
        "curve": [{"env_steps": 10, "returns": {"a": 1.0}}, {"env_steps": 20, "returns": {"a": 9.5}}],
        "returns": {"ippo": {"a": 10.0}},
        "env_steps": 30,
        "train_s": 1.5,
        "total_s": 2.0,
    }
    assert compare.steps_to_90(run, "ippo") == 20.0
    assert compare.seed_curve(run, "ippo") == {10: 1.0, 20: 9.5, 30: 10.0}
    summary = compare.summarise({"ippo": [run, run]}, [0, 1])
    assert summary["curves"]["ippo"][-1] == {"env_steps": 30, "mean": 10.0, "std": 0.0, "ci95": 0.0}
    text = compare.table(summary, "x")
    assert "| a | 10.00 ± 0.00 |" in text and "| ippo | 30 | 20 ± 0 | 1.5 ± 0.0 | default (not tuned) |" in text


def test_merge_keeps_each_method_with_its_tuning() -> None:
    base = {"experiment": "x", "overrides": ["+experiment=artists"], "seeds": [0, 1], "groups": ["a"], "jobs": 2}
    cell = {"mean": 1.0, "std": 0.0, "ci95": 0.0}
    one = {
        **base,
        "returns": {"grpo": {"a": cell}, "heuristic": {"a": cell}},
        "curves": {"grpo": []},
        "algorithms": {"grpo": {"env_steps": 30}},
        "tuning": {
            "seed": 100,
            "factors": [1.0],
            "default_lr": {"grpo": 0.01},
            "tried": {"grpo": {}},
            "chosen": {"grpo": 0.01},
        },
    }
    two = {**base, "returns": {"rllib_ppo": {"a": cell}}, "curves": {"rllib_ppo": []}, "algorithms": {"rllib_ppo": {}}}
    merged = compare.merge([one, two])
    assert set(merged["returns"]) == {"grpo", "heuristic", "rllib_ppo"} and set(merged["curves"]) == {
        "grpo",
        "rllib_ppo",
    }
    assert merged["tuning"]["chosen"] == {"grpo": 0.01} and merged["tuning"]["untuned"] == ["rllib_ppo"]
    with pytest.raises(ValueError, match="seeds differs"):
        compare.merge([one, {**two, "seeds": [0]}])


def test_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*TINY, "trainer.seed=1"])
    assert "trainer.seed is set by --seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*TINY, "--tune-factors", "1", "--tune-seed", "0", "--seeds", "0"])
    assert "--tune-seed 0 is among --seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*TINY, "--tune-factors", "0", "1"])
    assert "--tune-factors: must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*TINY, "--", "n-epochs"])
    assert "METHOD:OPTION" in capsys.readouterr().err
