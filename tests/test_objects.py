"""Objects with state (the original's object events), with the scripted backend: a persona acting at a
place sets the state of one of its objects, which goes idle when it leaves; others perceive it; the
console, the exact resume and the compressed run carry it."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from agents.cognition.perceive import ObjectEvents, attention
from agents.embeddings import CachedEmbedder, HashingEmbedder
from agents.generative import IDLE, GenerativeConfig, GenerativeSociety, TownObjects, make_town
from agents.llm.factory import make_backend
from conf.schema import LLMConfig
from ga_sim.compress import compress
from ga_sim.console import Console
from ga_sim.replay import StepIndex, live_steps
from ga_sim.simulation import Simulation

SMALL = ["env.groups=[artist_collective,residents]", "env.max_agents=6", "llm=scripted"]
START = "2023-02-13 07:00"


def society(n: int = 6) -> GenerativeSociety:
    env = make_town(groups=["artist_collective", "residents"], max_agents=n)
    llm = make_backend(LLMConfig(backend="scripted"))
    return GenerativeSociety(env, llm, CachedEmbedder(HashingEmbedder(256)), GenerativeConfig(), seed=3)


def xy_of(soc: GenerativeSociety) -> np.ndarray:
    env = soc.env
    return np.stack([env.pos_flat % env.town_map.width, env.pos_flat // env.town_map.width], axis=1)


def test_objects_are_one_per_arena_and_name_and_chosen_by_the_activity_words() -> None:
    town = make_town(max_agents=2).town_map
    objects = TownObjects.of(town)
    assert len(set(objects.addresses)) == len(objects)
    assert all(a.startswith(f"{town.name}:") and a.count(":") == 3 for a in objects.addresses)
    # every object tile belongs to exactly one object, whose arena and name are the tile's
    for (x, y), m in zip(objects.tile_xy.tolist(), objects.tile_object.tolist(), strict=True):
        assert town.address(x, y) == objects.addresses[m]
    assert len(objects.tile_xy) == int((town.object_of >= 0).sum())
    lab, dining = town.places.index("Oak Library:research lab"), town.places.index("Willow Cafe:dining area")
    street = town.places.index("Streets:main street")
    places = np.array([lab, lab, lab, dining, dining, dining, street])
    said = [
        "looking through the microscope",
        "sketching ideas on the whiteboard",
        "thinking hard",  # no match: the arena's first object in reading order
        "wiping the tables",  # a plural matches
        "lunch",
        "serving coffee at the counter",
        "walking",
    ]
    chosen = objects.choose(places, said)
    names = [objects.addresses[m].rsplit(":", 1)[1] if m >= 0 else None for m in chosen.tolist()]
    assert names == ["microscope", "whiteboard", "microscope", "table", "counter", "counter", None]
    d = objects.distance(np.array([[45, 4], [0, 0]]))  # (N, M): Chebyshev to the nearest tile
    m = objects.index(f"{town.name}:Oak Library:research lab:microscope")
    assert d.shape == (2, len(objects)) and d[0, m] == 0 and d[1, m] == 45


def test_object_events_compete_with_personas_for_the_bandwidth() -> None:
    xy = np.array([[0, 0], [2, 0], [9, 9]])
    radius, bandwidth = np.array([3, 3, 3]), np.array([2, 2, 2])
    objects = np.array([[1, 3], [-1, 0], [9, 9]])  # persona 1 uses object 0 (-1: not an event for it)
    i, j, d = attention(xy, radius, bandwidth, objects)
    got = list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))
    # 0: object 0 at 1, persona 1 at 2 (object 1 at 3 is beyond the bandwidth); 1: object 1 at 0, persona 0 at 2
    assert got == [(0, 3, 1), (0, 1, 2), (1, 4, 0), (1, 0, 2)]
    i2, j2, d2 = attention(xy, radius, bandwidth)
    i3, j3, d3 = attention(xy, radius, bandwidth, np.zeros((3, 0), dtype=np.int64))
    assert i2.tolist() == i3.tolist() and j2.tolist() == j3.tolist() and d2.tolist() == d3.tolist()
    ev = ObjectEvents(
        addresses=("T:Sector:arena:easel",), states=("being used by A: painting",), distance=objects[:, :1]
    )
    assert ev.description(0) == "easel at Sector:arena is being used by A: painting"


def test_acting_sets_the_object_state_and_leaving_makes_it_idle() -> None:
    soc = society()
    records = [soc.step() for _ in range(30)]
    used = [(k, name, r["object"]) for k, rec in enumerate(records) for name, r in rec["agents"].items() if r["object"]]
    assert used, "nobody acted on an object"
    for k, name, address in used:
        rec = records[k]
        r = rec["agents"][name]
        assert r["action"] in ("task", "research", "chat")
        assert f"{name}: " in rec["objects"][address] and rec["objects"][address].startswith("being used by ")
    # every object in use has a user this step; every user of a step is named in its object's state
    for rec in records:
        users = {r["object"] for r in rec["agents"].values() if r["object"]}
        assert users == set(rec["objects"])
    # a persona that stops acting on its object leaves it: its name goes from the state, or the object goes idle
    left = [
        (k, name, a) for k, name, a in used if k + 1 < len(records) and records[k + 1]["agents"][name]["object"] != a
    ]
    assert left, "nobody left an object in 30 steps"
    went_idle = 0
    for k, name, address in left:
        after = records[k + 1]["objects"].get(address)
        assert after is None or f"{name}: " not in after
        went_idle += after is None
    assert went_idle
    k, _, address = next((k, n, a) for k, n, a in left if records[k + 1]["objects"].get(a) is None)
    x, y = soc.objects.tiles(soc.objects.index(address))[0]
    assert soc.object_at(x, y) is not None  # an object tile; idle now or used again later
    assert soc.object_at(0, 0) is None  # a wall: no object
    # the state of a tile's object is what object_states says (idle when not listed)
    states = soc.object_states()
    for m in range(len(soc.objects)):
        tx, ty = soc.objects.tiles(m)[0]
        assert soc.object_at(tx, ty) == (soc.objects.addresses[m], states.get(soc.objects.addresses[m], IDLE))


def test_others_within_vision_perceive_the_object_events() -> None:
    soc = society()
    soc.reset()
    found = 0
    for _ in range(30):
        xy, before = xy_of(soc), soc.object_states()
        acts_on = soc.acts_on.copy()
        counts = [len(a.memory.of_kind("event")) for a in soc.agents]
        soc.step()
        for i, a in enumerate(soc.agents):
            new = a.memory.of_kind("event")[: len(a.memory.of_kind("event")) - counts[i]]  # newest first
            for node in new:
                if node.subject not in soc.objects.addresses:
                    continue
                m = soc.objects.index(node.subject)
                assert node.subject in before and node.object == before[node.subject], "only objects in use are events"
                assert acts_on[i] != m, "a persona does not perceive the object it uses itself"
                assert soc.objects.distance(xy[i : i + 1])[0, m] <= soc.vision_radius[i]
                assert node.description.endswith(f" is {before[node.subject]}")
                found += 1
    assert found, "nobody perceived an object in use"


def test_state_dict_holds_the_objects_and_resumes_exactly() -> None:
    a = society()
    for _ in range(12):
        a.step()
    assert a.object_states()
    state = copy.deepcopy(a.state_dict())
    assert state["objects"]["state"] == a.object_states()
    assert set(state["objects"]["acts_on"].values()) <= set(a.object_states())
    llm = make_backend(LLMConfig(backend="scripted"))
    b = GenerativeSociety(copy.deepcopy(a.env), llm, CachedEmbedder(HashingEmbedder(256)), GenerativeConfig(), seed=99)
    state["objects"] = json.loads(json.dumps(state["objects"]))  # plain JSON in the checkpoint
    b.load_state_dict(state)
    assert b.object_states() == a.object_states() and b.acts_on.tolist() == a.acts_on.tolist()
    ra, rb = [a.step() for _ in range(12)], [b.step() for _ in range(12)]
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)
    assert json.dumps(a.state_dict()["objects"], sort_keys=True) == json.dumps(
        b.state_dict()["objects"], sort_keys=True
    )


def _sim(results: Path, name: str) -> Simulation:
    return Simulation.create(results, name, SMALL, start=START, stride=10, mind="generative", checkpoint_every=0)


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        return set(x) == set(y) and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y, strict=True))
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return bool(np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes())
    if isinstance(x, float) and isinstance(y, float):
        return x.hex() == y.hex() or (math.isnan(x) and math.isnan(y))
    return type(x) is type(y) and x == y


def test_console_save_resume_and_compress_carry_the_objects(tmp_path: Path) -> None:
    full = _sim(tmp_path, "full")
    full.run(20, progress=False)
    part = _sim(tmp_path, "part")
    part.run(11, progress=False)
    assert part.society.society.object_states(), "no object in use at the cut"
    part.save()
    part = Simulation.resume(tmp_path, "part", checkpoint_every=0, warn=lambda m: None)
    part.run(9, progress=False)
    assert part.store.steps() == full.store.steps()
    assert _same(copy.deepcopy(full.society.state_dict()), copy.deepcopy(part.society.state_dict()))

    # the step records: each persona's object, the objects in use and their tiles
    steps = full.store.steps()
    assert all("object" in p for rec in steps for p in rec["personas"].values())
    in_use = [rec for rec in steps if rec["objects"]]
    assert in_use and all(set(rec["object_tiles"]) == set(rec["objects"]) for rec in steps)

    # the console: tile event and tile details show the object's address and state
    console = Console(full, progress=False)
    soc = full.society.society
    address, state = next(iter(soc.object_states().items()))
    x, y = soc.objects.tiles(soc.objects.index(address))[0]
    event = console.execute(f"print tile event {x},{y}")
    assert f"({x}, {y}): {address} is {state}" in event
    details = console.execute(f"print tile details {x},{y}")
    assert f"  object address: {address}" in details and f"  object state:   {state}" in details
    idle = next(m for m in range(len(soc.objects)) if soc.objects.addresses[m] not in soc.object_states())
    ix, iy = soc.objects.tiles(idle)[0]
    assert f"  object state:   {IDLE}" in console.execute(f"print tile details {ix},{iy}")
    if not any(tuple(full.env.position(i)) == (ix, iy) for i in range(len(full.env.personas))):
        assert console.execute(f"print tile event {ix},{iy}") == f"({ix}, {iy}): nothing happens here"

    # compress: each step's objects in use, their tiles, the personas' objects, and a section of simulation.md
    out = compress(tmp_path, "full")
    doc = json.loads((out / "movement.json").read_text())
    for entry, rec in zip(doc["movement"], steps, strict=True):
        assert entry.get("objects", {}) == rec["objects"]
    assert set(doc["object_tiles"]) == {a for rec in steps for a in rec["objects"]}
    assert any("object" in ch for e in doc["movement"] for ch in e["personas"].values())
    md = (out / "simulation.md").read_text()
    assert "## Objects" in md and f"### {address}" in md and state in md

    # the live replay's steps carry them too
    live = live_steps(tmp_path, "full", 0, StepIndex())
    assert [s.get("objects", {}) for s in live["steps"]] == [rec["objects"] for rec in steps]
    assert all(set(s.get("object_tiles", {})) == set(s.get("objects", {})) for s in live["steps"])
