"""Rendering of the town: an ANSI text map and an RGB image (NumPy only, no pygame)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ga_env.town import TownEnv

TILE = 8  # pixels per tile in rgb_array
WALL = np.array([60, 60, 70], dtype=np.uint8)
GROUP_COLOURS = np.array(
    [
        [230, 80, 60],
        [60, 120, 230],
        [240, 180, 40],
        [60, 180, 90],
        [170, 80, 200],
        [40, 190, 200],
        [220, 110, 170],
        [120, 120, 120],
    ],
    dtype=np.uint8,
)
AGENT_GLYPHS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _sector_colour(name: str) -> npt.NDArray[np.uint8]:
    h = zlib.crc32(name.encode())  # stable across runs, unlike hash()
    base = np.array([(h >> 16) & 0xFF, (h >> 8) & 0xFF, h & 0xFF], dtype=np.float64)
    return (150 + base * 100 / 255).astype(np.uint8)  # pale, so agents stand out


def base_image(env: TownEnv) -> npt.NDArray[np.uint8]:
    """The map without agents, ``(H*TILE, W*TILE, 3)``; cached on the map object."""
    m = env.town_map
    palette = np.array([_sector_colour(p.split(":", 1)[0]) for p in m.places] + [WALL], dtype=np.uint8)
    tiles = palette[np.where(m.place_of >= 0, m.place_of, len(m.places))]  # (H, W, 3)
    tiles[m.object_of >= 0] = (tiles[m.object_of >= 0] * 0.7).astype(np.uint8)
    img = np.repeat(np.repeat(tiles, TILE, axis=0), TILE, axis=1)
    img[::TILE, :, :] = (img[::TILE, :, :] * 0.9).astype(np.uint8)  # faint grid
    img[:, ::TILE, :] = (img[:, ::TILE, :] * 0.9).astype(np.uint8)
    return img


def rgb_array(env: TownEnv) -> npt.NDArray[np.uint8]:
    """An RGB image of the town with each persona as a square coloured by group."""
    img = base_image(env).copy()
    for i in range(len(env.personas)):
        x, y = env.position(i)
        colour = GROUP_COLOURS[int(env.group_of[i]) % len(GROUP_COLOURS)]
        img[y * TILE + 1 : (y + 1) * TILE - 1, x * TILE + 1 : (x + 1) * TILE - 1] = 0
        img[y * TILE + 2 : (y + 1) * TILE - 2, x * TILE + 2 : (x + 1) * TILE - 2] = colour
    return img


def ansi(env: TownEnv) -> str:
    """A text map: ``#`` walls, ``.`` floor, ``*`` objects, a letter per persona, and a legend."""
    m = env.town_map
    grid = np.where(m.walkable, np.where(m.object_of >= 0, "*", "."), "#").astype("<U1")
    legend = []
    for i, p in enumerate(env.personas):
        glyph = AGENT_GLYPHS[i % len(AGENT_GLYPHS)]
        x, y = env.position(i)
        grid[y, x] = glyph
        legend.append(f"{glyph} {p.name:<18} {p.group:<18} {env.places[int(env._place[i])]:<32} {env.describe(i)}")
    header = f"{m.name}  {env.now:%A %Y-%m-%d %H:%M}  step {env._t}/{env.max_cycles}"
    return "\n".join([header, *("".join(row) for row in grid), *legend])
