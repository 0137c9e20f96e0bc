"""Exact resume of the generative personas' FULL state, not only of their step records.

A resumed run must be the uninterrupted run: every persona's memory (nodes, embeddings, access
times and their order), schedule, scratch and lessons, the society's generator, the env's exact
state and the LLM usage meter, bit for bit. Equal step records are not enough: retrieval
marks memories accessed, and a last-bit difference in a score (e.g. a cache rebuilt in one pass
after a load while the uninterrupted run filled it a few rows at a time) breaks a near-tie the
other way, so another memory is marked accessed; the records agree for a while, the prompts of
a real LLM do not (other memories shown, cache misses).

Run as a module, this file measures SIGKILL + resume trials of real ``scripts.simulate``
processes (generative personas, ``scripted`` backend) against an uninterrupted run::

    python -m tests.test_exact_resume --trials 5                                # the test's small town
    python -m tests.test_exact_resume --trials 5 --total 200 llm=scripted       # the default town, 15 personas
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ga_sim.runstore import RunStore
from ga_sim.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["env.groups=[artist_collective,residents]", "env.max_agents=4", "llm=scripted"]
"""Four personas: their first reflection comes at step 103 (seed 0); a new hour's plan every 6 steps."""
TOTAL = 106
CUTS = (7, 50, 102)
"""Resume points: after the first hour's plan, mid-morning, and the step before the first reflections."""
START = "2023-02-13 07:00"


def differences(a: Any, b: Any, path: str = "state") -> list[str]:
    """Where two state trees differ: arrays by shape, dtype and bytes; floats by their bits; lists in order.

    Dicts are compared as mappings: a checkpoint stores their keys sorted, so a resumed state's
    dicts come back in another insertion order; where that order means something, the state
    records it in a list (e.g. the spatial memory's ``order``).
    """
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))} in only one"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [f"{path}: {type(a).__name__}[{len(a)}] != {type(b).__name__}[{len(b)}]"]
        return [d for k, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{k}]")]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or x.dtype != y.dtype:
            return [f"{path}: array {x.dtype}{x.shape} != {y.dtype}{y.shape}"]
        if x.tobytes() != y.tobytes():
            where = np.argwhere(x != y)[:3].tolist() if x.dtype != object else "?"
            return [f"{path}: arrays differ (first at {where})"]
        return []
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    if type(a) is not type(b) or a != b:
        return [f"{path}: {str(a)[:80]!r} != {str(b)[:80]!r}"]
    return []


def assert_same_state(expected: Any, actual: Any, what: str) -> None:
    diffs = differences(expected, actual)
    assert not diffs, f"{what}: {len(diffs)} difference(s), e.g. " + "; ".join(diffs[:5])


def full_state(sim: Simulation) -> dict[str, Any]:
    """The driver's whole state: ``t``, the env, every mind (``minds``) and the LLM usage meter (a copy)."""
    return copy.deepcopy(sim.society.state_dict())


def _create(results: Path, name: str) -> Simulation:
    return Simulation.create(results, name, SMALL, start=START, stride=10, mind="generative", checkpoint_every=0)


def test_resume_at_several_points_equals_uninterrupted(tmp_path: Path) -> None:
    full = _create(tmp_path, "full")
    snapshots: dict[int, dict[str, Any]] = {}

    def snap(record: dict[str, Any]) -> None:
        if full.step_count in CUTS:
            snapshots[full.step_count] = full_state(full)

    full.run(TOTAL, progress=False, on_step=snap)
    reference = full_state(full)
    minds = full.society.society.agents
    assert any(n.evidence for a in minds for n in a.memory.of_kind("thought")), "no reflection in the run"
    assert all(a.scratch.hourly and a.scratch.steps for a in minds), "no plan in the run"

    part = _create(tmp_path, "part")
    for cut in CUTS:  # run to the cut, checkpoint, resume in a new Simulation: three resumes in a row
        part.run(cut - part.step_count, progress=False)
        part.save()
        part = Simulation.resume(tmp_path, "part", checkpoint_every=0, warn=lambda m: None)
        assert part.step_count == cut
        assert_same_state(snapshots[cut], full_state(part), f"just resumed at step {cut}")
    part.run(TOTAL - part.step_count, progress=False)
    assert part.store.steps() == full.store.steps()
    assert_same_state(reference, full_state(part), f"at step {TOTAL} after resumes at {CUTS}")
    # The caches the state does not hold: rebuilt in one pass after the last resume, grown a few rows
    # a step in the uninterrupted run, the same bits (a last-bit difference flips near-ties of retrieval).
    assert_same_state(task_caches(full), task_caches(part), "task-resonance caches")


def task_caches(sim: Simulation) -> dict[str, Any]:
    """Every persona's task-resonance cache (similarity of each memory to its group's task)."""
    out = {}
    for a in sim.society.society.agents:
        # grown to the memories added since the last retrieval (a resumed mind may not have retrieved yet)
        a.memory._task_similarity(a.memory.embedder.embed([a.persona.task])[-1])
        cache = a.memory._task_cache
        assert cache is not None and len(cache[1]) == len(a.memory), a.name
        out[a.name] = [cache[0].copy(), cache[1].copy()]
    return out


