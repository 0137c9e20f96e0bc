"""eval: objective metrics, chunking without truncation, and the pairwise judge in both orders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.llm import make_backend
from agents.testing.loopback import LoopbackServer
from conf.schema import LLMConfig
from ga_sim.metrics import CRITERIA, _to_ab, chunk_pair, judge, run_metrics, split_lines, transcript_lines
from ga_sim.runstore import RunStore
from ga_sim.simulation import Simulation
from scripts.eval import main

SMALL = ["env.max_agents=8"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for name, mind in (("scripted", "scripted"), ("random", "random"), ("twin", "scripted")):
        sim = Simulation.create(root, name, SMALL, start="2023-02-13 07:00", stride=10, mind=mind, seed=1)
        sim.run(36, progress=False)
    return root


def test_metrics(results: Path) -> None:
    m = run_metrics(RunStore(results, "scripted"))
    r = run_metrics(RunStore(results, "random"))
    assert m["steps"] == 36 and m["personas"] == 8
    assert abs(sum(m["actions"].values()) - 1.0) < 1e-9
    assert set(m["groups"]) == {"artist_collective", "residents"}
    art = m["groups"]["artist_collective"]
    assert art["awareness_final"] is not None and 0.0 <= art["awareness_final"] <= art["awareness_peak"] <= 1.0
    assert m["groups"]["residents"]["awareness_final"] is None  # residents have no cause
    steps = RunStore(results, "scripted").steps()
    expected = sum(s["groups"]["artist_collective"]["reward"] for s in steps) / 5  # 5 artists among 8
    assert abs(art["return_per_agent"] - expected) < 1e-9
    assert m["conversations"]["count"] > 0 and m["conversations"]["turns"] >= m["conversations"]["count"]
    assert m["actions"] != r["actions"]  # two different minds act differently
    assert m["llm"]["backend"].startswith("none")


def test_chunking_never_truncates() -> None:
    a = [f"line {k} " + "x" * (k % 37) for k in range(500)]
    b = [f"other {k}" for k in range(60)]
    pairs = chunk_pair(a, b, 2000)
    assert len(pairs) > 1
    assert "\n".join(p[0] for p in pairs if p[0]) == "\n".join(a)
    assert "\n".join(p[1] for p in pairs if p[1]) == "\n".join(b)
    assert all(len(x) <= 1000 and len(y) <= 1000 for x, y in pairs)
    assert sum(len(p) for p in split_lines(a, 7)) == len(a)
    with pytest.raises(ValueError, match="--context-chars"):
        chunk_pair(["y" * 600], [], 1000)


def test_both_orders_map_back_to_runs() -> None:
    assert _to_ab("first", True) == "A" and _to_ab("first", False) == "B"
    assert _to_ab("second", True) == "B" and _to_ab("second", False) == "A"
    assert _to_ab("tie", True) == "tie" and _to_ab("nonsense", False) == "tie"


def _loopback_backend(server: LoopbackServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = LLMConfig(backend="openai", preset="loopback", base_url=server.base_url, max_retries=2, backoff_s=0.01)
    return make_backend(cfg, cache_dir=tmp_path / "cache")


def test_judge_identical_runs_cancel_position_bias(results: Path, tmp_path: Path) -> None:
    """Identical transcripts: swapping the order gives the same prompt, so every verdict for
    'first' in one order is one for the other run in the other order: votes for A and B are equal."""
    with LoopbackServer() as server:
        llm = _loopback_backend(server, tmp_path)
        verdict = judge(RunStore(results, "scripted"), RunStore(results, "twin"), llm, context_chars=6000)
        llm.close()
        served = server.stats()["served"]["chat"]
    assert transcript_lines(RunStore(results, "scripted")) == transcript_lines(RunStore(results, "twin"))
    assert verdict["parts"] > 1 and verdict["judgements"] == 2 * verdict["parts"] == served
    for c in CRITERIA:
        v = verdict["criteria"][c]
        assert v["A"] == v["B"] and v["A"] + v["B"] + v["tie"] == verdict["judgements"]
        assert 0.0 <= v["agreement"] <= 1.0


def test_judge_survives_faults_and_counts_fallbacks(results: Path, tmp_path: Path) -> None:
    with LoopbackServer(fault_rate=0.5, hang_s=0.5, seed=3) as server:
        cfg = LLMConfig(
            backend="openai", preset="loopback", base_url=server.base_url, max_retries=1, backoff_s=0.01, timeout_s=0.3
        )
        llm = make_backend(cfg, cache_dir=tmp_path / "cache")
        verdict = judge(RunStore(results, "scripted"), RunStore(results, "random"), llm, context_chars=8000)
        usage = llm.usage
        llm.close()
    assert verdict["judgements"] == 2 * verdict["parts"]
    assert verdict["fallbacks"] == usage.fallbacks > 0  # every fallback is reported (as a tie)
    assert sum(usage.faults.values()) > 0


def test_cli_writes_report(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LoopbackServer() as server:
        judge_llm = ["llm=openai", "llm.preset=loopback", f"llm.base_url={server.base_url}"]
        rc = main(["--results", str(results), "--name", "scripted", "--against", "random", "--judge", *judge_llm])
    out = capsys.readouterr().out
    assert rc == 0 and "return/agent" in out and "LLM judge: A = scripted, B = random" in out
    report = json.loads((results / "eval" / "scripted_vs_random.json").read_text())
    assert set(report["judge"]["criteria"]) == set(CRITERIA) and len(report["metrics"]) == 2
    assert main(["--results", str(results), "--name", "scripted", "--judge"]) == 2
    assert "needs two runs" in capsys.readouterr().err
