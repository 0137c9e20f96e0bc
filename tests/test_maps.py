"""The town map: shipped data, addresses, shortest paths, Tiled JSON and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ga_env
from ga_env import TownDataError, load_ascii_map, load_map, load_tiled_map

SHIPPED = Path(ga_env.__file__).parent / "data" / "willowbrook"


@pytest.fixture(scope="module")
def town() -> ga_env.TownMap:
    return load_ascii_map(SHIPPED / "map.yaml")


def test_shipped_town_has_the_places_a_town_needs(town: ga_env.TownMap) -> None:
    assert town.width >= 60 and town.height >= 40
    sectors = {p.split(":")[0] for p in town.places}
    for needed in (
        "Maple Row",
        "Willow Cafe",
        "Oak Library",
        "Lumen Gallery",
        "Town Hall",
        "Riverside Park",
        "Corner Market",
    ):
        assert needed in sectors
    assert sum(p.startswith(("Maple Row:", "Birch Lane:")) for p in town.places) >= 6  # homes
    assert (~town.walkable).sum() > 500  # walls and water collide


def test_addresses(town: ga_env.TownMap) -> None:
    assert town.address(3, 3) == "Willowbrook:Maple Row:Ortiz home:bed"
    assert town.address(45, 4) == "Willowbrook:Oak Library:research lab:microscope"
    assert town.address(10, 18) == "Willowbrook:Streets:main street"
    assert town.address(0, 0) == ""
    assert town.place_index("Willowbrook:Willow Cafe:kitchen") == town.place_index("Willow Cafe:kitchen")


def test_unknown_address_suggests_close_matches(town: ga_env.TownMap) -> None:
    with pytest.raises(
        TownDataError,
        match=r"groups/x.yaml: task_sites: unknown address 'Willow Cafe:kitchn'.*did you mean 'Willow Cafe:kitchen'",
    ):
        town.place_index("Willow Cafe:kitchn", source="groups/x.yaml", field_name="task_sites")


def test_bfs_fields_are_shortest_paths(town: ga_env.TownMap) -> None:
    rng = np.random.default_rng(0)
    w = town.width
    walk = np.argwhere(town.walkable)
    for p in range(town.n_places):
        dist = town.distance_field(p)
        hop = town.next_hop(p)
        assert (dist[town.walkable] >= 0).all(), "every walkable tile reaches every place"
        assert (dist[town.place_of == p] == 0).all()
        # A BFS potential: neighbours differ by at most one, so following hops is optimal.
        for axis in (0, 1):
            d = np.where(town.walkable, dist, -10)
            a, b = np.moveaxis(d, axis, 0)[:-1], np.moveaxis(d, axis, 0)[1:]
            both = (a >= 0) & (b >= 0)
            assert (np.abs(a - b)[both] <= 1).all()
        for y, x in walk[rng.choice(len(walk), 20)]:
            pos, steps = y * w + x, 0
            while town.place_of.ravel()[pos] != p:
                nxt = hop[pos]
                assert dist.ravel()[nxt] == dist.ravel()[pos] - 1
                pos, steps = nxt, steps + 1
            assert steps == dist[y, x]


def test_one_bfs_per_destination_is_cached(town: ga_env.TownMap) -> None:
    assert town.next_hop(3) is town.next_hop(3)


def test_tiled_round_trip(town: ga_env.TownMap, tmp_path: Path) -> None:
    path = tmp_path / "willowbrook.json"
    path.write_text(json.dumps(town.to_tiled()))
    again = load_map(path)
    assert again.name == town.name
    np.testing.assert_array_equal(again.walkable, town.walkable)
    for y, x in np.argwhere(town.walkable)[::37]:
        assert again.address(int(x), int(y)) == town.address(int(x), int(y))


def _tiny_tiled(tmp_path: Path, collision: list[int], arenas: list[int]) -> Path:
    doc = {
        "width": 4,
        "height": 3,
        "properties": [{"name": "town", "value": "Tiny"}],
        "layers": [
            {"name": "Collision", "type": "tilelayer", "data": collision},
            {
                "name": "Sectors",
                "type": "tilelayer",
                "data": [1] * 12,
                "properties": [{"name": "names", "value": '{"1": "Home"}'}],
            },
            {
                "name": "Arenas",
                "type": "tilelayer",
                "data": arenas,
                "properties": [{"name": "names", "value": '{"1": "kitchen", "2": "garden"}'}],
            },
        ],
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(doc))
    return path


def test_tiled_user_map(tmp_path: Path) -> None:
    m = load_tiled_map(_tiny_tiled(tmp_path, [0] * 12, [1, 1, 2, 2] * 3))
    assert m.places == ("Home:kitchen", "Home:garden") and m.address(3, 2) == "Tiny:Home:garden"


def test_disconnected_place_is_named(tmp_path: Path) -> None:
    # A wall column splits the kitchen (x 0-1) from the garden (x 3).
    path = _tiny_tiled(tmp_path, [0, 0, 1, 0] * 3, [1, 1, 0, 2] * 3)
    with pytest.raises(
        TownDataError, match=r"tiny.json: tile \(\d, \d\): place 'Home:\w+' is disconnected.*Fix: open a door"
    ):
        load_tiled_map(path)


def test_tiled_missing_layer_and_names(tmp_path: Path) -> None:
    path = _tiny_tiled(tmp_path, [0] * 12, [1] * 12)
    doc = json.loads(path.read_text())
    doc["layers"] = doc["layers"][:2]
    path.write_text(json.dumps(doc))
    with pytest.raises(TownDataError, match="layer 'arenas': is missing"):
        load_tiled_map(path)
    doc = json.loads(_tiny_tiled(tmp_path, [0] * 12, [1] * 11 + [3]).read_text())
    path.write_text(json.dumps(doc))
    with pytest.raises(TownDataError, match=r"tile \(3, 2\).*gid 3 has no name"):
        load_tiled_map(path)


ASCII = """name: Mini
walls: "#"
places:
  ".": "Out:street"
  "H": "Home:room"
objects:
  "b": bed
grid: |
  ######
  #..HH#
  #..Hb#
  ######
"""


def test_ascii_errors(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(ASCII)
    assert load_ascii_map(path).address(4, 2) == "Mini:Home:room:bed"
    path.write_text(ASCII.replace("#..Hb#", "#..Hx#"))
    with pytest.raises(TownDataError, match=r"mini.yaml: grid tile \(4, 2\): character 'x' is not in the legend"):
        load_ascii_map(path)
    path.write_text(ASCII.replace("#..Hb#", "#..Hb##"))
    with pytest.raises(TownDataError, match="grid row 2: has 7 characters"):
        load_ascii_map(path)
    path.write_text(ASCII.replace("#..HH#", "#.#HH#").replace("#..Hb#", "#.#Hb#"))
    with pytest.raises(TownDataError, match="is disconnected"):
        load_ascii_map(path)
    path.write_text(ASCII.replace('"H": "Home:room"', '"H": "Home"'))
    with pytest.raises(TownDataError, match=r"places.'H': 'Home' is not 'Sector:arena'"):
        load_ascii_map(path)
    path.write_text("grid: [unclosed")
    with pytest.raises(TownDataError, match="is not valid YAML"):
        load_ascii_map(path)
    with pytest.raises(TownDataError, match="does not exist"):
        load_ascii_map(tmp_path / "nope.yaml")
