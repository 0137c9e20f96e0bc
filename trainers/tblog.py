"""TensorBoard logging without torch: :func:`summary_writer`."""

from __future__ import annotations

import os
import sys
from typing import Any


def summary_writer(logdir: str | os.PathLike[str]) -> Any:
    """A ``tensorboardX.SummaryWriter`` writing to ``logdir``, imported without torch.

    tensorboardX imports torch at import time whenever it is installed, only to recognise torch
    tensors; we log NumPy values, and the import costs seconds of start-up on every run (and in
    every Ray worker or subprocess test). Hiding torch during that one import keeps the writer
    NumPy-only; torch stays importable afterwards.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter(str(logdir))
