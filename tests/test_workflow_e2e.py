"""Issue 5's acceptance, end to end through the real entry points:

two named runs (generative personas, scripted backend), one killed with SIGKILL mid-run and
resumed, both compressed, replayed in headless Chromium with a screenshot, and evaluated with the
LLM judge against the loopback OpenAI-compatible server through the openai backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agents.testing.loopback import LoopbackServer
from ga_sim.runstore import RunStore, decode_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SMALL = ["env.max_agents=8"]
STEPS = 30


def _run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, **kw
    )  # type: ignore[call-overload]


def test_simulate_kill_resume_compress_replay_eval(tmp_path: Path) -> None:
    res = ["--results", str(tmp_path)]
    sim = ["scripts.simulate", *res, "--no-progress", "--checkpoint-every", "3"]
    # 1. Two named runs: A uninterrupted; B killed with SIGKILL mid-run, then resumed.
    a = _run(*sim, "--name", "monday", "--step", str(STEPS), *SMALL)
    assert a.returncode == 0, a.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", *sim, "--name", "tuesday", "--seed", "1", "--step", str(STEPS), *SMALL],
        env=env,
        cwd=ROOT,
    )
    store = RunStore(tmp_path, "tuesday")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not any(s >= 9 for s, _ in store.checkpoints()):
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = max(s for s, _ in store.checkpoints())
    assert killed_at < STEPS
    b = _run(*sim, "--name", "tuesday", "--resume", "--until", str(STEPS))
    assert b.returncode == 0, b.stderr
    ref = _run(*sim, "--name", "tuesday-ref", "--seed", "1", "--step", str(STEPS), *SMALL)
    assert ref.returncode == 0, ref.stderr
    assert store.steps() == RunStore(tmp_path, "tuesday-ref").steps()  # nothing lost, nothing different
    assert [r["step"] for r in store.steps()] == list(range(1, STEPS + 1))
    for _, path in store.checkpoints():
        decode_checkpoint(path)

    # 2. Compress both.
    for name in ("monday", "tuesday"):
        c = _run("scripts.compress", *res, "--name", name)
        assert c.returncode == 0, c.stderr
        doc = json.loads((tmp_path / "compressed" / name / "movement.json").read_text())
        assert doc["meta"]["steps"] == STEPS
        assert (tmp_path / "compressed" / name / "simulation.md").read_text().startswith(f"# Simulation `{name}`")

    # 3. Replay in headless Chromium, with a screenshot.
    from test_replay_browser import replay_in_browser  # tests/ is on sys.path (pytest's prepend import mode)

    shot = ARTIFACTS / "replay_e2e.png"
    figures = replay_in_browser(tmp_path, "tuesday", shot, shot_step=STEPS)
    assert figures["moved"] and figures["unknown_status"] == 404
    assert shot.stat().st_size > 10_000

    # 4. Evaluate with the LLM judge against the loopback OpenAI-compatible server (openai backend).
    with LoopbackServer() as server:
        e = _run(
            "scripts.eval",
            *res,
            "--name",
            "monday",
            "--against",
            "tuesday",
            "--judge",
            "--context-chars",
            "6000",
            "llm=openai",
            "llm.preset=loopback",
            f"llm.base_url={server.base_url}",
        )
        served = server.stats()["served"].get("chat", 0)
    assert e.returncode == 0, e.stderr
    report = json.loads((tmp_path / "eval" / "monday_vs_tuesday.json").read_text())
    judge = report["judge"]
    assert judge["judgements"] == 2 * judge["parts"] == served > 0
    assert judge["backend"]["name"] == "openai" and judge["fallbacks"] == 0
    assert "LLM judge: A = monday, B = tuesday" in e.stdout and "agreement" in e.stdout
    assert report["metrics"][0]["llm"]["backend"] == "scripted"
