"""Long runs through a faulty LLM server: a simulation and a GRPO run at a 30% fault rate.

(The GRPO run's server also requires a planted API key, which must appear in none of its files.)

The loopback OpenAI-compatible server (``agents.testing.loopback``) injects every fault kind it knows
(timeouts, HTTP 500/429/503, malformed JSON, empty content, an unknown action, an over-long
answer, a dropped connection) into 30% of the chat completions. Both runs must complete, every
fault must be retried or replaced by the rule-based fallback, and the counts must appear in the
run's usage report and in its TensorBoard scalars.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agents.testing.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
FAULT_RATE = 0.3


def _llm_overrides(server: LoopbackServer) -> list[str]:
    # Short client timeouts and back-off keep the run quick; the server's hangs outlast the timeout.
    return [
        "llm=openai",
        "llm.preset=loopback",
        f"llm.base_url={server.base_url}",
        "llm.timeout_s=0.5",
        "llm.backoff_s=0.01",
        "llm.max_retries=2",
        "llm.cache=false",
    ]


def _tb_scalars(folder: Path) -> dict[str, float]:
    """The last value of every scalar tag written under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


def _check_counts(report: dict[str, Any], injected: dict[str, int], scalars: dict[str, float]) -> None:
    faults = report["faults"]
    # Every injected fault was seen by the client (a loaded machine may add genuine timeouts, and
    # a malformed body is counted as malformed JSON or a malformed response by the request kind).
    assert sum(faults.values()) >= sum(injected.values()) > 0
    # Each fault was either retried or replaced by the fallback (the last attempt's fault).
    assert report["retries"] + report["fallbacks"] == sum(faults.values())
    assert report["fallbacks"] == sum(report["fallbacks_by_fault"].values())
    for kind, n in faults.items():
        assert scalars[f"llm/faults/{kind}"] == n
    assert scalars["llm/retries"] == report["retries"]
    assert scalars["llm/fallbacks"] == report["fallbacks"]
    assert scalars["llm/calls"] == report["calls"]


@pytest.mark.slow
def test_simulation_of_10_personas_200_steps_at_30pct_faults(tmp_path: Path) -> None:
    from ga_sim.simulation import Simulation

    with LoopbackServer(fault_rate=FAULT_RATE, hang_s=1.0, seed=11) as server:
        overrides = ["env.groups=[artist_collective,residents]", "env.max_agents=10", *_llm_overrides(server)]
        sim = Simulation.create(
            tmp_path, "faulty", overrides, start="2023-02-13 07:00", stride=10, mind="generative", seed=1
        )
        assert len(sim.env.agents) == 10
        sim.run(200, progress=False)
        stats = server.stats()
    assert sim.step_count == 200 and len(sim.store.steps()) == 200
    report = json.loads((sim.store.dir / "usage.json").read_text())
    print(json.dumps({"run": "simulation", "server": stats, "usage": report}))  # figures (pytest -s)
    assert report["step"] == 200
    injected = stats["injected"]
    # 30% of the chat completions the server answered carried a fault, of every kind.
    served = stats["served"]["chat"]
    assert served > 500
    assert abs(sum(injected.values()) / served - FAULT_RATE) < 0.05
    assert len(injected) >= 8, injected  # (bad_choice only applies to questions with a fixed set of choices)
    _check_counts(report, injected, _tb_scalars(sim.store.dir / "tb"))
    # The personas still acted on every step (answers from the model or from the fallback).
    assert all(len(r["personas"]) == 10 for r in sim.store.steps())


@pytest.mark.slow
def test_grpo_run_with_the_openai_backend_at_30pct_faults(tmp_path: Path) -> None:
    # The server requires a planted API key, read from the environment: it must reach no file.
    key = "sk-planted-0b8e6d2c4a1f3e5d"
    with LoopbackServer(fault_rate=FAULT_RATE, hang_s=1.0, seed=12, api_key=key) as server:
        cmd = [
            sys.executable,
            "-m",
            "trainers.grpo",
            "+experiment=artists",
            "agent=neurosymbolic",
            "agent.decide_every=2",
            *_llm_overrides(server),
            "llm.api_key_env=GA_TEST_KEY",
            "env.max_agents=8",
            "env.max_cycles=24",
            "trainer.iterations=3",
            "trainer.group_size=2",
            "trainer.eval_episodes=1",
            "trainer.eval_every=0",
            "trainer.checkpoint_every=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), GA_TEST_KEY=key)
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        stats = server.stats()
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run"
    report = json.loads((out / "llm_usage.json").read_text())
    print(json.dumps({"run": "grpo", "server": stats, "usage": report}))  # figures (pytest -s)
    assert json.loads((out / "eval.json").read_text())["llm_usage"] == report
    assert "LLM usage:" in proc.stdout
    assert abs(sum(stats["injected"].values()) / stats["served"]["chat"] - FAULT_RATE) < 0.08
    _check_counts(report, stats["injected"], _tb_scalars(out / "tb"))
    assert report["fallbacks_by_fault"].get("http_4xx", 0) == 0  # the key was sent and accepted
    # The key is in none of the run's files (.hydra/, TensorBoard with its hparams text, checkpoint,
    # metrics, usage report) nor in the output; only the variable's NAME is recorded.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(".hydra" in p.parts for p in files) and any("tfevents" in p.name for p in files)
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and key.encode("utf-32-le") not in data, path
    assert key not in proc.stdout + proc.stderr
    assert "GA_TEST_KEY" in (out / ".hydra" / "config.yaml").read_text()
    # The per-iteration rows carry the running counts too.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("llm/fallbacks" in r for r in rows)
    assert rows[-1]["llm/calls"] <= report["calls"]
