"""Kill and resume the GRPO trainer: SIGKILL at random points, resume, and end with exactly the
parameters of an uninterrupted run, one metrics row and one TensorBoard point per iteration;
damaged checkpoints are detected and the previous one is used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ga_env.checkpoint import CheckpointError, load_checkpoint, previous_checkpoint, read_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "+experiment=artists",
    "env.max_agents=6",
    "env.max_cycles=24",
    "trainer.iterations=8",
    "trainer.group_size=2",
    "trainer.checkpoint_every=1",
    "trainer.eval_every=0",
    "trainer.eval_episodes=1",
    "agent.hidden=8",
]


def _start(run_dir: Path, *extra: str, base: list[str] = TINY) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "trainers.grpo", *base, f"hydra.run.dir={run_dir}", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


def _kill_after(proc: subprocess.Popen[bytes], run: Path, rows: int, delay: float) -> None:
    """SIGKILL once ``metrics.jsonl`` has ``rows`` rows, ``delay`` seconds later."""
    deadline = time.monotonic() + 240
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            break
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _tensorboard_scalars(run: Path) -> dict[str, list[int]]:
    """Steps of every scalar tag, as TensorBoard reads the run's event files (restarts purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_one_point_per_iteration(run: Path, iterations: int = 8) -> None:
    scalars = _tensorboard_scalars(run)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    per_iteration = set(first) - {"iteration", "env_seed"}
    assert per_iteration and per_iteration <= scalars.keys()
    for tag in per_iteration:
        assert scalars[tag] == list(range(1, iterations + 1)), f"{tag}: {scalars[tag]}"
    for tag, steps in scalars.items():  # the final evaluation's tags: one point each, at the end
        assert len(steps) == len(set(steps)), f"{tag}: {steps}"


def _params(path: Path) -> dict[str, np.ndarray]:
    arrays = read_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.split("/")[0] in ("param", "ref", "adam_m", "adam_v")}


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("straight")
    _finish(_start(run))
    return run


@pytest.mark.timeout(900)
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_parameters(
    straight: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    expected = _params(straight / "checkpoint.npz")
    trials = 5
    for trial in range(trials):
        run = tmp_path / f"trial{trial}"
        proc = _start(run)
        # Kill once the run has made some progress: after a random number of checkpointed
        # iterations, plus a random delay that lands anywhere inside the next iteration.
        _kill_after(proc, run, int(rng.integers(1, 6)), float(rng.uniform(0.0, 0.3)))
        # Nothing half-written: the checkpoint (and the previous one) load and verify.
        ckpt = run / "checkpoint.npz"
        assert ckpt.exists(), "killed before the first checkpoint"
        arrays = read_checkpoint(ckpt)
        if previous_checkpoint(ckpt).exists():
            read_checkpoint(previous_checkpoint(ckpt))
        done = int(arrays["iteration"])
        _finish(_start(run, f"trainer.resume={ckpt}"))
        got = _params(run / "checkpoint.npz")
        assert got.keys() == expected.keys()
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"trial {trial} (killed after {done}): {k}")
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in rows] == list(range(1, 9)), "metrics lost or duplicated"
        _assert_one_point_per_iteration(run)


@pytest.mark.timeout(600)
def test_two_kills_and_resumes_leave_one_tensorboard_point_per_iteration(tmp_path: Path) -> None:
    """Checkpoints every 3 iterations; killed after logging iteration 4, resumed from 3, killed after
    logging iteration 7, resumed from 6: TensorBoard shows each scalar once per iteration (the
    killed runs' points after their checkpoint are purged), and nothing logged before a checkpoint
    is lost (events are written synchronously)."""
    # Longer episodes (about 0.2 s per iteration): a kill as soon as the row appears lands well
    # before the next checkpoint.
    slower = [a for a in TINY if not a.startswith(("env.max_cycles=", "trainer.checkpoint_every="))]
    slower += ["env.max_cycles=288", "trainer.checkpoint_every=3"]
    run = tmp_path / "run"
    ckpt = run / "checkpoint.npz"
    _kill_after(_start(run, base=slower), run, 4, 0.0)
    first = int(read_checkpoint(ckpt)["iteration"])
    _kill_after(_start(run, f"trainer.resume={ckpt}", base=slower), run, 7, 0.0)
    second = int(read_checkpoint(ckpt)["iteration"])
    assert (first, second) == (3, 6), "killed later than meant (a very loaded machine?)"
    _finish(_start(run, f"trainer.resume={ckpt}", base=slower))
    assert len(list((run / "tb").iterdir())) == 3  # one event file per process
    _assert_one_point_per_iteration(run)


@pytest.mark.timeout(600)
def test_killed_during_the_final_evaluation_keeps_one_point_per_tag(tmp_path: Path) -> None:
    """Killed after the last checkpoint, while the final evaluation is being logged: the resumed run
    logs it again at the same step, and its points replace the killed run's."""
    run = tmp_path / "run"
    ckpt = run / "checkpoint.npz"
    proc = _start(run)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        files = list((run / "tb").glob("events.out.tfevents.*")) if (run / "tb").is_dir() else []
        if files and b"eval/" in files[0].read_bytes():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert int(read_checkpoint(ckpt)["iteration"]) == 8
    _finish(_start(run, f"trainer.resume={ckpt}"))
    scalars = _tensorboard_scalars(run)
    assert scalars["eval/artist_collective/trained"] == [8]
    _assert_one_point_per_iteration(run)


def test_damaged_checkpoint_is_detected_and_the_previous_one_used(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"iteration": np.array(1), "param/w": np.ones(3)}, "a: 1")
    save_checkpoint(path, {"iteration": np.array(2), "param/w": np.full(3, 2.0)}, "a: 1")
    assert int(read_checkpoint(previous_checkpoint(path))["iteration"]) == 1

    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"checkpoint\.npz: file: is truncated .*Fix: resume from"):
        read_checkpoint(path)
    with pytest.warns(UserWarning, match="using the previous checkpoint"):
        arrays, used = load_checkpoint(path)
    assert used == previous_checkpoint(path) and int(arrays["iteration"]) == 1

    # A flipped byte inside an array: caught by the zip CRC or the stored SHA-256.
    data = bytearray(good)
    i = data.find(np.full(3, 2.0).tobytes())
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    with pytest.warns(UserWarning):
        assert int(load_checkpoint(tmp_path)[0]["iteration"]) == 1  # a run folder works too

    previous_checkpoint(path).unlink()
    with pytest.raises(CheckpointError, match="Fix: "):
        load_checkpoint(path)
