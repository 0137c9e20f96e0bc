"""The interactive console: a scripted session on stdin exercises every command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ga_sim.console import Console
from ga_sim.runstore import RunStore
from ga_sim.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["env.max_agents=6"]


def _session(tmp_path: Path) -> str:
    history = tmp_path / "history.csv"
    history.write_text("name,whisper\nIsabel Ortiz,Theo promised to print the posters by Friday\n")
    return "\n".join(
        [
            "help",
            "run 7",
            "print current time",
            "print persona schedule Isabel Ortiz",
            "print all persona schedule",
            "print hourly org persona schedule Isabel",
            "print persona current tile isabel ortiz",
            "print persona chatting with buffer Isabel",
            "print persona associative memory (event) Isabel",
            "print persona associative memory (thought) Isabel",
            "print persona associative memory (chat) Isabel",
            "print persona spatial memory Isabel",
            "print tile event 8,8",
            "print tile details 5,6",
            "print tile details 500,6",
            f"call -- load history {history}",
            "print persona associative memory (thought) Isabel",
            "call -- analysis Isabel",
            "What are you working on today?",
            "end_convo",
            "dance the tango",
            "print persona schedule Nobody",
            "save",
            "run 3",
            "history",
            "exit",
            "",
        ]
    )


@pytest.mark.parametrize("mind", ["generative", "scripted"])
def test_piped_session_exercises_every_command(tmp_path: Path, mind: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "scripts.simulate", "--results", str(tmp_path), "--name", "s", "--no-progress"]
    proc = subprocess.run(
        [*cmd, "--interactive", "--mind", mind, *SMALL],
        input=_session(tmp_path),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "print hourly org persona schedule NAME" in out and "start path tester mode" in out  # help
    assert "ran 7 step(s); now step 7, 2023-02-13 08:10" in out
    assert "Monday February 13, 2023, 08:10 (step 7" in out
    assert out.count("Isabel Ortiz") > 10
    assert "Marco Rossi" in out  # print all persona schedule lists everyone
    assert "08:00" in out or "07:00" in out  # hourly schedule / routine
    assert "Willowbrook:" in out  # current tile address
    assert "error: tile: (500, 6) is off the map" in out
    assert "tile (5, 6)\n  address:  Willowbrook:Maple Row:Ortiz home" in out
    assert "loaded 1 memories" in out or "loaded 2 memories" in out
    assert "talking with Isabel Ortiz (not stored in memory)" in out
    assert "You: What are you working on today?" in out
    assert "end of the conversation with Isabel Ortiz" in out
    assert "unknown command 'dance the tango'; type 'help'" in out
    assert "error: persona 'Nobody' is unknown" in out or "error: no persona named 'Nobody'" in out
    assert "saved step 7" in out and "ran 3 step(s); now step 10" in out
    assert "  24  history" in out and "   1  help" in out  # 24 lines typed, the analysis message included
    assert "discarded the steps after step 7; bye" in out
    store = RunStore(tmp_path, "s")
    assert len(store.steps()) == 7 and max(s for s, _ in store.checkpoints()) == 7
    if mind == "generative":
        assert "Theo promised to print the posters by Friday" in out  # the seeded memory is a thought
        assert "plan for today" in out
    else:
        assert "has no language model" in out  # the numeric policy says it cannot talk


def test_analysis_chat_is_not_stored_and_fin_saves(tmp_path: Path) -> None:
    sim = Simulation.create(tmp_path, "a", SMALL, start="2023-02-13 07:00", stride=10, mind="generative")
    console = Console(sim, progress=False)
    sim.run(3, progress=False)
    before = sim.society.state_dict()["minds"]["agents"]["Isabel Ortiz"]["memory"]
    out = io.StringIO()
    console.loop(io.StringIO("call -- analysis Isabel\nHow are you?\nend_convo\nfin\n"), out)
    after = sim.society.state_dict()["minds"]["agents"]["Isabel Ortiz"]["memory"]
    assert repr(before) == repr(after)
    assert "saved step 3" in out.getvalue()
    assert console.execute("run x").startswith("error: run: 'x' is not a positive number")


def test_path_tester_aliases_and_one_address_per_place(tmp_path: Path) -> None:
    sim = Simulation.create(tmp_path, "p", SMALL, start="2023-02-13 07:00", stride=10, mind="generative")
    console = Console(sim, progress=False)
    sim.run(2, progress=False)
    state = repr(sim.society.state_dict())
    session = "\n".join(
        [
            "start path tester mode",
            "Isabel, Willow Cafe:dining area",
            "isabel ortiz -> Willowbrook:Maple Row:Ortiz home",
            "Isabel 30,12",
            "Isabel, 0,0",
            "Nobody, Willow Cafe:dining area",
            "Isabel, Moon:base",
            "exit",
            "print persona spatial memory Isabel",
            "print tile details 5,6",
            "finish",
        ]
    )
    out = io.StringIO()
    assert console.loop(io.StringIO(session + "\n"), out) == 0
    text = out.getvalue()
    # the path a Move would walk, without advancing the simulation
    x, y = sim.env.position(0)
    path = [line for line in text.splitlines() if line.startswith("  path: ")]
    assert path[0].startswith(f"  path: ({x}, {y}) -> ") and len(path) == 2
    tiles = len(path[0].split(" -> ")) - 1
    speed = sim.env.dynamics.move_speed
    assert f"  {tiles} tile(s), {-(-tiles // speed)} Move step(s) at {speed} tiles per step" in text
    assert "-> Willowbrook:Willow Cafe:dining area" in text
    assert "already there: 0 tiles, no Move step" in text
    assert "(30, 12) is in Willowbrook:Streets:main street: a Move walks to the place and stops on its first" in text
    assert "error: path: tile (0, 0) is a wall. Fix: choose a walkable tile" in text
    assert "error: path: 'Nobody, Willow Cafe:dining area' names no persona and destination. Fix: write NAME" in text
    assert "error: path: place: unknown address 'Moon:base'" in text and "Fix: use a place of the map" in text
    assert "left path tester mode" in text
    assert sim.step_count == 2 and repr(sim.society.state_dict()) == state
    # one place, one spelling: world:sector:arena, as 'print tile details' writes it
    assert "  Willowbrook:Maple Row:Ortiz home\n" in text and "  address:  Willowbrook:Maple Row:Ortiz home" in text
    assert "Willowbrook > " not in text and "Maple Row > " not in text
    assert "saved step 2" in text and text.rstrip().endswith("bye")
    # the other aliases of 'fin' save and end the session too; an empty line leaves the path tester
    for alias in ("f", "save and finish", "save  and  finish"):
        sim.run(1, progress=False)
        out = io.StringIO()
        assert console.loop(io.StringIO(f"start path tester mode\n\n{alias}\n"), out) == 0
        assert "left path tester mode" in out.getvalue()
        assert f"saved step {sim.step_count} to" in out.getvalue() and out.getvalue().rstrip().endswith("bye")
    assert max(s for s, _ in sim.store.checkpoints()) == 5
