"""The town map: tiles, collision, the address hierarchy and shortest paths.

A map is a grid of tiles. Each walkable tile belongs to one *place* (an arena,
addressed ``town:sector:arena``) and may hold an *object*
(``town:sector:arena:object``). Places are what personas move between.

Two formats load into the same :class:`TownMap`:

* the readable ASCII format of the shipped town (``load_ascii_map``): a grid of
  characters plus a legend (see ``ga_env/data/willowbrook/map.yaml``);
* a Tiled JSON map (``load_tiled_map``) with tile layers ``collision``,
  ``sectors``, ``arenas`` and optionally ``objects``; each name layer carries a
  string property ``names``: a JSON object from tile gid to name. ``TownMap.to_tiled``
  writes this format, so a user can start from the shipped town in Tiled.

Shortest paths come from one breadth-first search per destination place
(multi-source, from every tile of the place), cached as a next-hop table, so a
move costs O(1) per agent per tile travelled.
"""

from __future__ import annotations

import difflib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from ga_env.errors import TownDataError

NO_PLACE = -1
_NEIGHBOURS = ((0, -1), (1, 0), (0, 1), (-1, 0))  # N, E, S, W as (dx, dy)


@dataclass(frozen=True, kw_only=True, eq=False)
class TownMap:
    """An immutable town map.

    Attributes:
        name: Town name, the first part of every address.
        source: The file the map came from (used in error messages).
        walkable: ``(H, W)`` bool, True where a persona may stand.
        place_of: ``(H, W)`` int32, the place index of each walkable tile, -1 on walls.
        object_of: ``(H, W)`` int32, index into ``object_names`` or -1.
        places: Place addresses without the town prefix, ``"Sector:arena"``.
        object_names: Names of the objects, indexed by ``object_of``.
        glyphs: ``(H, W)`` characters for text rendering (ASCII source) or ``""``.
    """

    name: str
    source: str
    walkable: npt.NDArray[np.bool_]
    place_of: npt.NDArray[np.int32]
    object_of: npt.NDArray[np.int32]
    places: tuple[str, ...]
    object_names: tuple[str, ...]
    _next_hop: dict[int, npt.NDArray[np.int32]] = field(default_factory=dict, repr=False)
    _dist: dict[int, npt.NDArray[np.int32]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.walkable.shape != self.place_of.shape or self.walkable.shape != self.object_of.shape:
            raise TownDataError(
                self.source, "layers", "layers have different shapes", "give every layer the map's width and height"
            )
        if self.walkable.ndim != 2 or min(self.walkable.shape) < 2:
            raise TownDataError(
                self.source, "grid", f"shape {self.walkable.shape} is not a 2-D map", "give at least 2x2 tiles"
            )
        self._validate()

    # -- geometry -------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return int(self.walkable.shape[0])

    @property
    def width(self) -> int:
        return int(self.walkable.shape[1])

    @property
    def n_places(self) -> int:
        return len(self.places)

    def address(self, x: int, y: int) -> str:
        """Full address of tile ``(x, y)``: ``town:sector:arena[:object]``, or ``""`` on a wall."""
        p = int(self.place_of[y, x])
        if p == NO_PLACE:
            return ""
        o = int(self.object_of[y, x])
        suffix = f":{self.object_names[o]}" if o >= 0 else ""
        return f"{self.name}:{self.places[p]}{suffix}"

    def place_index(self, address: str, *, source: str | Path = "argument", field_name: str = "address") -> int:
        """Index of a place given as ``"Sector:arena"`` or ``"Town:Sector:arena"``.

        Raises:
            TownDataError: naming ``source`` and ``field_name`` if the place is unknown.
        """
        key = address.strip()
        prefix = f"{self.name}:"
        if key.startswith(prefix):
            key = key[len(prefix) :]
        try:
            return self.places.index(key)
        except ValueError:
            close = difflib.get_close_matches(key, self.places, n=3)
            hint = (
                f"did you mean {', '.join(repr(c) for c in close)}?"
                if close
                else f"known places: {', '.join(self.places)}"
            )
            raise TownDataError(
                source,
                field_name,
                f"unknown address {address!r} in map {self.source}",
                f"use a place of the map ({hint})",
            ) from None

    def place_tiles(self, p: int) -> npt.NDArray[np.int64]:
        """``(k, 2)`` array of the ``(x, y)`` tiles of place ``p``."""
        ys, xs = np.nonzero(self.place_of == p)
        return np.stack([xs, ys], axis=1)

    # -- shortest paths -------------------------------------------------------------------
    def distance_field(self, p: int) -> npt.NDArray[np.int32]:
        """``(H, W)`` walking distance in tiles to the nearest tile of place ``p`` (-1 = unreachable)."""
        self._ensure_field(p)
        return self._dist[p]

    def next_hop(self, p: int) -> npt.NDArray[np.int32]:
        """``(H*W,)`` flat index of the next tile on a shortest path to place ``p``.

        Tiles of ``p`` (and unreachable tiles) map to themselves, so applying it
        repeatedly is safe: ``pos = hop[pos]`` moves one tile, vectorised over agents.
        """
        self._ensure_field(p)
        return self._next_hop[p]

    def next_hop_table(self) -> npt.NDArray[np.int32]:
        """``(P, H*W)`` next-hop table for every place (one BFS per place, cached)."""
        return np.stack([self.next_hop(p) for p in range(self.n_places)])

    def distance_table(self) -> npt.NDArray[np.int32]:
        """``(P, H*W)`` distances for every place."""
        return np.stack([self.distance_field(p).ravel() for p in range(self.n_places)])

    def _ensure_field(self, p: int) -> None:
        if p in self._dist:
            return
        h, w = self.walkable.shape
        dist = np.full((h, w), -1, dtype=np.int32)
        hop = np.arange(h * w, dtype=np.int32)
        queue: deque[tuple[int, int]] = deque()
        for x, y in self.place_tiles(p):
            dist[y, x] = 0
            queue.append((int(x), int(y)))
        walk = self.walkable
        while queue:
            x, y = queue.popleft()
            d = dist[y, x] + 1
            for dx, dy in _NEIGHBOURS:
                nx, ny = x + dx, y + dy
                if 0 <= nx < w and 0 <= ny < h and walk[ny, nx] and dist[ny, nx] < 0:
                    dist[ny, nx] = d
                    hop[ny * w + nx] = y * w + x  # step back toward the source
                    queue.append((nx, ny))
        self._dist[p] = dist
        self._next_hop[p] = hop

    # -- validation -----------------------------------------------------------------------
    def _validate(self) -> None:
        walk = self.walkable
        if not walk.any():
            raise TownDataError(self.source, "collision", "no walkable tile", "leave some tiles free of collision")
        bad = walk & (self.place_of == NO_PLACE)
        if bad.any():
            y, x = (int(v) for v in np.argwhere(bad)[0])
            raise TownDataError(
                self.source,
                f"tile ({x}, {y})",
                "walkable tile belongs to no place",
                "give every walkable tile a sector and an arena, or mark it as collision",
            )
        for p, name in enumerate(self.places):
            if not (self.place_of == p).any():
                raise TownDataError(
                    self.source, f"place {name!r}", "has no tile on the map", "remove it from the legend or draw it"
                )
        # Connectivity: every walkable tile must be reachable from every other.
        first = np.argwhere(walk)[0]
        comp = _component(walk, (int(first[0]), int(first[1])))
        if not comp[walk].all():
            sizes = []
            seen = np.zeros_like(walk)
            for y, x in np.argwhere(walk):
                if not seen[y, x]:
                    c = _component(walk, (int(y), int(x)))
                    seen |= c
                    sizes.append((int(c.sum()), c))
            main = max(sizes, key=lambda s: s[0])[1]
            y, x = (int(v) for v in np.argwhere(walk & ~main)[0])
            raise TownDataError(
                self.source,
                f"tile ({x}, {y})",
                f"place {self.places[self.place_of[y, x]]!r} is disconnected from the rest of the town",
                "open a door (a walkable tile) in the wall around it, or mark its tiles as collision",
            )

    # -- export ---------------------------------------------------------------------------
    def to_tiled(self) -> dict[str, Any]:
        """This map as a Tiled JSON document (the format ``load_tiled_map`` reads)."""
        h, w = self.walkable.shape
        sectors = sorted({p.split(":", 1)[0] for p in self.places})
        sector_gid = {s: i + 1 for i, s in enumerate(sectors)}
        arena_gid = {p: i + 1 for i, p in enumerate(self.places)}

        def layer(name: str, data: npt.NDArray[np.int64], names: Mapping[int, str] | None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "type": "tilelayer",
                "name": name,
                "width": w,
                "height": h,
                "x": 0,
                "y": 0,
                "opacity": 1,
                "visible": True,
                "data": [int(v) for v in data.ravel()],
            }
            if names is not None:
                out["properties"] = [
                    {"name": "names", "type": "string", "value": json.dumps({str(k): v for k, v in names.items()})}
                ]
            return out

        place_sector = np.array([sector_gid[p.split(":", 1)[0]] for p in self.places] + [0])
        sector_data = place_sector[self.place_of]  # -1 indexes the trailing 0
        arena_data = np.where(self.place_of >= 0, self.place_of + 1, 0)
        object_data = np.where(self.object_of >= 0, self.object_of + 1, 0)
        return {
            "type": "map",
            "orientation": "orthogonal",
            "renderorder": "right-down",
            "width": w,
            "height": h,
            "tilewidth": 32,
            "tileheight": 32,
            "infinite": False,
            "properties": [{"name": "town", "type": "string", "value": self.name}],
            "tilesets": [],
            "layers": [
                layer("collision", (~self.walkable).astype(np.int64), None),
                layer("sectors", sector_data, {v: k for k, v in sector_gid.items()}),
                layer("arenas", arena_data, {v: k.split(":", 1)[1] for k, v in arena_gid.items()}),
                layer("objects", object_data, {i + 1: n for i, n in enumerate(self.object_names)}),
            ],
        }


def _component(walk: npt.NDArray[np.bool_], start: tuple[int, int]) -> npt.NDArray[np.bool_]:
    h, w = walk.shape
    seen = np.zeros_like(walk)
    seen[start] = True
    queue = deque([start])
    while queue:
        y, x = queue.popleft()
        for dx, dy in _NEIGHBOURS:
            ny, nx = y + dy, x + dx
            if 0 <= nx < w and 0 <= ny < h and walk[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                queue.append((ny, nx))
    return seen


# libyaml's safe loader when PyYAML was built with it (about 10x faster than the pure-Python one).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


MAX_MAP_SIDE = 4096
"""Largest accepted map width/height in tiles (a guard against absurd sizes)."""


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TownDataError(path, "file", "does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TownDataError(path, "file", f"cannot be read ({e})", "give a UTF-8 text file") from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        raise TownDataError(
            path, "yaml", f"is not valid YAML ({str(e).splitlines()[0]})", "fix the YAML syntax"
        ) from None


def _require(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path, fix: str) -> Any:
    if key not in doc:
        raise TownDataError(path, key, "is missing", fix)
    value = doc[key]
    if not isinstance(value, kind):
        raise TownDataError(path, key, f"must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}", fix)
    return value


def load_ascii_map(path: str | Path) -> TownMap:
    """Load a map in the readable ASCII format (see ``ga_env/data/willowbrook/map.yaml``).

    Raises:
        TownDataError: naming the file, the field or tile, and the fix.
    """
    path = Path(path)
    doc = _read_yaml(path)
    if not isinstance(doc, dict):
        raise TownDataError(
            path, "document", "is not a mapping", "write the keys name, walls, places, objects and grid"
        )
    name = _require(doc, "name", str, path, "give the town a name, e.g. name: Willowbrook")
    walls = _require(doc, "walls", str, path, 'list the collision characters, e.g. walls: "#~"')
    places_legend = _require(
        doc, "places", dict, path, 'map characters to "Sector:arena", e.g. "C": "Cafe:dining area"'
    )
    objects_legend = doc.get("objects") or {}
    if not isinstance(objects_legend, dict):
        raise TownDataError(path, "objects", "must be a mapping", 'map characters to object names, e.g. "t": table')
    grid_text = _require(doc, "grid", str, path, "give the grid as a YAML block (grid: |)")
    rows = [r for r in grid_text.splitlines() if r.strip()]
    if not rows:
        raise TownDataError(path, "grid", "is empty", "draw the map, one character per tile")
    width = len(rows[0])
    for y, row in enumerate(rows):
        if len(row) != width:
            raise TownDataError(
                path,
                f"grid row {y}",
                f"has {len(row)} characters, the first row has {width}",
                "make every row the same width",
            )
    for key, legend in (("places", places_legend), ("objects", objects_legend)):
        for ch, value in legend.items():
            if not isinstance(ch, str) or len(ch) != 1:
                raise TownDataError(
                    path,
                    f"{key}.{ch!r}",
                    "legend keys must be single characters",
                    'quote the character, e.g. ".": "Streets:road"',
                )
            if not isinstance(value, str) or not value.strip():
                raise TownDataError(path, f"{key}.{ch!r}", "must be a non-empty string", "give the name")
            if ch in walls:
                raise TownDataError(path, f"{key}.{ch!r}", "is also a wall character", "use another character")
    for ch, value in places_legend.items():
        if value.count(":") != 1 or not all(part.strip() for part in value.split(":")):
            raise TownDataError(
                path, f"places.{ch!r}", f"{value!r} is not 'Sector:arena'", 'write it as "Sector:arena"'
            )
    overlap = set(places_legend) & set(objects_legend)
    if overlap:
        raise TownDataError(
            path, f"objects.{sorted(overlap)[0]!r}", "is also a place character", "use distinct characters"
        )

    places = tuple(dict.fromkeys(places_legend.values()))
    objects = tuple(dict.fromkeys(objects_legend.values()))
    h = len(rows)
    walkable = np.zeros((h, width), dtype=bool)
    place_of = np.full((h, width), NO_PLACE, dtype=np.int32)
    object_of = np.full((h, width), -1, dtype=np.int32)
    pending: list[tuple[int, int]] = []
    for y, row in enumerate(rows):
        for x, ch in enumerate(row):
            if ch in walls:
                continue
            walkable[y, x] = True
            if ch in places_legend:
                place_of[y, x] = places.index(places_legend[ch])
            elif ch in objects_legend:
                object_of[y, x] = objects.index(objects_legend[ch])
                pending.append((x, y))
            else:
                raise TownDataError(
                    path,
                    f"grid tile ({x}, {y})",
                    f"character {ch!r} is not in the legend",
                    f"add {ch!r} to places, objects or walls",
                )
    for x, y in pending:  # an object takes the place of a neighbouring floor tile
        for dx, dy in _NEIGHBOURS:
            nx, ny = x + dx, y + dy
            if 0 <= nx < width and 0 <= ny < h and place_of[ny, nx] >= 0 and object_of[ny, nx] < 0:
                place_of[y, x] = place_of[ny, nx]
                break
        else:
            raise TownDataError(
                path,
                f"grid tile ({x}, {y})",
                f"object {rows[y][x]!r} touches no floor tile of a place",
                "put the object next to a floor tile of its room",
            )
    return TownMap(
        name=name,
        source=str(path),
        walkable=walkable,
        place_of=place_of,
        object_of=object_of,
        places=places,
        object_names=objects,
    )


def _layer_names(layer: Mapping[str, Any], path: Path) -> dict[int, str]:
    props = layer.get("properties")
    for prop in props if isinstance(props, list) else []:
        if isinstance(prop, dict) and prop.get("name") == "names":
            try:
                raw = json.loads(prop.get("value", ""))
                return {int(k): str(v) for k, v in raw.items()}
            except (ValueError, AttributeError, TypeError):
                break
    raise TownDataError(
        path,
        f"layer {layer.get('name')!r}.properties.names",
        "is missing or not a JSON object of gid -> name",
        'add a string property "names" such as {"1": "Willow Cafe"}',
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def load_tiled_map(path: str | Path) -> TownMap:
    """Load a Tiled JSON map with layers collision, sectors, arenas and (optionally) objects.

    Every layer must be an uncompressed CSV-style ``data`` array of the map's size.
    The town name is the map property ``town`` (default: the file's stem).

    Raises:
        TownDataError: naming the file, the layer or tile, and the fix.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TownDataError(path, "file", "does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TownDataError(
            path, "file", f"is not a readable JSON file ({e})", "export the map from Tiled as JSON"
        ) from None
    if not isinstance(doc, dict):
        raise TownDataError(path, "document", "is not a JSON object", "export the map from Tiled as JSON")
    w = _require(doc, "width", int, path, "export a finite (non-infinite) map")
    h = _require(doc, "height", int, path, "export a finite (non-infinite) map")
    for key, value in (("width", w), ("height", h)):
        if isinstance(value, bool) or not 1 <= value <= MAX_MAP_SIDE:
            raise TownDataError(path, key, f"{value!r} is not in [1, {MAX_MAP_SIDE}]", "give the map size in tiles")
    layers = {
        str(layer.get("name", "")).lower(): layer for layer in _as_list(doc.get("layers")) if isinstance(layer, dict)
    }

    def grid(name: str, required: bool = True) -> npt.NDArray[np.int64] | None:
        if name not in layers:
            if required:
                raise TownDataError(path, f"layer {name!r}", "is missing", f"add a tile layer named {name!r}")
            return None
        data = layers[name].get("data")
        if not isinstance(data, list) or len(data) != w * h:
            raise TownDataError(
                path,
                f"layer {name!r}.data",
                f"must be a list of {w * h} gids",
                "set the layer format to CSV (not base64) and keep the map size",
            )
        bad = next((i for i, v in enumerate(data) if type(v) is not int or not 0 <= v < 2**32), None)
        if bad is not None:
            raise TownDataError(
                path,
                f"layer {name!r}.data[{bad}] (tile ({bad % w}, {bad // w}))",
                f"{data[bad]!r:.40} is not a tile gid",
                "write gids as integers >= 0 (0 = empty)",
            )
        return np.asarray(data, dtype=np.int64).reshape(h, w) & 0x1FFFFFFF  # drop Tiled's flip flags

    collision = grid("collision")
    sectors = grid("sectors")
    arenas = grid("arenas")
    objects = grid("objects", required=False)
    assert collision is not None and sectors is not None and arenas is not None
    sector_names = _layer_names(layers["sectors"], path)
    arena_names = _layer_names(layers["arenas"], path)
    object_names_map = _layer_names(layers["objects"], path) if objects is not None else {}
    town = (
        next(
            (
                p.get("value")
                for p in _as_list(doc.get("properties"))
                if isinstance(p, dict) and p.get("name") == "town"
            ),
            None,
        )
        or path.stem
    )

    walkable = collision == 0
    places: dict[str, int] = {}
    place_of = np.full((h, w), NO_PLACE, dtype=np.int32)
    object_of = np.full((h, w), -1, dtype=np.int32)
    obj_index: dict[str, int] = {}
    for y, x in np.argwhere(walkable):
        s, a = int(sectors[y, x]), int(arenas[y, x])
        if s == 0 or a == 0:
            continue  # reported by TownMap validation as "belongs to no place"
        if s not in sector_names:
            raise TownDataError(
                path,
                f"layer 'sectors' tile ({x}, {y})",
                f"gid {s} has no name",
                f"add {s} to the layer's names property",
            )
        if a not in arena_names:
            raise TownDataError(
                path,
                f"layer 'arenas' tile ({x}, {y})",
                f"gid {a} has no name",
                f"add {a} to the layer's names property",
            )
        key = f"{sector_names[s]}:{arena_names[a]}"
        place_of[y, x] = places.setdefault(key, len(places))
        if objects is not None and objects[y, x]:
            g = int(objects[y, x])
            if g not in object_names_map:
                raise TownDataError(
                    path,
                    f"layer 'objects' tile ({x}, {y})",
                    f"gid {g} has no name",
                    f"add {g} to the layer's names property",
                )
            object_of[y, x] = obj_index.setdefault(object_names_map[g], len(obj_index))
    return TownMap(
        name=str(town),
        source=str(path),
        walkable=walkable,
        place_of=place_of,
        object_of=object_of,
        places=tuple(places),
        object_names=tuple(obj_index),
    )


def load_map(path: str | Path) -> TownMap:
    """Load a map, choosing the format by extension (``.json`` = Tiled, else ASCII YAML)."""
    path = Path(path)
    return load_tiled_map(path) if path.suffix.lower() == ".json" else load_ascii_map(path)
