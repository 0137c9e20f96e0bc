"""Run folders and checkpoints of the simulation workflow.

A named run lives in ``<results>/runs/<name>/``::

    meta.json        format version, config, start time, stride, personas, map (for the replay)
    steps.jsonl      one record per simulated step (time, and per persona: tile, place, action,
                     emoji, description, utterance, partner), appended as the run goes
    checkpoints/     ckpt-<step>.npz: everything needed to resume exactly (env state, the
                     society's minds, RNG states, LLM usage); written atomically (temp file,
                     fsync, os.replace) and versioned; the newest ``KEEP`` are kept
    blobs/           <sha256>.npy and <sha256>.copy.npy: two copies of each immutable block of
                     the large arrays of the checkpoints (memory streams only grow at their
                     end, so each checkpoint writes only the blocks completed since the last
                     one); unreferenced blocks are deleted

A checkpoint is one ``.npz`` (a zip with a CRC per member) holding ``__state__``: the state tree
as UTF-8 JSON with every NumPy array replaced by a reference to a member, the list of blocks of
each large array, and a SHA-256 of both; each block is checked against its own SHA-256 on load.
A truncated or corrupt newest checkpoint is detected when it is read, reported with a clear
message naming the checkpoint resumed from instead, and the previous good one is used.

Why two copies of every block: the kept checkpoints share almost all their blocks (a block of a
memory stream, once complete, is part of every later checkpoint), so with a single copy one
damaged block file would make every kept checkpoint unreadable, and deleting it would not help.
With two copies, a damaged, truncated or deleted block file is detected by its SHA-256, read from
the other copy, and rewritten from it when the run is resumed (:meth:`RunStore.load_latest`): one
damaged block file loses nothing. Only a block whose two copies are both damaged loses the
checkpoints that use it: ``load_latest`` resumes from the newest checkpoint that does not use it
(the warning names it) and deletes the damaged files, so that the next checkpoint writes the
block afresh instead of referring to them. The price: blocks take twice the disk space and each
checkpoint writes its new blocks twice (loading reads one copy). Alternatives weighed: two
alternating chains of blocks (even and odd checkpoints) cost the same but lose the checkpoints of
the damaged chain; writing each checkpoint's blocks fresh gives up incremental checkpoints (a
week-long run would write the whole week every time). Runs written before the copies existed
still load; their blocks get a copy as later checkpoints refer to them again.

``steps.jsonl`` is read line by line: a last line cut short by a kill is skipped (and dropped
when the run is resumed, :meth:`RunStore.truncate_steps`); any other line that is not a JSON
record is an error naming the file, the line and a fix.

Run names are validated (letters, digits, ``_ - .``; no ``..``, no slashes), so that nothing
outside ``<results>/runs`` can be named.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ga_env.checkpoint import atomic_write_bytes

FORMAT_VERSION = 2
"""Version of the run folder and checkpoint format (bumped on an incompatible change)."""
KEEP = 3
"""Checkpoints kept per run (older ones are deleted after a successful write)."""
DEFAULT_RESULTS = Path("results")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_CKPT_RE = re.compile(r"^ckpt-(\d{8})\.npz$")


class RunError(RuntimeError):
    """A problem with a run folder; the message names the file, the field and the fix."""

    def __init__(self, where: str | Path, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{where}: {field}: {problem}. Fix: {fix}")

    @classmethod
    def of(cls, err: Exception) -> RunError:
        """A ``RunError`` with the message of ``err``, which already names the file, the field and the fix."""
        obj = cls.__new__(cls)
        RuntimeError.__init__(obj, str(err))
        return obj


def validate_name(name: str, what: str = "--name") -> str:
    """Return ``name`` if it is a safe run name, else raise :class:`RunError`."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise RunError(
            "argument",
            what,
            f"{name!r} is not a valid run name",
            "use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit (no '..', no slashes)",
        )
    return name


