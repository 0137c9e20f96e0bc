"""Atomic files and verified checkpoints: the one module that writes results to disk.

Every writer of the project goes through :func:`atomic_write_bytes` (temp file in the same
folder, fsync, ``os.replace``, then an fsync of the folder so the rename itself survives a power
cut): the GRPO trainer's checkpoints (:func:`save_checkpoint`), the simulation's run store
(``ga_sim.runstore``), the LLM answer cache (``agents.llm.cache``), reports and compressed runs.
A reader never sees a half-written file, and a killed process leaves the previous file intact.

Checkpoints (:func:`save_checkpoint` / :func:`load_checkpoint`) are ``.npz`` files of named
arrays plus the resolved config and a SHA-256 of the arrays, checked on load; the previous one is
kept as ``<name>.prev.npz`` and used, with a warning, when the newest is damaged; when both are
damaged, the error names both files and both problems (there is no older checkpoint to offer).
Policy parameters in them are the ``param/<name>`` arrays (``agents.factory.load_policy``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout (2: checksum, lessons, previous checkpoint kept)."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or corrupt; the message names the file and the fix."""


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    sync_dir: bool = True,
    keep_previous: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Args:
        path: the file; its folder must exist.
        data: the whole contents.
        sync_dir: also fsync the folder so the rename survives a power cut (a cache, whose entries
            can be lost without harm, skips it).
        keep_previous: move the file being replaced there (once the new one is safely on disk).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from the user's other tools
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make the renames in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def digest(arrays: Mapping[str, Any]) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.asarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def previous_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(path: str | os.PathLike[str], arrays: Mapping[str, Any], config_yaml: str) -> None:
    """Write ``arrays`` + the resolved config atomically, keeping the one before as ``<name>.prev.npz``.

    The previous checkpoint is kept so that a checkpoint damaged after it was written (disk full,
    a copy cut short) still leaves a good one to resume from. A SHA-256 of the arrays is stored
    inside, so damage is detected on load rather than trained on.
    """
    path = Path(path)
    full = {"config_yaml": np.array(config_yaml), "format": np.array(CHECKPOINT_FORMAT), **arrays}
    buf = io.BytesIO()
    np.savez(buf, sha256=np.array(digest(full)), **full)
    atomic_write_bytes(path, buf.getvalue(), keep_previous=previous_checkpoint(path))


NO_GOOD_CHECKPOINT_FIX = (
    "start a new run (without trainer.resume), or resume from (or load) another run's checkpoint.npz"
)
"""The fix when no checkpoint of a run can be read (there is no older one to fall back on)."""


def _problem(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``(arrays, "")`` of a good checkpoint, else ``(None, "<field>: <problem>")``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        return None, "file: does not exist"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        return None, f"file: is truncated or not a checkpoint ({type(e).__name__}: {e})"
    stored = str(arrays.pop("sha256", ""))
    if stored and stored != digest(arrays):
        return None, "sha256: the contents do not match their checksum"
    return arrays, ""


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and verify one checkpoint file.

    Raises:
        CheckpointError: the file is missing, not a readable ``.npz``, or its checksum fails; the
            fix offers the previous checkpoint only when it exists.
    """
    path = Path(path)
    arrays, problem = _problem(path)
    if arrays is not None:
        return arrays
    prev = previous_checkpoint(path)
    if problem.startswith("file: does not exist"):
        fix = "give the checkpoint.npz of a run"
    elif prev.exists():
        fix = f"resume from {prev.name} (loading the run folder does it) or from another run's checkpoint"
    else:
        fix = NO_GOOD_CHECKPOINT_FIX
    raise CheckpointError(f"{path}: {problem}. Fix: {fix}")


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """The checkpoint at ``path`` (a file, or a run folder holding ``checkpoint.npz``), verified.

    If it is missing or damaged and the previous one (``checkpoint.prev.npz``) is good, that one is
    used with a warning naming the problem. Returns the arrays and the file actually read.

    Raises:
        CheckpointError: neither the file nor its previous one is a good checkpoint; the message
            names both files and both problems.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    prev = previous_checkpoint(path)
    arrays, problem = _problem(path)
    if arrays is not None:
        return arrays, path
    if not prev.exists():
        return read_checkpoint(path), path  # raises, with the fix for a file without a previous one
    prev_arrays, prev_problem = _problem(prev)
    if prev_arrays is None:
        raise CheckpointError(
            f"{path}: {problem}; and the previous checkpoint {prev}: {prev_problem}. "
            f"Fix: both are damaged, so this run cannot resume from them: {NO_GOOD_CHECKPOINT_FIX}"
        )
    warnings.warn(f"{path}: {problem} -- using the previous checkpoint {prev}", stacklevel=2)
    return prev_arrays, prev
