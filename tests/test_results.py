"""scripts/results.py: the README's result tables from several trainer seeds, with CIs and ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TINY = ["trainer.iterations=1", "trainer.group_size=2", "env.max_cycles=12", "trainer.eval_episodes=3"]


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "scripts/results.py", "--experiments", "artists", "--seeds", "0", "1", "--jobs", "1"]
    cmd += ["--out", str(tmp_path / "docs"), "--runs", str(tmp_path / "runs"), *extra, *TINY]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_results_table_json_plot_and_reuse(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "docs" / "results.json").read_text())["artists"]
    assert results["seeds"] == [0, 1] and results["episodes"] == 3
    row = results["groups"]["artist_collective"]
    for policy in ("trained", "random", "scripted", "chat", "heuristic", "upper"):
        mean, half = row[policy]
        assert half >= 0
        per_seed = [
            json.loads((tmp_path / "runs" / f"artists_seed{s}" / "eval.json").read_text())["returns"][policy]
            for s in (0, 1)
        ]
        assert mean == pytest.approx(sum(r["artist_collective"] for r in per_seed) / 2)
    assert row["best_simple"] in ("random", "scripted", "chat")
    assert {"night_at_home", "task_progress", "awareness_end"} <= set(row["goals/trained"])
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| group | trained | random | scripted | chat | heuristic | upper |" in text
    assert (tmp_path / "docs" / "results_artists.png").stat().st_size > 1000
    # --reuse evaluates the finished runs again (no training): the same figures.
    again = _run(tmp_path, "--reuse")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "docs" / "results.json").read_text())["artists"]["groups"] == results["groups"]