# -- SIGKILL + resume of real processes -----------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _simulate(results: Path) -> list[str]:
    return [sys.executable, "-m", "scripts.simulate", "--results", str(results), "--no-progress"]


def _start(argv: list[str], store: RunStore) -> subprocess.Popen[bytes]:
    """Start a ``scripts.simulate`` process; return once its run exists (its step 0 is being checkpointed)."""
    proc = subprocess.Popen(argv, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL)
    while proc.poll() is None and not any(s == 0 for s, _ in store.checkpoints()):
        time.sleep(0.01)
    return proc


def _final_state(results: Path, name: str) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    store = RunStore(results, name)
    step, state, _ = store.load_latest(warn=lambda m: None)
    return step, state["society"], store.steps()


def kill_and_resume_trials(
    results: Path, trials: int, total: int = TOTAL, *, seed: int = 11, overrides: Sequence[str] = tuple(SMALL)
) -> list[dict[str, Any]]:
    """``trials`` runs of ``total`` steps, each SIGKILLed at a random moment then resumed to ``total``.

    Each run checkpoints every 3 steps; it is killed at a random time between its step-0
    checkpoint and 90% of the uninterrupted run's duration from there, then resumed
    with ``--resume --until total``. Returns one dict per trial: where it was killed (steps
    recorded, last checkpoint), the timings and the differences of its final full state and step
    records from the uninterrupted run's.
    """
    results.mkdir(parents=True, exist_ok=True)
    args = _simulate(results)
    ref = _start(
        [*args, "--name", "ref", "--step", str(total), "--mind", "generative", *overrides], RunStore(results, "ref")
    )
    t0 = time.monotonic()
    if ref.wait() != 0:
        raise RuntimeError(f"the uninterrupted run failed (exit code {ref.returncode})")
    run_seconds = time.monotonic() - t0  # from its step-0 checkpoint to its exit
    ref_step, ref_state, ref_steps = _final_state(results, "ref")
    assert ref_step == total
    rng = np.random.default_rng(seed)
    out = []
    for trial in range(trials):
        name = f"killed{trial}"
        store = RunStore(results, name)
        proc = _start(
            [
                *args,
                "--name",
                name,
                "--step",
                str(total),
                "--checkpoint-every",
                "3",
                "--mind",
                "generative",
                *overrides,
            ],
            store,
        )
        started = time.monotonic()
        delay = float(rng.uniform(0.0, 0.9 * run_seconds))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        killed_at = time.monotonic() - started
        recorded = len(store.steps()) if store.steps_path.exists() else 0
        survived = max((s for s, _ in store.checkpoints()), default=-1)
        subprocess.run(
            [*args, "--name", name, "--resume", "--until", str(total)],
            check=True,
            env=_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        step, state, steps = _final_state(results, name)
        diffs = differences(ref_state, state) if step == total else [f"final checkpoint at step {step}"]
        out.append(
            {
                "trial": trial,
                "killed_after_s": round(killed_at, 2),
                "killed_by_signal": proc.returncode == -signal.SIGKILL,
                "steps_recorded_at_kill": recorded,
                "last_checkpoint_at_kill": survived,
                "state_differences": diffs,
                "steps_equal": steps == ref_steps,
            }
        )
    return out


def test_sigkill_then_resume_full_state(tmp_path: Path) -> None:
    """Two SIGKILL + resume trials of real processes: final full state equal to an uninterrupted run's."""
    for trial in kill_and_resume_trials(tmp_path, trials=2, total=40):
        assert trial["steps_equal"], trial
        assert not trial["state_differences"], trial


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIGKILL + resume trials with full-state comparison")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--total", type=int, default=TOTAL)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--results", default=None, help="folder of the runs (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", default=SMALL, help=f"Hydra overrides (default: {' '.join(SMALL)})")
    args = parser.parse_args(argv)
    import tempfile

    results = Path(args.results) if args.results else Path(tempfile.mkdtemp(prefix="exact-resume-"))
    trials = kill_and_resume_trials(results, args.trials, args.total, seed=args.seed, overrides=args.overrides)
    for t in trials:
        print(
            f"trial {t['trial']}: killed after {t['killed_after_s']} s (SIGKILL: {t['killed_by_signal']}), "
            f"{t['steps_recorded_at_kill']} steps recorded, last checkpoint {t['last_checkpoint_at_kill']}; "
            f"steps equal: {t['steps_equal']}; full-state differences: {len(t['state_differences'])}"
            + (f" ({'; '.join(t['state_differences'][:3])})" if t["state_differences"] else "")
        )
    exact = sum(t["steps_equal"] and not t["state_differences"] for t in trials)
    print(f"{exact}/{len(trials)} resumed runs equal the uninterrupted run in full state (results in {results})")
    return 0 if exact == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
