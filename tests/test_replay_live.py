"""Following a running simulation: ``/api/steps`` serves complete steps only, as ``steps.jsonl``
grows, is torn or rewritten; the page in headless Chromium follows real ``ga-simulate`` processes.

``GA_SAVE_DOCS=1 python -m pytest tests/test_replay_live.py`` also writes ``docs/replay_live.png``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_replay_browser import ARTIFACTS, chrome, wait_for

from ga_sim.compress import compress_run, expand_movement
from ga_sim.replay import ReplayServer
from ga_sim.runstore import RunStore
from ga_sim.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _get(server: ReplayServer, path: str) -> tuple[int, Any]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.getheader("Content-Type") == "application/json" or not path.startswith("/api/"), path
    return r.status, json.loads(body) if path.startswith("/api/") else body


def _follow(server: ReplayServer, name: str, after: int = 0) -> dict[str, Any]:
    status, answer = _get(server, f"/api/steps?name={name}&after={after}")
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


def _states(head: dict[str, Any], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-step persona states from ``/api/steps`` entries, as the page builds them."""
    cur = {n: {"tile": list(xy)} for n, xy in head["initial"].items()}
    out = []
    for e in entries:
        cur = {n: {**s, **e["personas"].get(n, {})} for n, s in cur.items()}
        out.append(cur)
    return out


def test_api_serves_complete_steps_as_the_run_grows(tmp_path: Path) -> None:
    with ReplayServer(tmp_path / "results", port=0, quiet=True) as server:  # the folder does not exist yet
        assert _follow(server, "live") == {"name": "live", "exists": False, "after": 0, "total": 0, "steps": []}
        assert _get(server, "/?name=live&follow=1")[0] == 200  # following a run to come
        assert _get(server, "/?name=live")[0] == 404  # replaying it needs it
        sim = Simulation.create(
            tmp_path / "results", "live", ["env.max_agents=4"], start="2023-02-13 07:00", stride=10, mind="scripted"
        )
        first = _follow(server, "live")
        assert first["exists"] and first["total"] == 0 and first["steps"] == []
        assert first["head"]["meta"]["stride"] == 10 and len(first["head"]["initial"]) == 4
        sim.run(3, progress=False)
        assert [e["step"] for e in _follow(server, "live")["steps"]] == [1, 2, 3]
        sim.run(4, progress=False)
        later = _follow(server, "live", after=3)
        assert later["total"] == 7 and [e["step"] for e in later["steps"]] == [4, 5, 6, 7] and "head" not in later
        # Pieced together from two answers, the steps are those of the whole run's movement.json.
        whole = compress_run(RunStore(tmp_path / "results", "live"))
        pieces = _states(first["head"], _follow(server, "live", after=0)["steps"][:3] + later["steps"])
        assert pieces == [{n: {"tile": s["tile"], **s} for n, s in st.items()} for st in expand_movement(whole)]

        # A half-written line is not a step, until its newline is there.
        steps = RunStore(tmp_path / "results", "live").steps_path
        lines = steps.read_bytes().splitlines(keepends=True)
        extra = lines[-1].replace(b'"step": 7', b'"step": 8')
        with steps.open("ab") as f:
            f.write(extra[:40])
        torn = _follow(server, "live", after=7)
        assert torn["total"] == 7 and torn["steps"] == []
        with steps.open("ab") as f:
            f.write(extra[40:])
        assert [e["step"] for e in _follow(server, "live", after=7)["steps"]] == [8]
        # A resume rewrites the file shorter (a new inode): the answer says so; the client drops the rest.
        RunStore(tmp_path / "results", "live").truncate_steps(5)
        shorter = _follow(server, "live", after=8)
        assert shorter["total"] == 5 and shorter["steps"] == []
        assert [e["step"] for e in _follow(server, "live", after=4)["steps"]] == [5]
        # A complete line that is not a step record: a JSON 500 naming the file, line and fix.
        with steps.open("ab") as f:
            f.write(b"[1, 2]\n")
        status, answer = _get(server, "/api/steps?name=live&after=5")
        assert status == 500 and "steps.jsonl: line 6" in answer["error"] and "Fix:" in answer["error"]