# -- state trees <-> JSON + arrays ---------------------------------------------------------------
def pack(tree: Any) -> tuple[str, dict[str, np.ndarray]]:
    """Split a tree of dicts/lists/scalars/arrays into JSON text and a dict of arrays.

    Every NumPy array becomes ``{"__array__": key}``; NumPy scalars become Python numbers. The C
    JSON encoder does the walk (about 7x faster than a Python walk on a week of memories), so the
    usual JSON rules apply: tuples come back as lists, and dict keys must be strings.

    Raises:
        TypeError: for a value that is neither JSON data nor a (non-object) NumPy array.
    """
    arrays: dict[str, np.ndarray] = {}

    def extra(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            if x.dtype == object:
                raise TypeError("object arrays cannot be checkpointed; convert them to lists")
            key = f"a{len(arrays)}"
            arrays[key] = x
            return {"__array__": key}
        if isinstance(x, np.generic):
            return x.item()
        raise TypeError(f"cannot checkpoint a {type(x).__name__}")

    return json.dumps(tree, default=extra, sort_keys=True, allow_nan=True), arrays


def unpack(text: str, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of :func:`pack`."""

    def hook(d: dict[str, Any]) -> Any:
        if len(d) == 1 and "__array__" in d:
            return arrays[d["__array__"]]
        return d

    return json.loads(text, object_hook=hook)


BLOB_MIN_BYTES = 1 << 17
"""Arrays at least this large are stored in blocks in the run's ``blobs/`` folder (see below)."""
BLOCK_BYTES = 1 << 17
"""Target size of one block of a large array."""


def _block_rows(arr: np.ndarray) -> int:
    row = max(1, arr[:1].nbytes if arr.ndim > 1 and len(arr) else arr.itemsize)
    return max(1, BLOCK_BYTES // row)


def _blob_digest(block: np.ndarray) -> str:
    h = hashlib.sha256(f"{block.dtype.str}{block.shape}".encode())
    h.update(np.ascontiguousarray(block).data)
    return h.hexdigest()


_DIGESTS: dict[tuple[int, int, str, tuple[int, ...]], tuple[weakref.ref[Any], str]] = {}
_PURGE_AT = 4096


def _block_digest(block: np.ndarray) -> str:
    """:func:`_blob_digest`, remembered for blocks of **read-only** views of a living base array.

    A read-only view promises that its content does not change while its base array lives (e.g.
    the completed rows of a memory stream's embeddings), so the same block of the same base need
    not be hashed again at every checkpoint. Writeable arrays are always hashed.
    """
    base = block.base
    if block.flags.writeable or not isinstance(base, np.ndarray) or not block.flags.c_contiguous:
        return _blob_digest(block)
    key = (id(base), block.__array_interface__["data"][0], block.dtype.str, block.shape)
    hit = _DIGESTS.get(key)
    if hit is not None and hit[0]() is base:
        return hit[1]
    digest = _blob_digest(block)
    global _PURGE_AT
    if len(_DIGESTS) > _PURGE_AT:  # forget the blocks of arrays that are gone (e.g. a compacted memory)
        for k in [k for k, (ref, _) in _DIGESTS.items() if ref() is None]:
            del _DIGESTS[k]
        _PURGE_AT = max(4096, 2 * len(_DIGESTS))  # amortised: live entries are not rescanned every time
    _DIGESTS[key] = (weakref.ref(base), digest)
    return digest


def blob_paths(blob_dir: Path, digest: str) -> tuple[Path, Path]:
    """The two files of a block: ``<digest>.npy`` and its copy ``<digest>.copy.npy``."""
    return blob_dir / f"{digest}.npy", blob_dir / f"{digest}.copy.npy"


def _npy_bytes(block: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, block, allow_pickle=False)
    return buf.getvalue()


def _write_block(blob_dir: Path, digest: str, block: np.ndarray) -> None:
    """Write the copies of a block that are missing (atomically; the folder is synced once)."""
    missing = [p for p in blob_paths(blob_dir, digest) if not p.exists()]
    if not missing:
        return
    data = _npy_bytes(block)
    blob_dir.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(missing):
        atomic_write_bytes(path, data, sync_dir=k == len(missing) - 1)


def _read_block(
    blob_dir: Path, digest: str, *, every_copy: bool = False
) -> tuple[np.ndarray | None, list[tuple[Path, str, bool]]]:
    """The block ``digest`` from its first good copy, and ``(file, problem, damaged)`` of each bad
    copy found (``damaged``: read and found wrong, as opposed to missing or unreadable). The copies
    after the first good one are checked too with ``every_copy``."""
    problems: list[tuple[Path, str, bool]] = []
    good: np.ndarray | None = None
    for path in blob_paths(blob_dir, digest):
        if good is not None and not every_copy:
            break
        try:
            block = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            problems.append((path, "missing", False))
            continue
        except OSError as e:  # e.g. an I/O error: the file may be good, so it is left alone
            problems.append((path, f"unreadable ({type(e).__name__}: {e})", False))
            continue
        except Exception as e:  # a truncated file, a damaged npy header...
            problems.append((path, f"damaged ({type(e).__name__}: {e})", True))
            continue
        if _blob_digest(block) != digest:
            problems.append((path, "damaged (SHA-256 mismatch)", True))
            continue
        if good is None:
            good = block
    return good, problems


def encode_checkpoint(state: Any, step: int, blob_dir: Path | None = None) -> bytes:
    """Serialise a state tree into checkpoint bytes (an ``.npz``).

    With ``blob_dir``, every array of at least :data:`BLOB_MIN_BYTES` is cut along its first axis
    into blocks of about :data:`BLOCK_BYTES`: each full block is a content-addressed file
    ``blob_dir/<sha256>.npy``, plus its copy ``<sha256>.copy.npy``, written once (atomically) and
    shared by every later checkpoint, and only the last, partial block stays in the checkpoint. A
    memory stream only grows at its end, so a checkpoint of a week-long run writes the new
    memories, not the whole week again.
    """
    tree, arrays = pack(state)
    chunks: dict[str, dict[str, Any]] = {}
    if blob_dir is not None:
        for key in list(arrays):
            arr = arrays[key] if arrays[key].flags.c_contiguous else np.ascontiguousarray(arrays[key])
            if arr.nbytes < BLOB_MIN_BYTES or arr.ndim == 0:
                continue
            rows = _block_rows(arr)
            full = len(arr) // rows * rows
            digests = []
            for start in range(0, full, rows):
                block = arr[start : start + rows]
                digest = _block_digest(block)
                _write_block(blob_dir, digest, block)
                digests.append(digest)
            chunks[key] = {"blocks": digests}
            arrays[key] = arr[full:]  # the tail (possibly empty) stays in the checkpoint
    body = f'{{"format": {FORMAT_VERSION}, "step": {int(step)}, "state": {tree}}}'
    index = json.dumps(chunks, sort_keys=True)
    digest = hashlib.sha256(f"{index}\n{body}".encode()).hexdigest()
    header = json.dumps({"sha256": digest, "chunks": index, "body": body})
    # UTF-8 bytes: a NumPy str array would store the JSON as UTF-32 (four times the size).
    members: dict[str, Any] = {"__state__": np.frombuffer(header.encode(), dtype=np.uint8), **arrays}
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def checkpoint_blobs(path: Path) -> set[str]:
    """The blob digests a checkpoint refers to (empty if it cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["__state__"].tobytes().decode())
        chunks = json.loads(header.get("chunks", "{}"))
        return {d for c in chunks.values() for d in c["blocks"]}
    except Exception:
        return set()


def decode_checkpoint(
    path: Path, blob_dir: Path | None = None, *, repair: bool = False, notes: list[str] | None = None
) -> tuple[int, Any]:
    """Read and verify a checkpoint; returns ``(step, state)``.

    Args:
        path: the checkpoint file.
        blob_dir: where its large arrays' blocks are (default: ``blobs/`` beside the checkpoints
            folder); every block is checked against its SHA-256, and a damaged or missing copy is
            replaced by the block's other copy.
        repair: rewrite a damaged or missing copy of a block from its good copy, and delete the
            files of a block whose copies are all damaged (so that the next checkpoint writes the
            block again rather than referring to them).
        notes: receives one line per damaged block copy that was read from (and, with
            ``repair``, rewritten from) its other copy.

    Raises:
        RunError: if the file is truncated, corrupt, of another format version, unreadable, or
            refers to a block none of whose copies is good.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["__state__"].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != "__state__"}  # reading checks every member's CRC
    except Exception as e:  # any failure to parse is a damaged file (zip, npy header, CRC, JSON...)
        raise RunError(path, "file", f"corrupt or truncated checkpoint ({type(e).__name__}: {e})", "delete it") from e
    body = header.get("body", "") if isinstance(header, dict) else ""
    index = header.get("chunks", "{}") if isinstance(header, dict) else "{}"
    if not isinstance(body, str) or not isinstance(index, str):
        raise RunError(path, "__state__", "unreadable header", "delete it")
    if hashlib.sha256(f"{index}\n{body}".encode()).hexdigest() != header.get("sha256"):
        raise RunError(path, "sha256", "checksum mismatch (corrupt checkpoint)", "delete it")
    blobs = blob_dir if blob_dir is not None else path.parent.parent / "blobs"
    missing = 0
    for key, chunk in json.loads(index).items():
        parts = []
        for digest in chunk["blocks"]:
            block, problems = _read_block(blobs, digest, every_copy=repair)
            if block is None:
                if repair:
                    for bad, _, damaged in problems:
                        if damaged:
                            bad.unlink(missing_ok=True)
                what = "; ".join(f"{bad.name}: {problem}" for bad, problem, _ in problems)
                raise RunError(
                    blob_paths(blobs, digest)[0],
                    "block",
                    f"no good copy of this block of {path.name} ({what})"
                    + (
                        "; the damaged files were deleted, so the next checkpoint writes the block again"
                        if repair
                        else ""
                    ),
                    "resume from an older checkpoint that does not use this block (ga-simulate --resume picks it), "
                    "or restore both files from a backup of the run folder",
                )
            for bad, problem, _ in problems:
                rewritten = ""
                if repair:
                    try:
                        atomic_write_bytes(bad, _npy_bytes(block))
                        rewritten = ", which replaced it"
                    except OSError as e:
                        rewritten = f" (could not rewrite it: {e})"
                if problem == "missing" and not rewritten.startswith(" ("):
                    missing += 1  # e.g. a run written before blocks had copies: one line for them all
                elif notes is not None:
                    notes.append(f"{bad}: {problem}; the block of {path.name} was read from its other copy{rewritten}")
            parts.append(block)
        if key not in arrays:
            raise RunError(path, key, "missing array member", "delete it")
        arrays[key] = np.concatenate([*parts, arrays[key]]) if parts else arrays[key]
    if missing and notes is not None:
        notes.append(
            f"{blobs}: {missing} block file(s) of {path.name} missing; read from their other copy"
            + (", which replaced them" if repair else "")
        )
    try:
        doc = unpack(body, arrays)
        int(doc["step"])
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(path, "__state__", f"unreadable state ({e})", "delete it") from e
    if doc.get("format") != FORMAT_VERSION:
        raise RunError(
            path,
            "format",
            f"version {doc.get('format')!r} is not {FORMAT_VERSION}",
            "resume with the version of generative-agents-rl that wrote it, or start a new run",
        )
    return int(doc["step"]), doc["state"]


# -- run folders ------------------------------------------------------------------------------------
class RunStore:
    """One named run under ``<results>/runs/<name>``.

    Args:
        results: the results root (``./results`` by default).
        name: the run name (validated).
    """

    def __init__(self, results: str | Path, name: str) -> None:
        self.results = Path(results)
        self.name = validate_name(name)
        self.dir = self.results / "runs" / self.name
        self.meta_path = self.dir / "meta.json"
        self.steps_path = self.dir / "steps.jsonl"
        self.ckpt_dir = self.dir / "checkpoints"
        self.blob_dir = self.dir / "blobs"

    def exists(self) -> bool:
        """Whether the run has been created (its ``meta.json`` exists)."""
        return self.meta_path.exists()

    def create(self, meta: Mapping[str, Any]) -> None:
        """Create the folder and write ``meta.json``; refuses to overwrite an existing run."""
        if self.exists():
            raise RunError(
                self.meta_path,
                "--name",
                f"run {self.name!r} already exists",
                "pick another --name, continue it with --resume, or delete the folder",
            )
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.meta_path, json.dumps({"format": FORMAT_VERSION, **meta}, indent=1).encode())
        self.steps_path.touch()

    def meta(self) -> dict[str, Any]:
        """The run's ``meta.json``."""
        if not self.exists():
            raise RunError(self.dir, "--name", f"no run named {self.name!r}", "check the name and --results")
        try:
            meta: dict[str, Any] = json.loads(self.meta_path.read_bytes())
        except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
            raise RunError(self.meta_path, "file", f"unreadable ({e})", "restore meta.json or start a new run") from e
        if not isinstance(meta, dict):
            raise RunError(
                self.meta_path,
                "file",
                f"a JSON {type(meta).__name__}, not an object",
                "restore meta.json or start a new run",
            )
        if meta.get("format") != FORMAT_VERSION:
            raise RunError(
                self.meta_path, "format", f"{meta.get('format')!r} is not {FORMAT_VERSION}", "start a new run"
            )
        return meta

    # -- steps --
    def append_steps(self, records: list[dict[str, Any]]) -> None:
        """Append step records (one JSON line each) and flush them to disk."""
        if not records:
            return
        with self.steps_path.open("a") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def iter_steps(self) -> Iterator[dict[str, Any]]:
        """Complete step records in order, read lazily.

        A last line cut short by a kill (no newline at its end) is skipped; resuming the run drops
        it (:meth:`truncate_steps`).

        Raises:
            RunError: a complete line that is not a JSON record; the message names the file, the
                line and a fix.
        """
        if not self.steps_path.exists():
            return
        with self.steps_path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    return  # torn last line of a killed run
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise self.line_error(number, f"not a JSON record ({e.msg} at character {e.pos + 1})") from None
                except ValueError as e:  # UnicodeDecodeError
                    raise self.line_error(number, f"not UTF-8 text ({e})") from None
                if not isinstance(record, dict):
                    raise self.line_error(number, f"a JSON {type(record).__name__}, not a step record")
                yield record

    def line_error(self, number: int, problem: str) -> RunError:
        """The error for line ``number`` of ``steps.jsonl``, with a fix that can work for this run."""
        intact = number - 1  # records before the bad line
        older = [s for s, _ in self.checkpoints() if s <= intact]
        newest = self.checkpoints()[-1][0] if self.checkpoints() else None
        resume = f"ga-simulate --results {self.results} --name {self.name} --resume"
        if older and older[-1] == newest:
            fix = (
                f"resume the run ({resume}): it keeps the first {newest} records (its newest checkpoint is of step "
                f"{newest}), drops the rest, and --step N simulates them again; or restore the file from a backup"
            )
        elif older:
            later = [p.name for s, p in self.checkpoints() if s > older[-1]]
            fix = (
                f"restore the file from a backup; or delete the checkpoints after step {older[-1]} "
                f"({', '.join(later)} in {self.ckpt_dir}) and resume the run ({resume}): it keeps the first "
                f"{older[-1]} records and --step N simulates the rest again"
            )
        else:
            fix = f"restore the file from a backup, or start a new run (no checkpoint is older than line {number})"
        return RunError(self.steps_path, f"line {number}", problem, fix)

    def steps(self) -> list[dict[str, Any]]:
        """All complete step records."""
        return list(self.iter_steps())

    def truncate_steps(self, n: int) -> None:
        """Keep only the first ``n`` records (after resuming from a checkpoint at step ``n``)."""
        keep = list(itertools.islice(self.iter_steps(), n))  # lines after the n-th are not read
        if len(keep) < n:
            raise RunError(
                self.steps_path, "records", f"has {len(keep)} steps, the checkpoint {n}", "start a new run (--fork)"
            )
        atomic_write_bytes(self.steps_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep).encode())

    # -- checkpoints --
    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every checkpoint file, oldest first."""
        if not self.ckpt_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
        return sorted(found)

    def save_checkpoint(self, step: int, state: Any) -> Path:
        """Write the checkpoint of ``step`` atomically and prune old ones; returns its path."""
        path = self.ckpt_dir / f"ckpt-{step:08d}.npz"
        atomic_write_bytes(path, encode_checkpoint(state, step, self.blob_dir))
        for _, old in self.checkpoints()[:-KEEP]:
            old.unlink(missing_ok=True)
        self.collect_blobs()
        return path

    def collect_blobs(self) -> None:
        """Delete the blocks no remaining checkpoint refers to (and stale temp files)."""
        if not self.blob_dir.is_dir():
            return
        used: set[str] = set()
        for _, ckpt in self.checkpoints():
            used |= checkpoint_blobs(ckpt)
        for blob in self.blob_dir.iterdir():
            # <digest>.npy and <digest>.copy.npy
            if (blob.suffix == ".npy" and blob.name.split(".")[0] not in used) or blob.name.endswith(".tmp"):
                blob.unlink(missing_ok=True)

    def copy_checkpoint(self, path: Path) -> Path:
        """Copy another run's checkpoint (and both copies of the blocks it refers to, verified) into this
        run (``--fork``)."""
        import shutil

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        src_blobs = path.parent.parent / "blobs"
        for digest in sorted(checkpoint_blobs(path)):
            block, problems = _read_block(src_blobs, digest)
            if block is None:
                what = "; ".join(f"{bad.name}: {problem}" for bad, problem, _ in problems)
                raise RunError(
                    blob_paths(src_blobs, digest)[0],
                    "block",
                    f"no good copy of this block of {path.name} ({what})",
                    "fork another run",
                )
            _write_block(self.blob_dir, digest, block)
        dst = self.ckpt_dir / path.name
        shutil.copy2(path, dst)
        return dst

    def load_latest(self, warn: Any = print) -> tuple[int, Any, Path]:
        """The newest readable checkpoint as ``(step, state, path)``.

        A corrupt or truncated checkpoint, or one using a block with no good copy left, is skipped;
        a damaged copy of a block is rewritten from its good copy (see the module's docstring).
        Each problem is reported through ``warn`` with the name of the checkpoint resumed from.

        Raises:
            RunError: if the run has no readable checkpoint.
        """
        for stale in self.ckpt_dir.glob(".ckpt-*.tmp"):
            stale.unlink(missing_ok=True)  # a write interrupted by a kill: never a checkpoint
        problems: list[str] = []
        for _, path in reversed(self.checkpoints()):
            notes: list[str] = []
            try:
                step, state = decode_checkpoint(path, self.blob_dir, repair=True, notes=notes)
            except RunError as e:
                problems.append(str(e))
                continue
            used = f"{path.name} (step {step})"
            for problem in problems:
                warn(f"warning: {problem} -- resuming from the previous checkpoint {used}")
            for note in notes:
                warn(f"warning: {note} -- resuming from {used}")
            return step, state, path
        raise RunError(
            self.ckpt_dir,
            "checkpoints",
            "no readable checkpoint" + (f" ({'; '.join(problems)})" if problems else ""),
            "start the run again, or fork another run",
        )
