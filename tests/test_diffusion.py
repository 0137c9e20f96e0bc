"""Diffusion analytics (``ga_sim/diffusion.py``): cascades of first exposure, the conversation graph, exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from test_replay import _get

from ga_sim import diffusion
from ga_sim.compress import compress
from ga_sim.replay import ReplayServer
from ga_sim.simulation import Simulation


def _doc(talks: list[tuple[int, list[str]]], awareness: list[float] | None = None) -> dict[str, Any]:
    """A compressed run by hand: Ada is the artists' member (their cause), Ben..Fay residents (no cause)."""
    personas = [{"name": "Ada", "group": "artists"}] + [
        {"name": n, "group": "residents"} for n in ("Ben", "Cal", "Dot", "Eve", "Fay")
    ]
    steps = max([s for s, _ in talks] + [len(awareness or [])])
    curve = awareness or [0.0] * steps
    return {
        "meta": {
            "name": "hand",
            "steps": steps,
            "personas": personas,
            "groups": [{"name": "artists", "cause": "murals"}, {"name": "residents", "cause": None}],
        },
        "movement": [{"step": k + 1} for k in range(steps)],
        "conversations": [{"step": s, "time": f"t{s}", "participants": who, "turns": []} for s, who in talks],
        "groups": [{"artists": {"awareness": a}, "residents": {"awareness": 0.0}} for a in curve],
    }


def test_a_three_step_chain_is_a_three_hop_cascade() -> None:
    doc = _doc([(1, ["Ada", "Ben"]), (2, ["Cal", "Ben"]), (3, ["Cal", "Dot"]), (4, ["Eve", "Fay"])])
    tree = diffusion.cascade(doc, "artists")
    assert sorted(tree.edges(data="step")) == [("Ada", "Ben", 1), ("Ben", "Cal", 2), ("Cal", "Dot", 3)]
    assert {n: tree.nodes[n].get("depth") for n in tree} == {
        "Ada": 0, "Ben": 1, "Cal": 2, "Dot": 3, "Eve": None, "Fay": None,
    }  # fmt: skip
    figures = diffusion.analyse(doc)["causes"]
    assert list(figures) == ["artists"]  # the residents have no cause: no cascade
    f = figures["artists"]
    assert (f["exposed"], f["depth"], f["nonmembers"]) == (3, 3, 5)
    assert f["by_nonmembers"] == pytest.approx(2 / 3)  # Ben and Cal passed it on, Ada told only Ben
    assert f["steps_to_half"] is None


def test_one_step_is_one_hop_and_the_first_exposure_counts() -> None:
    # At step 1 Ben hears it from Ada while Cal talks with Ben: Cal is not exposed before step 2.
    doc = _doc([(1, ["Ada", "Ben"]), (1, ["Ben", "Cal"]), (2, ["Cal", "Ada"]), (3, ["Ben", "Cal"])])
    tree = diffusion.cascade(doc, "artists")
    assert sorted(tree.edges(data="step")) == [("Ada", "Ben", 1), ("Ada", "Cal", 2)]  # Cal's first: from Ada
    three = diffusion.cascade(_doc([(1, ["Ada", "Ben", "Cal"])]), "artists")  # a group talk: one hop each
    assert sorted(three.edges) == [("Ada", "Ben"), ("Ada", "Cal")]


def test_told_counts_only_conversations_that_name_the_cause() -> None:
    doc = _doc([(1, ["Ada", "Ben"]), (2, ["Ben", "Cal"]), (3, ["Ada", "Dot"])])
    doc["meta"]["groups"][0]["cause"] = "the spring exhibition at the Lumen Gallery"
    said = ["Come to the spring exhibition!", "Nice weather today.", "The Lumen gallery opens its exhibition."]
    for c, text in zip(doc["conversations"], said, strict=True):
        c["turns"] = [[c["participants"][0], text]]
    told = diffusion.analyse(doc)["causes"]["artists"]["told"]
    assert told["edges"] == [["Ada", "Ben", 1], ["Ada", "Dot", 3]]  # Ben met Cal but talked about the weather
    assert (told["exposed"], told["depth"], told["by_nonmembers"]) == (2, 1, 0.0)
    assert diffusion.analyse(doc)["causes"]["artists"]["exposed"] == 3  # by contact, Cal counts


def test_awareness_half_time_and_conversation_graph() -> None:
    doc = _doc([(1, ["Ada", "Ben"]), (3, ["Ben", "Ada"]), (3, ["Cal", "Dot"])], awareness=[0.1, 0.4, 0.55, 0.6])
    result = diffusion.analyse(doc)
    assert result["causes"]["artists"]["steps_to_half"] == 3
    assert result["causes"]["artists"]["final_awareness"] == pytest.approx(0.6)
    g = diffusion.conversation_graph(doc)
    assert g.edges["Ada", "Ben"] == {"weight": 2, "first_step": 1, "last_step": 3, "steps": "1,3"}
    assert g.degree["Eve"] == 0 and g.nodes["Ada"]["group"] == "artists"
    back = nx.node_link_graph(result["graphs"]["conversations"], edges="edges")
    assert set(back.edges) == set(g.edges)


def test_compress_writes_graphs_and_plots_and_the_replay_serves_them(tmp_path: Path) -> None:
    sim = Simulation.create(
        tmp_path, "run", ["+experiment=artists"], start="2023-02-13 07:00", stride=10, mind="scripted"
    )
    sim.run(60, progress=False)
    out = compress(tmp_path, "run") / "diffusion"
    names = {p.name for p in out.iterdir()}
    assert {"conversations.graphml", "cascade_artist_collective.graphml", "diffusion.json"} <= names
    assert {"awareness.png", "cascades.png", "degree.png"} <= names
    figures = json.loads((out / "diffusion.json").read_text())
    tree = nx.read_graphml(out / "cascade_artist_collective.graphml")
    c = figures["causes"]["artist_collective"]
    assert c["exposed"] == sum(1 for _, d in tree.nodes(data=True) if not d["member"] and "depth" in d)
    assert c["exposed"] > 0, "a morning of the artists' town exposes someone"
    for u, v, d in tree.edges(data=True):  # every exposure edge is a conversation of that step
        talks = [t for t in json.loads((out.parent / "movement.json").read_text())["conversations"]]
        assert any(t["step"] == d["step"] and {u, v} <= set(t["participants"]) for t in talks)
    graph = nx.read_graphml(out / "conversations.graphml")
    assert graph.number_of_nodes() == len(sim.env.personas)
    with ReplayServer(tmp_path, port=0, quiet=True) as server:
        status, ctype, body = _get(server, "/data/run/diffusion/cascades.png")
        assert status == 200 and ctype == "image/png" and body[:4] == b"\x89PNG"
        assert _get(server, "/data/run/diffusion/diffusion.json")[0] == 200
        for bad in ("/data/run/diffusion/conversations.graphml", "/data/run/diffusion/..%2fmovement.json"):
            assert _get(server, bad)[0] == 404
        assert _get(server, "/data/..%2frun/diffusion/awareness.png")[0] == 400
        assert _get(server, "/data/nope/diffusion/awareness.png")[0] == 404