@pytest.mark.parametrize(
    "query",
    ["name=..", "name=%2e%2e", "name=..%2Fsecret", "name=/etc/passwd", "name=evil", "name=", "name=live&after=-1",
     "name=live&after=x", "name=live&after=%C2%B2", "after=0"],
)  # fmt: skip
def test_api_refuses_bad_names_and_traversal(tmp_path: Path, query: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_text('{"secret": true}')
    (tmp_path / "results" / "runs").mkdir(parents=True)
    os.symlink(outside, tmp_path / "results" / "runs" / "evil")
    with ReplayServer(tmp_path / "results", port=0, quiet=True) as server:
        status, answer = _get(server, f"/api/steps?{query}")
        assert status in (400, 403) and "error" in answer and "true" not in json.dumps(answer)
        if "after" not in query and query != "name=":  # an empty name: the page asks for one
            assert _get(server, f"/?{query}&follow=1")[0] in (400, 403)


def _simulate(results: Path, *args: str) -> subprocess.Popen[bytes]:
    """A real ``ga-simulate`` process (a new run: generative personas on the scripted LLM backend)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "scripts.simulate", "--results", str(results), "--name", "live", "--no-progress"]
    return subprocess.Popen([*argv, *args], env=env, cwd=results.parent, stdout=subprocess.DEVNULL)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    assert proc.wait(timeout=120) == 0


def test_page_follows_a_running_simulation(tmp_path: Path) -> None:
    results = tmp_path / "results"  # created by ga-simulate while the page is open
    with ReplayServer(results, port=0, quiet=True) as server:
        driver = chrome()
        try:
            shown = "return document.getElementById('stepinfo').textContent"
            state = "return window.replayState"
            driver.get(f"{server.url}/?name=live&follow=1&speed=8&zoom=0.8")
            wait_for(driver, "return window.replayState.polls >= 1")
            assert driver.execute_script(state)["live"] == "waiting"
            assert "waiting for run live" in driver.find_element("id", "live").text
            driver.execute_script("window.sameDocument = true")  # gone if the page reloads

            # 1. A new run: the page picks up its steps and, following, plays to the newest.
            proc = _simulate(
                results, "--mind", "generative", "--step", "6", "--checkpoint-every", "2", "env.max_agents=12"
            )
            wait_for(driver, "return window.replayState.steps >= 2", timeout=120)  # steps arrive while it runs
            _finish(proc)
            wait_for(driver, "return window.replayState.steps === 6 && window.replayState.step === 6")
            counts = [int(driver.execute_script(shown).split("/")[1])]
            assert driver.execute_script(state)["following"] is True
            assert driver.find_element("id", "live").text.startswith("LIVE · newest 6 · 08:00")

            # 2. A continuation; then a line cut short (a kill mid-write) is not shown.
            _finish(_simulate(results, "--resume", "--step", "6", "--checkpoint-every", "3"))
            wait_for(driver, "return window.replayState.step === 12")
            counts.append(int(driver.execute_script(shown).split("/")[1]))
            time.sleep(0.4)  # a chat bubble or two settle on the screenshot
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(ARTIFACTS / "replay_live.png"))
            if os.environ.get("GA_SAVE_DOCS") == "1":
                assert driver.save_screenshot(str(DOCS / "replay_live.png"))
            with (results / "runs" / "live" / "steps.jsonl").open("ab") as f:
                f.write(b'{"step": 13, "time": "2023-02-13T09:00", "perso')
            polls = driver.execute_script(state)["polls"]
            wait_for(driver, f"return window.replayState.polls >= {polls + 2}")
            assert driver.execute_script(state)["steps"] == 12 and driver.execute_script(state)["live"] == "live"

            # 3. Scrubbing back leaves follow mode: the view stays while the count grows.
            slide = "const s = document.getElementById('slider'); s.value = %d; s.dispatchEvent(new Event('input'));"
            driver.execute_script(slide % 2)
            wait_for(driver, "return window.replayState.following === false && window.replayState.step === 2")
            _finish(_simulate(results, "--resume", "--step", "6", "--checkpoint-every", "2"))  # drops the torn line
            wait_for(driver, "return window.replayState.steps === 18")
            counts.append(int(driver.execute_script(shown).split("/")[1]))
            assert driver.execute_script(shown) == "step 2 / 18" and not driver.execute_script(state)["playing"]

            # 4. The Follow button goes back to the newest step at once.
            driver.find_element("id", "follow").click()
            wait_for(driver, "return window.replayState.following && window.replayState.step === 18", timeout=5)
            final = driver.execute_script(state)
            clock = driver.find_element("id", "clock").text
            assert driver.execute_script("return window.sameDocument") is True  # never reloaded
        finally:
            driver.quit()
    assert counts == [6, 12, 18]
    assert final["error"] is None and final["liveError"] is None and final["live"] == "live"
    assert clock == "Monday 2023-02-13 10:00"  # state 18 = start + 18 strides
    shot = (ARTIFACTS / "replay_live.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(shot) < 300_000
