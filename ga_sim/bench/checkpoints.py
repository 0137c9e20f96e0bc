"""Damage checkpoints on purpose and count what the loader does (issue 7.2).

The command line is ``scripts/bench_checkpoints.py`` (``python scripts/bench_checkpoints.py
[--flips 1000] [--truncations 300] [--seed 0]``, prints one JSON line); :func:`run` gives its report.

Simulates a small generative run (8 personas, 40 steps, scripted backend) whose large arrays are
stored in blocks (``blobs/``, small block size so that there are many), then, one trial at a
time on fresh copies: flips one random byte of the newest checkpoint file, flips one random byte
of one of its blocks, or truncates the checkpoint file at a random length. Each trial ends in one
of three ways: **detected** (``decode_checkpoint`` raises a ``RunError`` naming the file, and
``load_latest`` falls back to the previous checkpoint), **harmless** (the byte was one no reader
uses, e.g. a zip timestamp, and the state loaded equals the original), or **loaded wrong** (a
state different from the original was returned: the failure that must never happen).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import ga_sim.runstore as rs
from ga_sim.simulation import Simulation


def _same(a: Any, b: Any) -> bool:
    """Whether two decoded checkpoint states are equal (arrays by value, dicts and lists recursively)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def run(flips: int = 1000, truncations: int = 300, seed: int = 0) -> dict[str, Any]:
    """The damage trials; the report ``scripts/bench_checkpoints.py`` prints as one JSON line.

    Sets the block size of :mod:`ga_sim.runstore` small (``BLOB_MIN_BYTES``, ``BLOCK_BYTES``) for
    the rest of the process, so that the checkpoint has many blocks.

    Args:
        flips: one-byte flips of the checkpoint file, and as many of one of its blocks.
        truncations: truncations of the checkpoint file at a random length.
        seed: seed of the damage (which byte, which block, which length).

    Returns:
        ``{"bench", "checkpoint_bytes", "blocks", "results", "loaded_wrong"}``: per kind of damage the
        trials and how many were detected, harmless (or, for one damaged copy of a block, recovered
        from the other copy) and loaded wrong; ``loaded_wrong`` must be 0.
    """
    rng = np.random.default_rng(seed)
    rs.BLOB_MIN_BYTES, rs.BLOCK_BYTES = 4096, 8192
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulation.create(
            Path(tmp), "victim", ["env.max_agents=8"], start="2023-02-13 07:00", stride=10, mind="generative"
        )
        sim.run(40, progress=False)
        store = sim.store
        newest = store.checkpoints()[-1][1]
        step, original = rs.decode_checkpoint(newest)
        blobs = sorted(rs.checkpoint_blobs(newest))
        work = Path(tmp) / "work"

        def trial(kind: str, damage: Callable[[Path], None]) -> None:
            shutil.rmtree(work, ignore_errors=True)
            (work / "checkpoints").mkdir(parents=True)
            shutil.copytree(store.blob_dir, work / "blobs")
            ckpt = work / "checkpoints" / newest.name
            shutil.copy2(newest, ckpt)
            damage(ckpt)
            ok = "recovered" if kind == "flip_block" else "harmless"  # one copy damaged: read from the other
            c = counts.setdefault(kind, {"trials": 0, "detected": 0, ok: 0, "loaded_wrong": 0})
            c["trials"] += 1
            try:
                got_step, state = rs.decode_checkpoint(ckpt)
            except rs.RunError as e:
                assert str(ckpt) in str(e) or str(work / "blobs") in str(e)
                c["detected"] += 1
                return
            c[ok if got_step == step and _same(state, original) else "loaded_wrong"] += 1

        def flip(path: Path) -> None:
            data = bytearray(path.read_bytes())
            data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
            path.write_bytes(bytes(data))

        for _ in range(flips):
            trial("flip_checkpoint", flip)
            trial("flip_block", lambda ckpt: flip(ckpt.parent.parent / "blobs" / f"{rng.choice(blobs)}.npy"))

            def flip_both(ckpt: Path) -> None:
                name = rng.choice(blobs)
                for suffix in (".npy", ".copy.npy"):
                    flip(ckpt.parent.parent / "blobs" / f"{name}{suffix}")

            trial("flip_both_block_copies", flip_both)
        for _ in range(truncations):

            def cut(path: Path) -> None:
                data = path.read_bytes()
                path.write_bytes(data[: int(rng.integers(len(data)))])

            trial("truncate_checkpoint", cut)
        report = {
            "bench": "checkpoint_damage",
            "checkpoint_bytes": newest.stat().st_size,
            "blocks": len(blobs),
            "results": counts,
            "loaded_wrong": sum(c["loaded_wrong"] for c in counts.values()),
        }
    return report
