"""Lessons reach every LLM mind: ``ga-simulate --lessons``, ``--mind trained`` on a neuro-symbolic checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from agents.neurosymbolic import NeuroSymbolicPolicy
from conf.compose import compose
from ga_sim.console import HELP, Console
from ga_sim.runstore import RunError
from ga_sim.simulation import Simulation
from scripts.simulate import main

GROUPS = "env.groups=[artist_collective,residents]"
SMALL = [GROUPS, "env.max_agents=6"]
TINY = [
    "trainer.iterations=2",
    "trainer.group_size=2",
    "env.max_cycles=12",
    "trainer.eval_episodes=1",
    "trainer.eval_every=0",
    "agent.hidden=4",
]


def _train(out: Path, overrides: list[str]) -> Path:
    """A tiny GRPO run in-process; returns its folder (checkpoint.npz with its config and lessons)."""
    from trainers.grpo import train

    cfg = compose([*SMALL, *TINY, *overrides])
    train(cfg, out, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return out


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("grpo") / "softmax", [])


@pytest.fixture(scope="module")
def neuro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("grpo") / "neuro", ["agent=neurosymbolic", "agent.decide_every=2"])


def _lessons(run: Path) -> dict[str, list[str]]:
    lessons: dict[str, list[str]] = json.loads(str(np.load(run / "checkpoint.npz")["lessons"]))
    assert any(lessons.values()), "the tiny GRPO run made no lessons"
    return lessons


def _cli(results: Path, name: str, *args: str) -> int:
    return main(["--results", str(results), "--name", name, "--no-progress", *args])


def test_lessons_reach_every_persona_prompt_and_survive_resume(
    tmp_path: Path, softmax_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lessons = _lessons(softmax_run)
    # an uninterrupted run, and one cut after 3 steps then resumed
    assert _cli(tmp_path, "full", "--mind", "generative", "--lessons", str(softmax_run), "--step", "6", *SMALL) == 0
    assert _cli(tmp_path, "part", "--mind", "generative", "--lessons", str(softmax_run), "--step", "3", *SMALL) == 0
    capsys.readouterr()
    sim = Simulation.resume(tmp_path, "part", warn=lambda m: None)
    assert sim.meta["lessons"] == lessons
    assert sim.meta["lessons_source"] == str((softmax_run / "checkpoint.npz").resolve())
    agents = sim.society.society.agents  # type: ignore[attr-defined]
    for agent in agents:
        for text in lessons.get(agent.persona.group, []):
            assert text in agent.system, f"{agent.name}'s system prompt lacks the lesson {text!r}"
    assert {a.persona.group for a in agents if a.lessons} == {g for g, v in lessons.items() if v}
    sim.run(3, progress=False)
    full = Simulation.resume(tmp_path, "full", warn=lambda m: None)
    assert full.store.steps() == sim.store.steps()  # the lessons are part of the prompts: resume is exact
    # the console shows them, and where they came from
    assert "print lessons" in HELP
    out = Console(sim, progress=False).execute("print lessons")
    assert f"lessons from {sim.meta['lessons_source']}:" in out
    for group, texts in lessons.items():
        for text in texts:
            assert f"  {group}:" in out and text in out
    # a fork keeps them too
    assert _cli(tmp_path, "fork", "--fork", "part", "--step", "1") == 0
    forked = Simulation.resume(tmp_path, "fork", warn=lambda m: None)
    assert forked.society.lessons() == {g: v for g, v in lessons.items() if v}


def test_trained_neurosymbolic_checkpoint_asks_the_llm(tmp_path: Path, neuro_run: Path) -> None:
    lessons = _lessons(neuro_run)
    ckpt = neuro_run / "checkpoint.npz"
    args = ["--mind", "trained", f"agent.checkpoint={ckpt}", *SMALL]
    assert _cli(tmp_path, "full", *args, "--step", "8") == 0
    usage = json.loads((tmp_path / "runs" / "full" / "usage.json").read_text())
    assert usage["backend"] == "scripted" and usage["requests"] > 0
    assert _cli(tmp_path, "part", *args, "--step", "4", "--checkpoint-every", "4") == 0
    sim = Simulation.resume(tmp_path, "part", warn=lambda m: None)
    policy = sim.society.policy  # type: ignore[attr-defined]
    assert isinstance(policy, NeuroSymbolicPolicy)
    assert sim.society.llm is policy.llm
    assert policy.lessons == lessons and sim.meta["lessons_source"] == str(ckpt.resolve())
    saved = np.load(ckpt)
    for k, v in policy.params.items():
        np.testing.assert_array_equal(v, saved[f"param/{k}"])
    sim.run(4, progress=False)
    full = Simulation.resume(tmp_path, "full", warn=lambda m: None)
    assert full.store.steps() == sim.store.steps()  # exact, LLM term included
    resumed_usage = json.loads((tmp_path / "runs" / "part" / "usage.json").read_text())
    assert resumed_usage["requests"] == usage["requests"]  # the meter is checkpointed
    out = Console(sim, progress=False).execute("print lessons")
    assert "lessons from" in out and next(t for v in lessons.values() for t in v) in out


def test_trained_neurosymbolic_with_other_lessons(tmp_path: Path, neuro_run: Path, softmax_run: Path) -> None:
    sim = Simulation.create(
        tmp_path,
        "other",
        [*SMALL, f"agent.checkpoint={neuro_run}"],
        start="2023-02-13 07:00",
        stride=10,
        mind="trained",
        lessons=softmax_run / "checkpoint.npz",
    )
    assert sim.society.lessons() == _lessons(softmax_run)


def test_a_mind_without_an_llm_has_no_lessons(tmp_path: Path, softmax_run: Path) -> None:
    sim = Simulation.create(
        tmp_path, "s", [*SMALL, f"agent.checkpoint={softmax_run}"], start="2023-02-13 07:00", stride=10
    )
    assert sim.meta["mind"] == "trained" and sim.meta["lessons"] is None and sim.society.llm is None
    assert "no language model" in Console(sim, progress=False).execute("print lessons")
    sim.run(2, progress=False)
    assert not (sim.store.dir / "usage.json").exists()
    gen = Simulation.create(tmp_path, "g", SMALL, start="2023-02-13 07:00", stride=10, mind="generative")
    assert "start a run with --lessons" in Console(gen, progress=False).execute("print lessons")


def _error(capsys: pytest.CaptureFixture[str], results: Path, name: str, *args: str) -> str:
    assert _cli(results, name, *args) == 2
    return capsys.readouterr().err


def test_wrong_inputs_give_clear_errors(
    tmp_path: Path, softmax_run: Path, neuro_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare.npz"
    arrays: dict[str, Any] = {
        k: v for k, v in np.load(softmax_run / "checkpoint.npz").items() if k not in ("lessons", "sha256")
    }
    np.savez(bare, **arrays)
    err = _error(capsys, tmp_path, "a", "--mind", "generative", "--lessons", str(bare), *SMALL)
    assert f"{bare}: lessons: this checkpoint stores no lessons. Fix:" in err
    err = _error(capsys, tmp_path, "b", "--mind", "generative", "--lessons", str(tmp_path / "nope"), *SMALL)
    assert "nope: file: does not exist" in err and "Fix:" in err
    err = _error(capsys, tmp_path, "c", "--mind", "scripted", "--lessons", str(softmax_run), *SMALL)
    assert "--lessons: the scripted mind has no language model" in err and "Fix: use --mind generative" in err
    err = _error(
        capsys,
        tmp_path,
        "d",
        "--mind",
        "trained",
        "--lessons",
        str(softmax_run),
        f"agent.checkpoint={softmax_run}",
        *SMALL,
    )
    assert "checkpoint.npz: config_yaml: agent.kind: is softmax" in err and "agent=neurosymbolic" in err
    err = _error(
        capsys, tmp_path, "e", "--mind", "generative", "--lessons", str(softmax_run), "env.groups=[research_lab]"
    )
    assert "lessons: are for group(s) artist_collective, residents, which are not in this town" in err
    assert "Fix: add them: env.groups=[research_lab,artist_collective,residents]" in err
    err = _error(
        capsys, tmp_path, "f", "--mind", "trained", f"agent.checkpoint={neuro_run}", "env.groups=[research_lab]"
    )
    assert "neuro/checkpoint.npz: lessons: are for group(s) artist_collective, residents" in err
    assert "Fix: simulate the town it was trained on" in err
    # another town layout (a neuro-symbolic checkpoint without lessons): load_params says so
    neuro_bare = tmp_path / "neuro_bare.npz"
    ns = np.load(neuro_run / "checkpoint.npz")
    np.savez(neuro_bare, **{k: v for k, v in ns.items() if k not in ("lessons", "sha256")})
    err = _error(
        capsys, tmp_path, "g", "--mind", "trained", f"agent.checkpoint={neuro_bare}", "env.groups=[research_lab]"
    )
    assert f"{neuro_bare}: param/" in err and "does not fit this town" in err and "Fix:" in err
    assert _cli(tmp_path, "ok", "--mind", "scripted", *SMALL) == 0
    err = _error(capsys, tmp_path, "ok", "--resume", "--lessons", str(softmax_run))
    assert "keeps its own configuration (and lessons)" in err and "--lessons" in err
    with pytest.raises(RunError, match=r"lessons: is empty"):
        empty = tmp_path / "empty.npz"
        np.savez(empty, **{**arrays, "lessons": np.array("{}")})
        Simulation.create(tmp_path, "g", SMALL, start="2023-02-13 07:00", stride=10, mind="generative", lessons=empty)
