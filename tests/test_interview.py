"""Believability interviews (``ga_sim/interview.py``, ``ga-eval --interview``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.testing.loopback import LoopbackServer
from ga_sim import interview
from ga_sim.simulation import Simulation
from scripts.eval import main


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for name, seed in (("a", 0), ("twin", 0), ("b", 1)):
        sim = Simulation.create(
            root,
            name,
            ["env.max_agents=4", "llm=scripted"],
            start="2023-02-13 07:00",
            stride=10,
            mind="generative",
            seed=seed,
        )
        sim.run(8, progress=False)
        sim.save()
    numeric = Simulation.create(
        root, "numeric", ["env.max_agents=4"], start="2023-02-13 07:00", stride=10, mind="scripted"
    )
    numeric.save()
    return root


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_every_persona_answers_five_categories_and_nothing_is_stored(results: Path) -> None:
    before_files = _files(results / "runs" / "a")
    minds = Simulation.resume(results, "a").society.society  # type: ignore[attr-defined]
    before = [[(n.kind, n.description, n.last_accessed) for n in a.memory.nodes] for a in minds.agents]
    report = interview.interview(results, "a")
    assert report["step"] == 8
    answers = report["answers"]
    assert len(answers) == 4 * 15 and {x["category"] for x in answers} == set(interview.CATEGORIES)
    assert all(x["answer"].strip() for x in answers)
    assert not any("{" in x["question"] for x in answers)  # the placeholders are filled
    after = Simulation.resume(results, "a").society.society  # type: ignore[attr-defined]
    assert [[(n.kind, n.description, n.last_accessed) for n in a.memory.nodes] for a in after.agents] == before
    assert _files(results / "runs" / "a") == before_files  # no checkpoint, no step written
    sample = interview.interview(results, "a", sample=2, seed=3)
    assert len({x["persona"] for x in sample["answers"]}) == 2


def test_identical_runs_cancel_position_bias(results: Path) -> None:
    """Same seed, same answers: the two orders send the same prompt, so each verdict counts once for each run."""
    a, twin = interview.interview(results, "a"), interview.interview(results, "twin")
    assert [x["answer"] for x in a["answers"]] == [x["answer"] for x in twin["answers"]]
    from test_eval import _loopback_backend

    with LoopbackServer() as server:
        llm = _loopback_backend(server, results)
        j = interview.compare(Simulation.resume(results, "a").meta, a, twin, llm)
    assert j["judgements"] == 2 * len(a["answers"])
    for c, v in j["categories"].items():
        assert v["a_win_rate"] == pytest.approx(0.5), c
        assert v["a_wins"] == v["b_wins"] and v["a_wins"] + v["b_wins"] + v["ties"] == 2 * v["questions"]
        assert v["agreement"] == pytest.approx(v["ties"] / (2 * v["questions"]))


def test_cli_interviews_and_judges_two_runs(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LoopbackServer() as server:
        judge = ["llm=openai", "llm.preset=loopback", f"llm.base_url={server.base_url}"]
        rc = main(["--results", str(results), "--name", "a", "--against", "b", "--interview", *judge])
    out = capsys.readouterr().out
    assert rc == 0 and "A win rate" in out and "reflections" in out
    report = json.loads((results / "eval" / "a_vs_b_interview.json").read_text())
    cats = report["comparison"]["categories"]
    assert set(cats) == {*interview.CATEGORIES, "overall"}
    for v in cats.values():
        assert 0 <= v["a_win_rate"] <= 1 and v["ci95"] >= 0 and 0 <= v["agreement"] <= 1
    assert main(["--results", str(results), "--name", "numeric", "--interview"]) == 2
    assert "numeric policy has no memories" in capsys.readouterr().err
