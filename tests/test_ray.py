"""Ray rollouts (trainer.rollout.backend=ray) train exactly the in-process run's parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from conf.schema import Config, ConfigError, register_configs, to_config
from trainers.grpo import train

ray = pytest.importorskip("ray")

# 3 rollouts over 2 workers: an uneven split (2 + 1), batched on one worker, a single env on the other.
TINY = [
    "+experiment=artists",
    "trainer.iterations=2",
    "trainer.group_size=3",
    "env.max_cycles=16",
    "trainer.eval_episodes=1",
    "trainer.eval_every=0",
    "agent.hidden=4",
]


def _compose(overrides: list[str]) -> Config:
    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        return to_config(compose(config_name="config", overrides=overrides))


def _train_in_process_and_on_ray(tmp_path: Path, overrides: list[str]) -> tuple[Path, Path]:
    """Train the same config in-process, then on 2 Ray workers; returns both run folders."""
    local, remote = tmp_path / "inprocess", tmp_path / "ray"
    train(_compose(overrides), local)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        train(_compose([*overrides, "trainer.rollout.backend=ray", "trainer.rollout.num_workers=2"]), remote)
        assert ray.is_initialized()  # a runtime the caller started is left running
    finally:
        ray.shutdown()
    return local, remote


def test_ray_backend_trains_the_same_parameters_as_in_process(tmp_path: Path) -> None:
    local, remote = _train_in_process_and_on_ray(tmp_path, TINY)
    a, b = np.load(local / "checkpoint.npz"), np.load(remote / "checkpoint.npz")
    keys = [k for k in a.files if k.startswith(("param/", "adam_"))]
    assert keys
    for key in keys:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    init = np.load(local / "checkpoint.npz")["ref/w1"]
    assert not np.array_equal(a["param/w1"], init)  # training moved the parameters


def test_rollout_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.rollout\.backend.*Fix: use one of inprocess, ray"):
        _compose(["trainer.rollout.backend=spark"])
    with pytest.raises(ConfigError, match=r"trainer\.rollout\.num_workers"):
        _compose(["trainer.rollout.num_workers=0"])


def test_ray_backend_with_the_llm_policy_counts_the_workers_llm_usage(tmp_path: Path) -> None:
    import json

    ns = [*TINY, "agent=neurosymbolic", "llm=scripted", "agent.hidden=4", "env.max_agents=4"]
    local, remote = _train_in_process_and_on_ray(tmp_path, ns)
    a, b = np.load(local / "checkpoint.npz"), np.load(remote / "checkpoint.npz")
    for key in [k for k in a.files if k.startswith("param/")]:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # The LLM decisions made on the Ray workers are counted, and only this run's (the process's
    # shared backend already served the in-process run): the same requests as in-process.
    ua, ub = (json.loads((d / "llm_usage.json").read_text()) for d in (local, remote))
    assert ua["requests"] > 0 and ua["requests_by_kind"] == ub["requests_by_kind"]
    rows = [json.loads(line) for line in (remote / "metrics.jsonl").read_text().splitlines()]
    assert 0 < rows[0]["llm/requests"] < rows[-1]["llm/requests"] <= ub["requests"]
