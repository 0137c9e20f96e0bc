"""Damaged files of a run: shared checkpoint blocks (two copies), corrupt step records, and the
GRPO trainer's checkpoint pair. Each damage is survived where it can be, and otherwise reported
with the file, the problem and a fix that can work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ga_sim.runstore as rs
from ga_env.checkpoint import CheckpointError, load_checkpoint, previous_checkpoint, read_checkpoint, save_checkpoint
from ga_sim.runstore import RunError, RunStore
from ga_sim.simulation import Simulation

SMALL = ["env.groups=[artist_collective,residents]", "env.max_agents=8"]


def _flip(path: Path, at: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def blocky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    """A generative run with many small blocks and checkpoints at steps 10, 15 and 20."""
    monkeypatch.setattr(rs, "BLOB_MIN_BYTES", 1024)
    monkeypatch.setattr(rs, "BLOCK_BYTES", 2048)
    sim = Simulation.create(
        tmp_path, "g", SMALL, start="2023-02-13 07:00", stride=10, mind="generative", seed=3, checkpoint_every=5
    )
    sim.run(20, progress=False)
    assert [s for s, _ in sim.store.checkpoints()] == [10, 15, 20]
    return sim.store


def _shared(store: RunStore) -> str:
    """A block used by every kept checkpoint."""
    common = set.intersection(*(rs.checkpoint_blobs(p) for _, p in store.checkpoints()))
    assert common
    return sorted(common)[0]


def _only_newest(store: RunStore) -> str:
    refs = [rs.checkpoint_blobs(p) for _, p in store.checkpoints()]
    only = sorted(refs[-1] - set().union(*refs[:-1]))
    assert only
    return only[0]


def test_one_damaged_block_file_loses_nothing_and_is_repaired(blocky: RunStore) -> None:
    store = blocky
    digest = _shared(store)
    main, copy = rs.blob_paths(store.blob_dir, digest)
    good = main.read_bytes()
    _flip(main)
    for _, path in store.checkpoints():  # a plain read uses the other copy
        rs.decode_checkpoint(path)
    warnings: list[str] = []
    step, _, used = store.load_latest(warn=warnings.append)
    assert step == 20 and used.name == "ckpt-00000020.npz"
    assert len(warnings) == 1
    assert main.name in warnings[0] and "damaged" in warnings[0] and "resuming from ckpt-00000020.npz" in warnings[0]
    assert main.read_bytes() == good  # rewritten from its copy
    # The same for the copy, for a truncated file, and for a deleted one.
    for damage in (lambda: _flip(copy, 40), lambda: copy.write_bytes(good[:50]), main.unlink):
        damage()
        warnings.clear()
        assert store.load_latest(warn=warnings.append)[0] == 20 and warnings
        assert main.read_bytes() == good and copy.read_bytes() == good


def test_a_block_damaged_in_both_copies_loses_only_the_checkpoints_that_use_it(
    blocky: RunStore, tmp_path: Path
) -> None:
    store = blocky
    digest = _only_newest(store)
    for path in rs.blob_paths(store.blob_dir, digest):
        _flip(path)
    warnings: list[str] = []
    sim = Simulation.resume(tmp_path, "g", checkpoint_every=5, warn=warnings.append)
    assert sim.step_count == 15
    assert len(warnings) == 1
    message = warnings[0]
    assert "ckpt-00000020.npz" in message and digest in message and "no good copy" in message
    assert "resuming from the previous checkpoint ckpt-00000015.npz (step 15)" in message
    assert "deleted" in message  # so that the next checkpoint writes the block again
    assert not any(p.exists() for p in rs.blob_paths(store.blob_dir, digest))
    sim.run(5, progress=False)  # the redone checkpoint of step 20 is whole again
    step, _ = rs.decode_checkpoint(store.checkpoints()[-1][1])
    assert step == 20
    assert all(
        p.exists() for d in rs.checkpoint_blobs(store.checkpoints()[-1][1]) for p in rs.blob_paths(store.blob_dir, d)
    )


def test_a_shared_block_damaged_in_both_copies_names_the_files_and_a_fix(blocky: RunStore) -> None:
    store = blocky
    digest = _shared(store)
    for path in rs.blob_paths(store.blob_dir, digest):
        _flip(path)
    with pytest.raises(RunError) as info:
        store.load_latest(warn=lambda m: None)
    message = str(info.value)
    assert "no readable checkpoint" in message and digest in message
    for step in (10, 15, 20):
        assert f"ckpt-{step:08d}.npz" in message
    assert "Fix: start the run again, or fork another run" in message
    assert "delete it" not in message


def test_a_fork_copies_both_copies_of_its_blocks(blocky: RunStore, tmp_path: Path) -> None:
    _flip(rs.blob_paths(blocky.blob_dir, _shared(blocky))[0])
    fork = Simulation.fork(tmp_path, "f", "g", warn=lambda m: None)
    newest = fork.store.checkpoints()[-1][1]
    for digest in rs.checkpoint_blobs(newest):
        for path in rs.blob_paths(fork.store.blob_dir, digest):
            assert path.exists()
    rs.decode_checkpoint(newest)


def test_a_run_without_block_copies_still_loads_and_gets_them(blocky: RunStore) -> None:
    store = blocky
    for copy in store.blob_dir.glob("*.copy.npy"):
        copy.unlink()  # as written before blocks had copies
    warnings: list[str] = []
    assert store.load_latest(warn=warnings.append)[0] == 20
    assert len(warnings) == 1 and "missing" in warnings[0]  # one line, not one per block
    newest = store.checkpoints()[-1][1]
    assert all(rs.blob_paths(store.blob_dir, d)[1].exists() for d in rs.checkpoint_blobs(newest))


# -- step records -------------------------------------------------------------------------------------------
@pytest.fixture
def stepped(tmp_path: Path) -> RunStore:
    sim = Simulation.create(
        tmp_path, "s", SMALL, start="2023-02-13 07:00", stride=10, mind="scripted", seed=3, checkpoint_every=4
    )
    sim.run(12, progress=False)
    assert [s for s, _ in sim.store.checkpoints()] == [4, 8, 12]
    return sim.store


def _break_line(store: RunStore, number: int) -> None:
    lines = store.steps_path.read_text().splitlines(keepends=True)
    lines[number - 1] = lines[number - 1][:30] + "\n"  # cut inside the record, newline kept
    store.steps_path.write_text("".join(lines))


@pytest.mark.parametrize(
    ("line", "fix"),
    [
        (2, "restore the file from a backup, or start a new run"),  # before every checkpoint
        (7, "delete the checkpoints after step 4 (ckpt-00000008.npz, ckpt-00000012.npz"),
    ],
)
def test_a_corrupt_step_record_names_file_line_and_fix(stepped: RunStore, line: int, fix: str) -> None:
    _break_line(stepped, line)
    with pytest.raises(RunError) as info:
        stepped.steps()
    message = str(info.value)
    assert str(stepped.steps_path) in message and f"line {line}" in message and "not a JSON record" in message
    assert "Fix: " in message and fix in message
    assert " at character " in message  # the parser's reason and where


def test_a_corrupt_record_after_the_newest_checkpoint_is_dropped_by_resume(stepped: RunStore, tmp_path: Path) -> None:
    stepped.append_steps([{"step": 99}])  # a 13th line, complete...
    lines = stepped.steps_path.read_text().splitlines(keepends=True)
    stepped.steps_path.write_text("".join(lines[:12]) + "{oops\n" + lines[12])  # ...after a corrupt one
    with pytest.raises(RunError, match=r"line 13: .*Fix: resume the run \(ga-simulate .*--resume\)"):
        stepped.steps()
    sim = Simulation.resume(tmp_path, "s", warn=lambda m: None)
    assert sim.step_count == 12 and len(sim.store.steps()) == 12


def test_a_torn_last_line_is_skipped_and_dropped_on_resume(stepped: RunStore, tmp_path: Path) -> None:
    whole = stepped.steps()
    with stepped.steps_path.open("a") as f:
        f.write('{"step": 12, "time": "2023-')  # a kill in the middle of an append
    assert stepped.steps() == whole
    Simulation.resume(tmp_path, "s", warn=lambda m: None)
    assert stepped.steps_path.read_text().endswith("\n") and stepped.steps() == whole


def test_cli_readers_report_file_line_and_fix(
    stepped: RunStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.compress import main as compress_main
    from scripts.eval import main as eval_main

    _break_line(stepped, 6)
    for main in (compress_main, eval_main):
        assert main(["--results", str(tmp_path), "--name", "s"]) == 2
        err = capsys.readouterr().err
        assert f"{stepped.steps_path}: line 6: not a JSON record" in err and "Fix: " in err, err
    # A record that is JSON but not a step record of this run (e.g. another run's line).
    lines = stepped.steps_path.read_text().splitlines(keepends=True)
    lines[5] = json.dumps({"step": 5, "time": "x", "personas": {}}) + "\n"
    stepped.steps_path.write_text("".join(lines))
    assert compress_main(["--results", str(tmp_path), "--name", "s"]) == 2
    err = capsys.readouterr().err
    assert "line 6: not a step record of this run" in err and "Fix: " in err


# -- the GRPO trainer's checkpoint and its previous one ---------------------------------------------------------
def _pair(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"iteration": np.array(1), "param/w": np.ones(3)}, "a: 1")
    save_checkpoint(path, {"iteration": np.array(2), "param/w": np.full(3, 2.0)}, "a: 1")
    return path


def test_both_grpo_checkpoints_damaged_names_both_and_a_fix_that_can_work(tmp_path: Path) -> None:
    path = _pair(tmp_path)
    prev = previous_checkpoint(path)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    data = bytearray(prev.read_bytes())
    i = data.find(np.ones(3).tobytes())
    data[i] ^= 0xFF  # a flipped byte in an array
    prev.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert str(path) in message and "truncated or not a checkpoint" in message  # the newest's problem
    assert str(prev) in message  # and the previous one's
    assert "checksum" in message or "truncated" in message.split(str(prev))[1]
    assert "prev.prev" not in message
    assert "Fix: " in message and "start a new run" in message and "another run's checkpoint" in message


def test_no_fix_offers_a_checkpoint_that_does_not_exist(tmp_path: Path) -> None:
    path = _pair(tmp_path)
    prev = previous_checkpoint(path)
    prev.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(prev)  # the previous file itself: there is no older one
    assert "prev.prev" not in str(info.value) and "start a new run" in str(info.value)
    prev.unlink()
    path.write_bytes(b"not a zip either")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "prev" not in str(info.value).split("Fix:")[1] and "start a new run" in str(info.value)
    # With a good previous file, the fix offers it, and loading the run folder uses it.
    (tmp_path / "other").mkdir()
    path2 = _pair(tmp_path / "other")
    path2.write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match=r"Fix: resume from checkpoint\.prev\.npz"):
        read_checkpoint(path2)
    with pytest.warns(UserWarning, match="using the previous checkpoint"):
        assert int(load_checkpoint(path2.parent)[0]["iteration"]) == 1


def test_eval_names_the_line_of_a_record_missing_fields(tmp_path: Path) -> None:
    """``ga-eval`` on a record that is valid JSON but not a step record: file, line and fix."""
    from ga_sim.metrics import run_metrics

    sim = Simulation.create(tmp_path, "m", ["env.max_agents=3"], start="2023-02-13 07:00", stride=10, mind="scripted")
    sim.run(4, progress=False)
    store = RunStore(tmp_path, "m")
    lines = store.steps_path.read_text().splitlines()
    lines[2] = '{"step": 3}'
    store.steps_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=r"steps\.jsonl: line 3: not a step record of this run.*Fix: "):
        run_metrics(store)
