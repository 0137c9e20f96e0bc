"""Reward-to-prompt lessons: ranked by group-relative advantage, quartile contrast with counts and
an uncertainty bar, at most one lesson per persona, stored in the checkpoint, TensorBoard and lessons.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hydra import compose, initialize_config_module

import ga_env
from conf.schema import Config, register_configs, to_config
from ga_env.personas import Group
from trainers.grpo import train
from trainers.grpo_math import group_advantages
from trainers.lessons import KIND_NAMES, make_lessons, place_kinds, step_blocks

MOVE, CHAT, TASK = 0, 1, 2
HOME, TASK_SITE, RESEARCH_SITE, SOCIAL, STREET = range(5)
PLACES = ["Home:bed", "Gallery:studio", "Library:reading room", "Cafe:dining area", "Main street"]
GROUP = Group(
    name="artist_collective",
    description="Artists.",
    cause="the spring exhibition",
    objective={"awareness": 10.0, "task_progress": 1.0},
    individual_share=0.5,
    task_sites=("Gallery:studio",),
)
G, T, N = 8, 24, 4
BLOCKS = np.array([1] * 12 + [2] * 12)  # 12 morning steps, then 12 afternoon steps
KINDS = np.tile(np.arange(5), (N, 1))  # place p is of kind p for everyone


def _episode(actions: npt.NDArray[np.int64], places: npt.NDArray[np.int64], rewards: npt.NDArray[np.float64]) -> dict:
    adv, _ = group_advantages(rewards.sum(1), G)
    return {"actions": actions, "place_idx": places, "rewards": rewards, "advantages": adv}


def _lessons(names: list[str], ep: dict, top_k: int = 3) -> list[str]:
    return make_lessons(names=names, group=GROUP, places=PLACES, kinds=KINDS, blocks=BLOCKS, top_k=top_k, **ep)


def _working_days() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Everyone works at the task site all day."""
    return np.full((G, T, N), TASK), np.full((G, T, N), TASK_SITE)


def test_ranking_uses_advantages_not_raw_returns() -> None:
    actions, places = _working_days()
    rewards = np.zeros((G, T, N))
    rewards[:, 0, 0] = 100.0  # Rich earns most, on every day alike: advantage 0
    rewards[-1, 0, 1] = 10.0  # Lucky had one much better day than her usual
    rewards[:, 0, 2] = np.arange(G)  # Steady improves a little each day
    rewards[:, 0, 3] = 5.0
    ep = _episode(actions, places, rewards)
    assert np.all(ep["advantages"][:, 0] == 0.0) and rewards.sum(1).max() == 100.0
    names = ["Rich", "Lucky", "Steady", "Flat"]
    lessons = _lessons(names, ep, top_k=1)
    assert len(lessons) == 2 and lessons[0].startswith("Lucky")  # the largest advantage, not the richest
    every = _lessons(names, ep, top_k=4)
    assert [x.split(",")[0] for x in every[:-1]] == ["Lucky", "Steady"]  # Rich and Flat never beat themselves
    assert not any("Rich" in x for x in every)


def test_quartile_contrast_states_a_clear_difference_with_counts() -> None:
    actions, places = _working_days()
    good = np.arange(G) >= G // 2  # the better half of the days: chatting at the cafe in the afternoon
    actions[good, 12:], places[good, 12:] = CHAT, SOCIAL
    actions[~good, 12:], places[~good, 12:] = MOVE, STREET  # the rest: wandering the streets
    rewards = np.zeros((G, T, N))
    rewards[:, -1] = np.arange(G)[:, None] + np.arange(N)[None, :] * 0.1
    contrast = _lessons(["A", "B", "C", "D"], _episode(actions, places, rewards))[-1]
    assert contrast.startswith("To raise awareness of the spring exhibition")
    assert "32 trajectories" in contrast and "8 rollouts x 4 personas" in contrast
    assert "top quarter (8 trajectories)" in contrast and "bottom quarter (8 trajectories)" in contrast
    assert "afternoon" in contrast or "social sites" in contrast or "streets" in contrast
    assert "no clear difference" not in contrast


