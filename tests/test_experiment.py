"""Interventions (``ga_sim/experiment.py``, ``ga-experiment``): branches from one checkpoint, seeds, paired CIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ga_sim.experiment import load_spec, run
from ga_sim.runstore import RunError, RunStore
from ga_sim.simulation import Simulation
from scripts.experiment import main

BASE = {"overrides": ["+experiment=artists", "env.max_agents=8"], "mind": "scripted", "step": 6}


def _spec(tmp_path: Path, branches: dict[str, object], **extra: object) -> Path:
    doc = {"name": "exp", "base": BASE, "steps": 12, "seeds": 3, "branches": branches, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_known_effect_has_the_right_sign_and_branches_share_the_base(tmp_path: Path) -> None:
    # Tripling the residents' task-progress weight can only raise what their work pays: same actions (the scripted
    # minds do not see the weights), a larger positive term.
    spec = load_spec(
        _spec(
            tmp_path,
            {
                "control": [],
                "paid_more": [{"objective": {"group": "residents", "term": "task_progress", "weight": 3.0}}],
                "moved": [{"regroup": {"persona": "Ana Rossi", "group": "artist_collective"}}],
            },
            jobs=2,
        )
    )
    results = tmp_path / "results"
    summary = run(results, spec, progress=False)
    paid = summary["branches"]["paid_more"]["figures"]
    d = paid["residents.return_per_agent"]["diff"]
    assert d["mean"] > 0 and d["significant"], d
    assert paid["residents.task_progress"]["diff"]["mean"] == pytest.approx(0.0)  # behaviour unchanged
    assert paid["artist_collective.return_per_agent"]["diff"]["mean"] == pytest.approx(0.0)
    # Every branch run starts from the base's checkpoint: the same first steps, then its own.
    base_steps = RunStore(results, "exp__base").steps()
    assert len(base_steps) == 6
    for b in ("control", "paid_more", "moved"):
        for s in (0, 1, 2):
            steps = RunStore(results, f"exp__{b}__s{s}").steps()
            assert len(steps) == 18 and steps[:6] == base_steps
            assert (results / "experiments" / "exp" / "transcripts" / f"{b}__s{s}.md").stat().st_size > 0
    # The moved persona is an artist in the branch's run (meta, town), the control keeps her a resident.
    groups = {p["name"]: p["group"] for p in RunStore(results, "exp__moved__s0").meta()["personas"]}
    assert groups["Ana Rossi"] == "artist_collective"
    assert Simulation.resume(results, "exp__moved__s0").env.personas[6].group == "artist_collective"
    control = {p["name"]: p["group"] for p in RunStore(results, "exp__control__s0").meta()["personas"]}
    assert control["Ana Rossi"] == "residents"
    report = json.loads((results / "experiments" / "exp" / "report.json").read_text())
    assert report["seeds"] == [0, 1, 2] and report["control"] == "control"
    assert "| residents.return_per_agent |" in (results / "experiments" / "exp" / "report.md").read_text()


def test_a_killed_experiment_resumes_and_gives_the_same_report(tmp_path: Path) -> None:
    path = _spec(tmp_path, {"control": [], "random": [{"mind": "random"}]})
    results = tmp_path / "results"
    first = run(results, load_spec(path), progress=False)
    # As if killed: one branch run lost its last steps and checkpoints after the branch point.
    store = RunStore(results, "exp__random__s1")
    for step, ckpt in store.checkpoints():
        if step > 6:
            ckpt.unlink()
    store.truncate_steps(6)
    again = run(results, load_spec(path), progress=False)
    assert again["branches"] == first["branches"]
    # The seeds give the minds and the town their own streams: random minds differ from seed to seed.
    r0, r1 = (RunStore(results, f"exp__random__s{s}").steps()[6:] for s in (0, 1))
    assert r0 != r1


def test_generative_interventions_reach_the_minds(tmp_path: Path) -> None:
    base = {**BASE, "overrides": ["env.max_agents=4", "llm=scripted"], "mind": "generative", "step": 2}
    branches = {
        "control": [],
        "rumour": [
            {"whisper": {"persona": "Isabel Ortiz", "text": "The mural opening is on Friday."}},
            {"memory": {"persona": "Theo Ortiz", "text": "Isabel said the murals are about the river."}},
        ],
    }
    spec = load_spec(_spec(tmp_path, branches, base=base, steps=2, seeds=1))
    results = tmp_path / "results"
    run(results, spec, progress=False)
    minds = Simulation.resume(results, "exp__rumour__s0").society.society
    texts = {a.name: [n.description for n in a.memory.nodes] for a in minds.agents}
    assert "The mural opening is on Friday." in texts["Isabel Ortiz"]
    assert "Isabel said the murals are about the river." in texts["Theo Ortiz"]
    control = Simulation.resume(results, "exp__control__s0").society.society
    assert not any("mural opening" in n.description for a in control.agents for n in a.memory.nodes)


@pytest.mark.parametrize(
    ("branches", "extra", "message"),
    [
        ({"a": []}, {}, "control: 'control' is not a branch"),
        ({"control": [], "b": [{"shout": 1}]}, {}, "is not one intervention"),
        ({"control": [], "b": [{"objective": {"group": "residents"}}]}, {}, "lacks or adds fields"),
        ({"control": [], "b": [{"mind": "generative"}]}, {}, "is not a policy mind"),
        ({"control": []}, {"steps": 0}, "steps: 0 is not an integer >= 1"),
        ({"control": []}, {"colour": "red"}, "colour: is not a field"),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(
    tmp_path: Path, branches: dict[str, object], extra: dict[str, object], message: str
) -> None:
    path = _spec(tmp_path, branches, **extra)
    with pytest.raises(RunError, match=r"[Ff]ix") as e:
        load_spec(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_interventions_the_town_or_minds_refuse_are_reported_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {"control": [], "b": [{"regroup": {"persona": "Nobody", "group": "residents"}}]}
    assert main([str(_spec(tmp_path, bad)), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "regroup.Nobody" in err and "Fix" in err
    assert not (tmp_path / "r" / "runs" / "exp__control__s0").exists()  # nothing ran
    whisper = {"control": [], "b": [{"whisper": {"persona": "Isabel Ortiz", "text": "hi"}}]}
    assert main([str(_spec(tmp_path, whisper)), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    assert "needs generative minds" in capsys.readouterr().err


def test_branch_meta_switches_lessons_off_and_moves_minds(tmp_path: Path) -> None:
    from ga_sim.experiment import _branch_meta

    spec = load_spec(
        _spec(tmp_path, {"control": [], "plain": [{"lessons": False}, {"llm": ["llm.permute_options=true"]}]})
    )
    meta = {
        "overrides": ["+experiment=artists", "env.max_agents=8"],
        "mind": "generative",
        "lessons": {"artist_collective": ["Talk at the gallery."]},
        "format": 3,
    }
    plain = _branch_meta(meta, spec, "plain", 2)
    assert plain["lessons"] == {} and plain["overrides"][-1] == "llm.permute_options=true" and "format" not in plain
    assert plain["experiment"] == {"name": "exp", "branch": "plain", "seed": 2, "interventions": spec.branches["plain"]}
    assert _branch_meta(meta, spec, "control", 0)["lessons"] == meta["lessons"]
