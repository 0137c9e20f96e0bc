"""Named runs: create, exact resume (also after SIGKILL), fork, corrupt checkpoints, bad names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ga_sim.runstore import RunError, RunStore, decode_checkpoint, encode_checkpoint, pack, unpack, validate_name
from ga_sim.simulation import Simulation
from scripts.simulate import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["env.groups=[artist_collective,residents]", "env.max_agents=8"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _create(results: Path, name: str, mind: str = "scripted", every: int = 10) -> Simulation:
    return Simulation.create(
        results, name, SMALL, start="2023-02-13 07:00", stride=10, mind=mind, seed=3, checkpoint_every=every
    )


def test_pack_round_trip() -> None:
    tree: dict[str, Any] = {
        "a": np.arange(3),
        "b": [1, "x", None, (2, np.float64(1.5))],
        "c": {"d": np.zeros((2, 2), np.int8)},
    }
    text, arrays = pack(tree)
    back: dict[str, Any] = unpack(text, arrays)
    assert back["b"] == [1, "x", None, [2, 1.5]]  # JSON rules: a tuple comes back as a list
    np.testing.assert_array_equal(back["c"]["d"], tree["c"]["d"])
    assert back["c"]["d"].dtype == np.int8
    with pytest.raises(TypeError, match="cannot checkpoint"):
        pack({"x": object()})


@pytest.mark.parametrize("mind", ["scripted", "random", "generative", "generative-forgetting"])
def test_resume_is_exact(tmp_path: Path, mind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if mind == "generative-forgetting":  # personas with a bounded memory (forgetting runs several times)
        mind = "generative"
        monkeypatch.setattr(sys.modules[__name__], "SMALL", [*SMALL, "agent.memory_capacity=64"])
    forgetting = "agent.memory_capacity=64" in SMALL
    total = 130 if forgetting else 50
    full = _create(tmp_path, "full", mind)
    full.run(total, progress=False)
    part = _create(tmp_path, "part", mind, every=7)
    part.run(total - 27, progress=False)  # steps after the last checkpoint are redone
    resumed = Simulation.resume(tmp_path, "part", warn=lambda m: None)
    assert resumed.step_count == (total - 27) // 7 * 7
    if forgetting:
        assert sum(a.memory.forgotten for a in resumed.society.society.agents) > 0  # forgot before the checkpoint
    resumed.run(total - resumed.step_count, progress=False)
    assert full.store.steps() == resumed.store.steps()
    assert len(resumed.store.steps()) == total
    np.testing.assert_array_equal(full.env.aware, resumed.env.aware)
    assert full.env.np_random.bit_generator.state == resumed.env.np_random.bit_generator.state


def test_records_have_what_the_replay_needs(tmp_path: Path) -> None:
    sim = _create(tmp_path, "rec")
    sim.run(12, progress=False)
    meta = sim.store.meta()
    assert meta["map"]["width"] == sim.env.town_map.width and len(meta["personas"]) == 8
    steps = sim.store.steps()
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert steps[0]["time"] == "2023-02-13T07:00" and steps[1]["time"] == "2023-02-13T07:10"
    rec = steps[-1]["personas"]["Isabel Ortiz"]
    assert set(rec) >= {"tile", "place", "action", "emoji", "description", "utterance", "partner"}
    chats = [p for r in steps for p in r["personas"].values() if p["action"] == "chat" and p["partner"]]
    assert chats and all(p["utterance"] for p in chats)
    assert set(steps[-1]["groups"]) == {"artist_collective", "residents"}


def test_corrupt_newest_checkpoint_falls_back(tmp_path: Path) -> None:
    sim = _create(tmp_path, "c", every=5)
    sim.run(15, progress=False)
    ckpts = sim.store.checkpoints()
    assert [s for s, _ in ckpts] == [5, 10, 15]
    newest = ckpts[-1][1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    with pytest.raises(RunError, match="corrupt or truncated"):
        decode_checkpoint(newest)
    warnings: list[str] = []
    resumed = Simulation.resume(tmp_path, "c", warn=warnings.append)
    assert resumed.step_count == 10 and "ckpt-00000015.npz" in warnings[0] and "previous" in warnings[0]
    # A flipped byte anywhere is caught (zip CRC, npy header, or the state's SHA-256), never loaded.
    good = encode_checkpoint({"x": 1, "y": np.arange(50)}, 3)
    bad = tmp_path / "bad.npz"
    for k in range(0, len(good), max(1, len(good) // 97)):
        data = bytearray(good)
        data[k] ^= 0x5A
        bad.write_bytes(bytes(data))
        try:
            step, state = decode_checkpoint(bad)
        except RunError as e:
            assert "bad.npz" in str(e)
        else:  # only bytes that no reader looks at (e.g. zip comments, timestamps) may pass
            assert step == 3 and state["x"] == 1 and list(state["y"]) == list(range(50))


def test_large_arrays_go_to_shared_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ga_sim.runstore as rs

    monkeypatch.setattr(rs, "BLOB_MIN_BYTES", 1024)
    monkeypatch.setattr(rs, "BLOCK_BYTES", 2048)
    sim = _create(tmp_path, "g", "generative", every=5)
    sim.run(20, progress=False)
    store = sim.store
    blobs = sorted(p.name for p in store.blob_dir.iterdir())
    assert blobs and all(p.endswith(".npy") for p in blobs)
    refs = [rs.checkpoint_blobs(p) for _, p in store.checkpoints()]
    # A later checkpoint reuses the earlier blocks: all but those of the few arrays that changed
    # (Town-v1's behaviour counters: actions by time of day, talks per pair today).
    assert refs[0] and len(refs[0] & refs[-1]) >= len(refs[0]) - 2
    # Every referenced block has its two copies, and nothing unreferenced is kept.
    assert sorted(blobs) == sorted(f"{d}{ext}" for d in set().union(*refs) for ext in (".npy", ".copy.npy"))
    # Resume through the blocks is exact.
    full = _create(tmp_path, "g_full", "generative", every=0)
    full.run(25, progress=False)
    full.save()
    resumed = Simulation.resume(tmp_path, "g", warn=lambda m: None)
    resumed.run(5, progress=False)
    assert resumed.store.steps() == full.store.steps()
    # A damaged block is detected; with both copies damaged, the checkpoints that need it are
    # skipped with a clear message (one damaged copy only: tests/test_storage_faults.py).
    newest = store.checkpoints()[-1][1]
    only_newest = sorted(rs.checkpoint_blobs(newest) - set().union(*refs[:-1]))
    digest = (only_newest or sorted(refs[-1]))[-1]
    for victim in rs.blob_paths(store.blob_dir, digest):
        data = bytearray(victim.read_bytes())
        data[-1] ^= 0xFF
        victim.write_bytes(bytes(data))
    with pytest.raises(RunError, match="block"):
        rs.decode_checkpoint(newest)
    warnings: list[str] = []
    store.load_latest(warn=warnings.append)
    assert warnings and "block" in warnings[0] and "resuming from" in warnings[0]
    # A fork copies the blocks it needs.
    fork = Simulation.fork(tmp_path, "g_fork", "g_full", warn=lambda m: None)
    assert fork.step_count == 25 and any(fork.store.blob_dir.iterdir())


def test_block_digests_are_remembered_only_for_read_only_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ga_sim.runstore as rs

    monkeypatch.setattr(rs, "BLOB_MIN_BYTES", 64)
    monkeypatch.setattr(rs, "BLOCK_BYTES", 64)
    base = np.arange(64, dtype=np.float64).reshape(32, 2)
    frozen = base[:24].view()
    frozen.flags.writeable = False
    rs.encode_checkpoint({"a": frozen}, 1, tmp_path)
    first = set(tmp_path.iterdir())
    rs.encode_checkpoint({"a": frozen}, 2, tmp_path)
    assert set(tmp_path.iterdir()) == first  # the same blocks, nothing new
    writeable = base.copy()
    rs.encode_checkpoint({"a": writeable}, 3, tmp_path)
    writeable[0, 0] = -1.0  # changed in place: must be hashed again, not served from memory
    data = rs.encode_checkpoint({"a": writeable}, 4, tmp_path)
    (tmp_path / "ck").mkdir()
    ckpt = tmp_path / "ck" / "x.npz"
    ckpt.write_bytes(data)
    _, state = rs.decode_checkpoint(ckpt, blob_dir=tmp_path)
    np.testing.assert_array_equal(state["a"], writeable)


def test_fork_starts_from_the_other_run(tmp_path: Path) -> None:
    base = _create(tmp_path, "base")
    base.run(20, progress=False)
    fork = Simulation.fork(tmp_path, "fork", "base", warn=lambda m: None)
    assert fork.step_count == 20 and fork.store.meta()["forked_from"] == ["base", 20]
    fork.run(10, progress=False)
    base.run(10, progress=False)
    assert fork.store.steps() == base.store.steps()  # same seed, same mind: the same future


def test_names_and_arguments_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("../x", "a/b", "/etc", "..", "", ".hidden", "a..b", "x" * 101):
        with pytest.raises(RunError, match="not a valid run name"):
            validate_name(bad)
    assert main(["--results", str(tmp_path), "--name", "../../x", "--step", "1"]) == 2
    assert "not a valid run name" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--name", "nope", "--resume"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--name", "s", "--start", "monday", "--mind", "scripted"]) == 2
    assert "--start" in capsys.readouterr().err
    _create(tmp_path, "dup")
    with pytest.raises(RunError, match="already exists"):
        _create(tmp_path, "dup")
    assert main(["--results", str(tmp_path), "--name", "dup", "--resume", "env.max_agents=3"]) == 2
    assert "keeps its own configuration" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--name", "o1", "env.bogus=1"]) == 2
    assert "overrides: Could not override 'env.bogus'" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--name", "o2", "env.max_agents=abc"]) == 2
    assert "could not be converted to Integer" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--name", "o3", "env.groups=[nobody]", "--mind", "scripted"]) == 2
    assert "groups" in capsys.readouterr().err


def test_trained_policy_checkpoint(tmp_path: Path) -> None:
    from agents import SoftmaxPolicy
    from ga_sim.simulation import compose_config, load_trained_policy, make_env

    cfg = compose_config(SMALL)
    env = make_env(cfg, "2023-02-13 07:00", 10)
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=16, rng=np.random.default_rng(1))
    ckpt = tmp_path / "checkpoint.npz"
    arrays: dict[str, Any] = {f"param/{k}": v for k, v in policy.params.items()}
    np.savez(ckpt, **arrays)
    # agent.checkpoint=PATH alone picks the trained mind (no --mind needed).
    sim = Simulation.create(
        tmp_path, "trained", [*SMALL, f"agent.checkpoint={ckpt}"], start="2023-02-13 07:00", stride=10
    )
    assert sim.meta["mind"] == "trained"
    sim.run(5, progress=False)
    loaded = load_trained_policy(ckpt, env, np.random.default_rng(0))
    np.testing.assert_array_equal(loaded.params["w2"], policy.params["w2"])
    other = make_env(compose_config(["env.groups=[research_lab]"]), "2023-02-13 07:00", 10)
    with pytest.raises(RunError, match="does not fit this town"):
        load_trained_policy(ckpt, other, np.random.default_rng(0))


def _wait_for_checkpoint(store: RunStore, proc: subprocess.Popen[bytes], min_step: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(s >= min_step for s, _ in store.checkpoints()):
            return
        time.sleep(0.02)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Kill a real simulate process (generative personas, scripted backend) with SIGKILL at random
    points (5 trials); resume; the run equals an uninterrupted one."""
    total = 36
    args = [sys.executable, "-m", "scripts.simulate", "--results", str(tmp_path), "--no-progress"]
    subprocess.run([*args, "--name", "ref", "--step", str(total), *SMALL], check=True, env=_env(), cwd=ROOT)
    reference = RunStore(tmp_path, "ref").steps()
    rng = np.random.default_rng(7)
    for trial in range(5):
        name = f"killed{trial}"
        store = RunStore(tmp_path, name)
        proc = subprocess.Popen(
            [*args, "--name", name, "--step", str(total), "--checkpoint-every", "3", *SMALL], env=_env(), cwd=ROOT
        )
        _wait_for_checkpoint(store, proc, int(rng.integers(3, 30)))
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        survived = max((s for s, _ in store.checkpoints()), default=0)
        subprocess.run(
            [*args, "--name", name, "--resume", "--until", str(total)],
            check=True,
            env=_env(),
            cwd=ROOT,
        )
        assert store.steps() == reference, f"trial {trial}: killed after checkpoint {survived}"
        for _, path in store.checkpoints():
            decode_checkpoint(path)  # never half-written
        assert not list(store.ckpt_dir.glob(".ckpt-*.tmp"))