def test_small_differences_are_reported_as_no_clear_difference() -> None:
    actions, places = _working_days()
    actions[:, 12:, ::2], places[:, 12:, ::2] = CHAT, SOCIAL  # behaviour depends on the persona, not the day
    actions[-1, 20, 0] = MOVE  # one step of one top day differs
    rewards = np.zeros((G, T, N))
    rewards[:, -1] = np.arange(G)[:, None]
    lessons = _lessons(["A", "B", "C", "D"], _episode(actions, places, rewards))
    assert "no clear difference" in lessons[-1] and "8 vs 8 trajectories" in lessons[-1]
    assert "within 2 standard errors" in lessons[-1]
    same = _lessons(["A", "B", "C", "D"], _episode(actions, places, np.zeros((G, T, N))))  # no advantage at all
    assert same == [same[-1]] and "same advantage" in same[-1]


def test_at_most_one_lesson_per_persona_and_no_duplicates() -> None:
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 4, (G, T, N))
    places = rng.integers(0, 5, (G, T, N))
    rewards = rng.random((G, T, N))
    names = ["Ann", "Ann", "Bo", "Cy"]  # two agents with one persona name
    lessons = _lessons(names, _episode(actions, places, rewards), top_k=10)
    assert len(lessons) == len(set(lessons))
    for name in set(names):
        assert sum(x.startswith(f"{name},") for x in lessons) <= 1
    assert len(lessons) == 3 + 1  # three personas, then the group's contrast


def test_place_kinds_and_blocks_of_the_town() -> None:
    env = ga_env.TownEnv(groups=["artist_collective", "residents"])
    kinds = place_kinds(env.world.kind_table)
    assert kinds.shape == (len(env.personas), len(env.places))
    assert all(KIND_NAMES[kinds[i, env.world.home[i]]] == "home" for i in range(len(env.personas)))
    artist = int(np.flatnonzero(env.group_of == [g.name for g in env.groups].index("artist_collective"))[0])
    assert KIND_NAMES[kinds[artist, env.places.index("Willow Cafe:dining area")]] == "social site"
    assert (kinds == KIND_NAMES.index("street")).any()
    blocks = step_blocks(7 * 60, 10, 144, env.world.block_by_minute)  # 07:00, 10 minutes a step
    assert blocks[0] == 1 and blocks[30] == 2 and blocks[66] == 3 and blocks[90] == 0  # 12:00, 18:00, 22:00


def _compose(overrides: list[str]) -> Config:
    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        return to_config(compose(config_name="config", overrides=overrides))


def test_training_stores_lessons_in_checkpoint_tensorboard_and_lessons_md(tmp_path: Path) -> None:
    base = [
        "+experiment=artists",
        "trainer.group_size=2",
        "env.max_cycles=12",
        "trainer.eval_episodes=1",
        "trainer.eval_every=0",
        "agent.hidden=4",
    ]
    run = tmp_path / "run"
    train(_compose([*base, "trainer.iterations=2"]), run)
    md = (run / "lessons.md").read_text()
    assert md.startswith("# Lessons after iteration 2") and "## artist_collective" in md and "## residents" in md
    ckpt = np.load(run / "checkpoint.npz")
    lessons = json.loads(str(ckpt["lessons"]))
    assert set(lessons) == {"artist_collective", "residents"}
    assert all(isinstance(x, str) and f"- {x}" in md for group in lessons.values() for x in group)
    assert int(ckpt["lessons_iteration"]) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Tensors("lessons/artist_collective/text_summary")] == [1, 2]

    resumed = tmp_path / "resumed"  # the lessons and their iteration survive a resume
    train(_compose([*base, "trainer.iterations=3", f"trainer.resume={run / 'checkpoint.npz'}"]), resumed)
    ckpt = np.load(resumed / "checkpoint.npz")
    assert int(ckpt["lessons_iteration"]) == 3
    assert (resumed / "lessons.md").read_text().startswith("# Lessons after iteration 3")
