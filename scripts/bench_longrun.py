"""Long-run benchmark (issue 7.6): do step time and memory stay flat over a simulated week?

    python scripts/bench_longrun.py                  # 7 days, 25 personas, generative minds, scripted backend
    python scripts/bench_longrun.py --days 2 --personas 8
    python scripts/bench_longrun.py --memory-capacity 256   # personas forget beyond 256 memories each

Runs a named simulation in a temporary results folder through the same code as ``ga-simulate``
(checkpoints every ``--checkpoint-every`` steps included) and prints ONE JSON line: per simulated
day the mean, median and 95th-percentile step time (checkpoint steps included), the process's resident memory (RSS) at the end of the
day, the size of the newest checkpoint (its large arrays' completed blocks are shared files in
the run's ``blobs/``, counted in ``blobs_mb``) and the number of memories held by the personas; and the
day-7 / day-1 ratios. The scripted backend is instant, so the figures measure the simulation
itself (memory streams, retrieval, planning, checkpoints), not a language model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from a checkout

import numpy as np

from scripts.simulate import Simulation


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux ``/proc``; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memories(sim: Simulation) -> int:
    """Memory nodes held by all personas (0 for a numeric policy)."""
    if sim.society.mind != "generative":
        return 0
    return sum(len(a.memory.nodes) for a in sim.society.society.agents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--personas", type=int, default=25)
    parser.add_argument("--mind", default="generative", choices=("generative", "scripted"))
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument(
        "--memory-capacity", type=int, default=None, help="memories each persona keeps (default: never forget)"
    )
    parser.add_argument(
        "--background-checkpoints", action="store_true", help="write checkpoints from a forked child process"
    )
    args = parser.parse_args(argv)
    overrides = [
        "env.groups=[artist_collective,research_lab,campaign_team,residents]",
        f"env.max_agents={args.personas}",
        "llm=scripted",
    ]
    if args.memory_capacity is not None:
        overrides.append(f"agent.memory_capacity={args.memory_capacity}")
    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulation.create(
            Path(tmp),
            "longrun",
            overrides,
            start="2023-02-13 00:00",
            stride=10,
            mind=args.mind,
            checkpoint_every=args.checkpoint_every,
        )
        sim.background_checkpoints = args.background_checkpoints
        per_day = 1440 // sim.env.stride
        days = []
        t_start = time.perf_counter()
        stamps: list[float] = []

        def tick(_: dict[str, Any]) -> None:
            stamps.append(time.perf_counter())

        for day in range(args.days):
            stamps[:] = [time.perf_counter()]
            sim.run(per_day, progress=False, on_step=tick)
            times = np.diff(stamps)  # (per_day,) wall time of each step, its checkpoint included
            ckpts = sim.store.checkpoints()
            days.append(
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
            print(json.dumps(days[-1]), file=sys.stderr, flush=True)
        first, last = days[0], days[-1]
        report = {
            "bench": "longrun",
            "personas": len(sim.env.personas),
            "mind": args.mind,
            "llm": "scripted (rule-based, not a language model)",
            "days": args.days,
            "memory_capacity": args.memory_capacity,
            "steps": sim.step_count,
            "wall_s": round(time.perf_counter() - t_start, 1),
            "per_day": days,
            "step_time_ratio_last_first": round(last["step_ms_mean"] / first["step_ms_mean"], 2),
            "median_step_time_ratio_last_first": round(last["step_ms_median"] / first["step_ms_median"], 2),
            "rss_ratio_last_first": round(last["rss_mb"] / first["rss_mb"], 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
