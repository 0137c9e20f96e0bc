"""The replay server: loopback by default, only its own routes, no traversal, 404 page for unknown runs."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest

from ga_sim.compress import compress
from ga_sim.replay import DEFAULT_HOST, ReplayServer
from ga_sim.simulation import Simulation
from scripts.replay import main


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    sim = Simulation.create(root, "town", ["env.max_agents=6"], start="2023-02-13 07:00", stride=10, mind="scripted")
    sim.run(12, progress=False)
    compress(root, "town")
    raw = Simulation.create(root, "raw", ["env.max_agents=4"], start="2023-02-13 07:00", stride=10, mind="scripted")
    raw.run(3, progress=False)  # not compressed: served by compressing on the fly
    # Hostile layout: a run folder and a compressed file that are symlinks to outside the results folder.
    outside = tmp_path_factory.mktemp("outside")
    (outside / "meta.json").write_text("{}")
    (outside / "movement.json").write_text('{"secret": true}')
    os.symlink(outside, root / "runs" / "evil")
    (root / "compressed" / "evil2").mkdir(parents=True)
    os.symlink(outside / "movement.json", root / "compressed" / "evil2" / "movement.json")
    (root / "secret.txt").write_text("top secret")
    return root


def _get(server: ReplayServer, path: str) -> tuple[int, str, bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    conn.request("GET", path)  # sent as is: no client-side normalisation of '..' or '%2e'
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type") or "", body


def test_defaults_bind_loopback(results: Path) -> None:
    assert DEFAULT_HOST == "127.0.0.1"
    with ReplayServer(results, port=0, quiet=True) as server:
        assert server.server_address[0] == "127.0.0.1"


def test_serves_page_and_runs(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        status, ctype, body = _get(server, "/?name=town&step=0&speed=2&zoom=0.8")
        assert status == 200 and ctype.startswith("text/html") and b"<canvas" in body
        status, ctype, body = _get(server, "/data/town/movement.json")
        doc = json.loads(body)
        assert status == 200 and ctype == "application/json" and doc["meta"]["name"] == "town"
        assert len(doc["movement"]) == 12
        status, _, body = _get(server, "/data/raw/movement.json")
        assert status == 200 and len(json.loads(body)["movement"]) == 3
        assert _get(server, "/healthz")[0] == 200


def test_unknown_run_gets_a_404_page(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        for path in ("/?name=nope", "/data/nope/movement.json"):
            status, ctype, body = _get(server, path)
            assert status == 404 and ctype.startswith("text/html") and b"no run named" in body


TRAVERSALS = [
    "/?name=../../x",
    "/?name=..%2F..%2Fetc",
    "/?name=%2e%2e",
    "/?name=/etc/passwd",
    "/?name=%2Fetc%2Fpasswd",
    "/data/%2e%2e/movement.json",
    "/data/%2E%2E%2Fsecret.txt/movement.json",
    "/data/..%2f..%2fetc/movement.json",
    "/data/../secret.txt",
    "/data/../../etc/passwd",
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/secret.txt",
    "//etc/passwd",
    "/etc/passwd",
    "/data/%2Fetc%2Fpasswd/movement.json",
    "/data/town/../../secret.txt",
    "/data/town/meta.json",
    "/data/town/steps.jsonl",
    "/data/evil/movement.json",
    "/data/evil2/movement.json",
    "/?name=evil",
    "/runs/town/meta.json",
    "/compressed/town/movement.json",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_and_symlinks_are_refused(results: Path, path: str) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        status, _, body = _get(server, path)
    assert status in (400, 403, 404), path
    assert b"top secret" not in body and b"secret" not in body.replace(b"secret.txt", b"")
    assert b"root:" not in body


def test_no_directory_listing(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        for path in ("/data/", "/data/town/", "/runs/", "/compressed/", "/scripts/", "/replay_static/"):
            status, _, body = _get(server, path)
            assert status == 404 and b"movement.json" not in body and b"town" not in body.split(b"<p>")[0]


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--results", str(tmp_path / "missing")]) == 2
    assert "--results: not a folder" in capsys.readouterr().err


def test_planted_api_key_never_reaches_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with the openai backend (loopback server requiring the key): the key is used, yet it
    appears in none of the run's files (meta, steps, checkpoints, LLM cache, compressed, eval)."""
    from agents.testing.loopback import LoopbackServer
    from ga_sim.runstore import RunStore
    from scripts.eval import main as eval_main

    key = "sk-planted-4f1c9e0b7a2d6e5f"
    monkeypatch.setenv("GA_TEST_KEY", key)
    with LoopbackServer(api_key=key) as server:
        llm = ["llm=openai", "llm.preset=loopback", f"llm.base_url={server.base_url}", "llm.api_key_env=GA_TEST_KEY"]
        sim = Simulation.create(
            tmp_path, "keyed", ["env.max_agents=4", *llm], start="2023-02-13 07:00", stride=10, mind="generative"
        )
        sim.run(4, progress=False)
        sim.save()
        assert server.stats()["served"]["chat"] > 0  # the key was sent and accepted (else 401 -> fallbacks)
        assert sim.society.llm.usage.fallbacks == 0
        compress(tmp_path, "keyed")
        assert eval_main(["--results", str(tmp_path), "--name", "keyed"]) == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".npz" for p in files) and any(p.name == "simulation.md" for p in files)
    for path in files:  # UTF-8, and UTF-32 as NumPy would store a str array inside an .npz
        data = path.read_bytes()
        assert key.encode() not in data and key.encode("utf-32-le") not in data, path
    assert "GA_TEST_KEY" in RunStore(tmp_path, "keyed").meta_path.read_text()  # only the variable's NAME
