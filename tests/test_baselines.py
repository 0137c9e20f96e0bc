"""Baselines: chat-when-possible, the tuned heuristic and its search, and the CI helper."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ga_env
from agents import RandomPolicy
from agents.heuristic import ChatPolicy, HeuristicParams, HeuristicPolicy, load_tuned_params, load_upper_params
from trainers.evaluate import mean_ci, run_episodes
from trainers.heuristic_search import coordinate_search, score


def test_mean_ci_matches_student_t() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0 and half == pytest.approx(2.776 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))
    assert mean_ci([7.0]) == (7.0, 0.0)
    with pytest.raises(ValueError):
        mean_ci([])


def test_chat_policy_chats_exactly_when_a_partner_is_near() -> None:
    env = ga_env.parallel_env(obs_mode="box", max_agents=8)
    obs, mask = env.reset_arrays(0)
    actions = ChatPolicy().act(obs, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(actions, np.where(mask[:, 1] > 0, 1, 0))


def test_heuristic_sleeps_at_night_and_works_then_beats_random() -> None:
    env = ga_env.parallel_env(obs_mode="box", groups=["artist_collective", "residents"], max_cycles=144)
    heur = run_episodes(env, HeuristicPolicy(env.groups), [11, 12], np.random.default_rng(0))
    rand = run_episodes(env, RandomPolicy(), [11, 12], np.random.default_rng(0))
    for group in ("artist_collective", "residents"):
        assert heur.returns[group].mean() > rand.returns[group].mean()
        assert heur.mean_goals()[group]["night_at_home"] > 0.7  # the walk home after 22:00 counts as out
        assert heur.mean_goals()[group]["task_progress"] > 0
        assert heur.mean_goals()[group]["share/night/task"] > 0.6  # sleeping at home


def test_params_validate_and_round_trip() -> None:
    p = HeuristicParams(work_target=0.25, max_chat=3.0)
    assert HeuristicParams.from_vector(p.vector()) == p
    assert HeuristicParams.from_vector([9, -1, 100, 0.1, 0.7, 500]) == HeuristicParams(
        work_target=1.0, min_unaware=0.0, max_chat=8.0, rest_below=0.1, chat_anywhere=0.7, max_work=144.0
    )
    with pytest.raises(ValueError, match=r"max_chat.*Fix"):
        HeuristicParams(max_chat=0.0)


def test_shipped_params_cover_the_result_experiments() -> None:
    from importlib import resources

    shipped = json.loads((resources.files("agents") / "data" / "heuristic_params.json").read_text())
    env = ga_env.parallel_env(obs_mode="box")
    for experiment, groups in (
        ("artists", {"artist_collective", "residents"}),
        ("society", {g.name for g in env.groups}),
    ):
        entry = shipped[experiment]
        assert max(entry["seeds"]) < 1_000_000  # training seeds, never evaluation seeds
        assert set(entry["tuned"]["params"]) == groups == set(entry["upper"]["params_by_group"])
        for g in groups:  # the upper reference is never below the tuned heuristic on the training seeds
            assert entry["upper"]["train_return"][g] >= entry["tuned"]["train_return"][g]
    tuned = load_tuned_params("society", env.groups)
    assert tuned["residents"] == HeuristicParams(**shipped["society"]["tuned"]["params"]["residents"])
    upper = load_upper_params("society", env.groups)
    assert set(upper) == set(upper["residents"]) == {g.name for g in env.groups}
    assert load_tuned_params("no-such-experiment", env.groups)["residents"] == HeuristicParams()


def test_coordinate_search_never_lowers_a_groups_score() -> None:
    env = ga_env.parallel_env(obs_mode="box", groups=["residents"], max_agents=4, max_cycles=48)
    start = score(env, {"residents": HeuristicParams()}, [0, 1])
    params, best = coordinate_search(env, [0, 1], sweeps=1, log=lambda _: None)
    assert best["residents"] >= start["residents"]
    assert score(env, params, [0, 1]) == best
