"""compress: movement.json (deltas that rebuild every step exactly) and simulation.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ga_sim.compress import compress, expand_movement
from ga_sim.simulation import Simulation
from scripts.compress import main


@pytest.mark.parametrize("mind", ["generative", "scripted"])
def test_compress_round_trip_and_timeline(tmp_path: Path, mind: str) -> None:
    sim = Simulation.create(tmp_path, "run", ["env.max_agents=8"], start="2023-02-13 07:00", stride=10, mind=mind)
    sim.run(40, progress=False)
    out = compress(tmp_path, "run")
    assert out == tmp_path / "compressed" / "run"
    doc = json.loads((out / "movement.json").read_text())
    steps = sim.store.steps()
    assert doc["meta"]["start"] == "2023-02-13 07:00" and doc["meta"]["stride"] == 10
    assert doc["meta"]["steps"] == 40 and len(doc["movement"]) == 40
    assert set(doc["initial"]) == {p["name"] for p in doc["meta"]["personas"]}
    full = expand_movement(doc)
    for k, record in enumerate(steps):  # the deltas rebuild every persona's every step exactly
        for name, p in record["personas"].items():
            for field in ("tile", "action", "emoji", "description", "place", "utterance", "partner"):
                assert full[k][name][field] == p[field], (k, name, field)
    stored = sum(len(fields) for e in doc["movement"] for fields in e["personas"].values())
    assert stored < 40 * 8 * 7 / 2  # deltas: most fields do not change every step
    assert doc["conversations"], "a morning town has conversations"
    c = doc["conversations"][0]
    assert set(c) >= {"step", "time", "place", "participants", "turns"} and c["turns"][0][1]
    md = (out / "simulation.md").read_text()
    assert md.startswith("# Simulation `run`")
    for p in doc["meta"]["personas"]:
        assert f"## {p['name']}" in md
    assert "## Conversations" in md and f"> **{c['turns'][0][0]}:**" in md
    assert "2023-02-13 07:00–" in md
    if mind == "generative":
        assert "not a language model" in md  # the scripted backend is labelled as such


def test_compress_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--results", str(tmp_path), "--name", "missing"]) == 2
    assert "no run named 'missing'" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--name", "../../etc"]) == 2
    assert "not a valid run name" in capsys.readouterr().err
