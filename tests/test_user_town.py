"""A user's own town folder drives every command through ``env.town=PATH`` (issue 13)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from conf.compose import compose
from conf.schema import ConfigError

ROOT = Path(__file__).parents[1]


@pytest.fixture
def my_town(tmp_path: Path) -> Path:
    """The packaged town copied to a folder of the user's, with a persona renamed."""
    town = tmp_path / "my_town"
    shutil.copytree(str(resources.files("ga_env") / "data" / "willowbrook"), town)
    personas = town / "personas.yaml"
    text = personas.read_text()
    assert "Isabel Ortiz" in text
    personas.write_text(text.replace("Isabel Ortiz", "Ingrid Osei"))
    return town


def test_config_builds_the_users_town(my_town: Path) -> None:
    cfg = compose([f"env.town={my_town}", "env.max_agents=4", "env.start=2023-03-01 09:30", "env.stride=15"])
    env = cfg.env.make()
    assert env.personas[0].name == "Ingrid Osei"
    assert (env.now.day, env.now.hour, env.now.minute, env.stride) == (1, 9, 30, 15)
    rich = compose([f"env.town={my_town}", "env.action_mode=rich", "env.obs_mode=dict", "env.text_obs=true"]).env.make()
    assert rich.action_mode == "rich" and rich.obs_mode == "dict" and rich.text_obs


def test_bad_env_values_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"env\.start.*Fix: write 'YYYY-MM-DD HH:MM'"):
        compose(["env.start=tuesday"])
    with pytest.raises(ConfigError, match=r"env\.obs_mode.*Fix: use one of box, dict"):
        compose(["env.obs_mode=image"])
    with pytest.raises(ConfigError, match=r"env\.dynamics\.spread: is not a field of DynamicsConfig"):
        compose(["+env.dynamics.spread=0.1"])
    with pytest.raises(ConfigError, match=r"env\.dynamics\.spread_rate"):
        compose(["env.dynamics.spread_rate=fast"])
    assert compose(["env.dynamics.spread_rate=0.2"]).env.make().dynamics.spread_rate == 0.2


def test_missing_town_folder_is_named(tmp_path: Path) -> None:
    import ga_env

    cfg = compose([f"env.town={tmp_path / 'nowhere'}"])
    with pytest.raises(ga_env.TownDataError, match="nowhere"):
        cfg.env.make()


def test_trainer_runs_on_the_users_town(my_town: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "trainers.grpo",
        "+experiment=artists",
        f"env.town={my_town}",
        "trainer.iterations=2",
        "trainer.group_size=2",
        "env.max_cycles=12",
        "trainer.eval_episodes=1",
        "agent.hidden=4",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"town: {my_town}" in (out / "config.yaml").read_text()
    report = json.loads((out / "eval.json").read_text())
    assert set(report["returns"]["trained"]) == {"artist_collective", "residents"}


def test_simulation_runs_on_the_users_town(my_town: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "scripts.simulate",
        "--results",
        str(tmp_path),
        "--name",
        "mine",
        "--mind",
        "scripted",
        "--step",
        "3",
        "--no-progress",
        f"env.town={my_town}",
        "env.max_agents=4",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((tmp_path / "runs" / "mine" / "meta.json").read_text())
    assert meta["personas"][0]["name"] == "Ingrid Osei"
    steps = (tmp_path / "runs" / "mine" / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 3 and "Ingrid Osei" in steps[-1]
    # A resumed run rebuilds the same town from its saved overrides.
    cmd = [*cmd[:7], "--resume", "--step", "2", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((tmp_path / "runs" / "mine" / "steps.jsonl").read_text().splitlines()) == 5
