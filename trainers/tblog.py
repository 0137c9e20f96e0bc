"""TensorBoard logging without torch, written before each call returns: :func:`summary_writer`.

The writer is :class:`EventWriter`: the part of ``tensorboardX.SummaryWriter`` this project uses
(``add_scalar``, ``add_text``, ``add_histogram``, ``flush``, ``close``), writing the same event
files (tensorboardX builds the summaries), but synchronously: every event is appended to the file
and handed to the operating system (one ``write``, no ``fsync``) before the call returns.
tensorboardX's writer queues events for a background thread and flushes the file every two
minutes, so a process killed with SIGKILL loses what it logged since, even the iterations before
its last checkpoint, which a resumed run does not log again.

Resuming: ``summary_writer(logdir, purge_step=k)``, ``k`` the first step the resumed run logs
(the checkpoint's step + 1):

* its file starts with a ``SessionLog.START`` event at step ``k``, TensorBoard's mark of a
  restart: readers drop the points of the earlier files at steps ``>= k`` (logged by the killed
  run after its checkpoint, and logged again by the resumed run);
* a point the resumed run logs at an earlier step, i.e. at the checkpoint's step (the final
  evaluation of a run killed after its last checkpoint, the next iteration's lessons...), replaces
  the earlier files' point of the same tag and step when the writer is closed (those files are
  rewritten atomically without it).

So each tag keeps one point per step.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from ga_env.checkpoint import atomic_write_bytes

_FILE_NUMBER = itertools.count()


def _import_tensorboardx() -> Any:
    """``tensorboardX``, imported without torch.

    tensorboardX imports torch at import time whenever it is installed, only to recognise torch
    tensors; we log NumPy values, and the import costs seconds of start-up on every run (and in
    every Ray worker or subprocess test). Hiding torch during that one import keeps the writer
    NumPy-only; torch stays importable afterwards.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        import tensorboardX
        import tensorboardX.proto.event_pb2
        import tensorboardX.record_writer
        import tensorboardX.summary
    finally:
        if hide:
            del sys.modules["torch"]
    return tensorboardX


@functools.cache
def _default_bins() -> list[float]:
    """tensorboardX's (and TensorFlow's) default histogram bucket limits."""
    v, buckets = 1e-12, []
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    return [-b for b in reversed(buckets)] + [0.0] + buckets


def read_records(data: bytes) -> list[bytes]:
    """The TFRecord records of an event file's bytes, each with its framing (a torn last record is
    left out)."""
    records, at = [], 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            break
        records.append(data[at:end])
        at = end
    return records


class EventWriter:
    """A TensorBoard event file in ``logdir``, every event written before the call returns.

    Args:
        logdir: the folder (created if missing); each writer adds a new
            ``events.out.tfevents.<time>.<host>.<pid>.<n>`` file.
        purge_step: on a resumed run, the first step it will log (see the module docstring).
    """

    def __init__(self, logdir: str | os.PathLike[str], purge_step: int | None = None) -> None:
        tbx = _import_tensorboardx()
        self._summary = tbx.summary
        self._pb = tbx.proto.event_pb2
        self._crc = tbx.record_writer.masked_crc32c
        folder = Path(logdir)
        folder.mkdir(parents=True, exist_ok=True)
        self.logdir = str(folder)
        self._purge_step = purge_step
        self._earlier = sorted(p for p in folder.iterdir() if "tfevents" in p.name) if purge_step is not None else []
        self._relogged: set[tuple[str, int]] = set()  # (tag, step) logged again below purge_step
        # Two writers of one process within a second get two files, in the order they were made.
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = folder / f"{name}.{next(_FILE_NUMBER):06d}"
        self._file: Any = open(self.path, "wb")  # closed by close()
        self._write(self._pb.Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            restart = self._pb.SessionLog(status=self._pb.SessionLog.START)
            self._write(self._pb.Event(step=int(purge_step), wall_time=time.time(), session_log=restart))

    def _write(self, event: Any) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: the TensorBoard writer is closed")
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", self._crc(header)) + data + struct.pack("<I", self._crc(data)))
        self._file.flush()  # one write(2): kept by the OS if the process is killed

    def _add(self, summary: Any, step: int | None) -> None:
        event = self._pb.Event(summary=summary, wall_time=time.time())
        if step is not None:
            event.step = int(step)
            if self._purge_step is not None and step < self._purge_step:
                self._relogged.update((v.tag, int(step)) for v in summary.value)
        self._write(event)

    def add_scalar(self, tag: str, value: Any, global_step: int | None = None) -> None:
        """One point of the scalar ``tag``."""
        self._add(self._summary.scalar(tag, value), global_step)

    def add_text(self, tag: str, text: str, global_step: int | None = None) -> None:
        """Text (markdown) under ``tag`` (shown as ``tag/text_summary``, as tensorboardX does)."""
        self._add(self._summary.text(tag, text), global_step)

    def add_histogram(self, tag: str, values: Any, global_step: int | None = None) -> None:
        """A histogram of ``values`` with TensorBoard's default buckets."""
        self._add(self._summary.histogram(tag, values, _default_bins()), global_step)

    def flush(self) -> None:
        """Flush the file (every event is already handed to the OS when it is written)."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file (fsynced), and drop the earlier files' points this run logged again
        (see the module docstring). A second call does nothing."""
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._relogged:
            for path in self._earlier:
                self._drop_relogged(path)

    def _drop_relogged(self, path: Path) -> None:
        records = read_records(path.read_bytes())
        keep = []
        for record in records:
            event = self._pb.Event.FromString(record[12:-4])
            pairs = {(v.tag, int(event.step)) for v in event.summary.value} if event.HasField("summary") else set()
            if not pairs or not pairs <= self._relogged:
                keep.append(record)
        if len(keep) < len(records):
            atomic_write_bytes(path, b"".join(keep))

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summary_writer(logdir: str | os.PathLike[str], purge_step: int | None = None) -> EventWriter:
    """A TensorBoard writer for ``logdir`` (see :class:`EventWriter`).

    Args:
        logdir: the folder of the event files.
        purge_step: when resuming, the first step the resumed run logs (see the module docstring).
    """
    return EventWriter(logdir, purge_step)
