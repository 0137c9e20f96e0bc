"""Long-run benchmark (issue 7.6): do step time and memory stay flat over a simulated week?

The command line is ``scripts/bench_longrun.py`` (``python scripts/bench_longrun.py [--days 2]
[--personas 8] [--memory-capacity 256]``); :func:`run` gives the report it prints.

Runs a named simulation in a temporary results folder through the same code as ``ga-simulate``
(checkpoints every ``--checkpoint-every`` steps included) and prints ONE JSON line: per simulated
day the mean, median and 95th-percentile step time (checkpoint steps included), the process's resident memory (RSS) at the end of the
day, the size of the newest checkpoint (its large arrays' completed blocks are shared files in
the run's ``blobs/``, counted in ``blobs_mb``) and the number of memories held by the personas; and the
day-7 / day-1 ratios. The scripted backend is instant, so the figures measure the simulation
itself (memory streams, retrieval, planning, checkpoints), not a language model.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ga_sim.generative import GenerativeDriver
from ga_sim.simulation import Simulation


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux ``/proc``; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memories(sim: Simulation) -> int:
    """Memory nodes held by all personas (0 for a numeric policy)."""
    society = sim.society
    if society.mind != "generative" or not isinstance(society, GenerativeDriver):
        return 0
    return sum(len(a.memory.nodes) for a in society.society.agents)


def run(
    days: int = 7,
    personas: int = 25,
    mind: str = "generative",
    checkpoint_every: int = 10,
    memory_capacity: int | None = None,
    *,
    background_checkpoints: bool = False,
) -> dict[str, Any]:
    """Simulate ``days`` days and measure each; the report ``scripts/bench_longrun.py`` prints as one JSON line.

    Each day's figures are also printed to stderr as one JSON line as soon as the day ends.

    Args:
        days: simulated days.
        personas: personas of the four groups (``env.max_agents``).
        mind: ``generative`` or ``scripted`` (who decides; the LLM backend is always the scripted one).
        checkpoint_every: checkpoint every N steps.
        memory_capacity: memories each persona keeps (None = never forget).
        background_checkpoints: write checkpoints from a forked child process.
    """
    overrides = [
        "env.groups=[artist_collective,research_lab,campaign_team,residents]",
        f"env.max_agents={personas}",
        "llm=scripted",
    ]
    if memory_capacity is not None:
        overrides.append(f"agent.memory_capacity={memory_capacity}")
    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulation.create(
            Path(tmp),
            "longrun",
            overrides,
            start="2023-02-13 00:00",
            stride=10,
            mind=mind,
            checkpoint_every=checkpoint_every,
        )
        sim.background_checkpoints = background_checkpoints
        per_day = 1440 // sim.env.stride
        rows: list[dict[str, Any]] = []
        t_start = time.perf_counter()
        stamps: list[float] = []

        def tick(_: dict[str, Any]) -> None:
            stamps.append(time.perf_counter())

        for day in range(days):
            stamps[:] = [time.perf_counter()]
            sim.run(per_day, progress=False, on_step=tick)
            times = np.diff(stamps)  # (per_day,) wall time of each step, its checkpoint included
            ckpts = sim.store.checkpoints()
            rows.append(
                {
                    "day": day + 1,
                    "step_ms_mean": round(1000 * float(times.mean()), 2),
                    "step_ms_median": round(1000 * float(np.median(times)), 2),
                    "step_ms_p95": round(1000 * float(np.percentile(times, 95)), 2),
                    "rss_mb": round(rss_mb(), 1),
                    "checkpoint_kb": round(ckpts[-1][1].stat().st_size / 1024, 1) if ckpts else 0.0,
                    "blobs_mb": round(sum(b.stat().st_size for b in sim.store.blob_dir.glob("*.npy")) / 2**20, 1),
                    "memories": memories(sim),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        first, last = rows[0], rows[-1]
        report: dict[str, Any] = {
            "bench": "longrun",
            "personas": len(sim.env.personas),
            "mind": mind,
            "llm": "scripted (rule-based, not a language model)",
            "days": days,
            "memory_capacity": memory_capacity,
            "steps": sim.step_count,
            "wall_s": round(time.perf_counter() - t_start, 1),
            "per_day": rows,
            "step_time_ratio_last_first": round(last["step_ms_mean"] / first["step_ms_mean"], 2),
            "median_step_time_ratio_last_first": round(last["step_ms_median"] / first["step_ms_median"], 2),
            "rss_ratio_last_first": round(last["rss_mb"] / first["rss_mb"], 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    return report
