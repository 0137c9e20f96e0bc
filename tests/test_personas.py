"""Personas and groups are data: loading, validation, and a new group from YAML alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import ga_env
from ga_env import TownDataError, load_group, load_groups, load_personas

SHIPPED = Path(ga_env.__file__).parent / "data" / "willowbrook"


def test_shipped_personas_and_groups() -> None:
    personas = load_personas(SHIPPED / "personas.yaml")
    groups = load_groups(SHIPPED / "groups")
    assert len(personas) == 25
    assert {"artist_collective", "research_lab", "campaign_team", "residents"} <= set(groups)
    assert {p.group for p in personas} == set(groups)
    assert groups["residents"].cause is None
    assert groups["artist_collective"].objective["awareness"] > 0
    assert groups["research_lab"].objective["knowledge"] > 0
    assert groups["campaign_team"].objective["supporters"] > 0
    for p in personas:
        assert p.innate and p.learned and p.currently and p.lifestyle and p.task and p.living_area


@pytest.fixture
def town_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "town"
    shutil.copytree(SHIPPED, folder)
    return folder


def test_new_group_with_new_objective_needs_only_yaml(town_copy: Path) -> None:
    (town_copy / "groups" / "book_club.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "book_club",
                "description": "Readers who meet at the library and love a long chat.",
                "cause": "the monthly book club at Oak Library",
                "objective": {"conversations": 1.0, "knowledge": 2.0, "awareness": 3.0},
                "individual_share": 0.2,
                "task_sites": ["Oak Library:reading room"],
                "research_sites": ["Oak Library:reading room"],
                "social_sites": ["Willow Cafe:dining area"],
            }
        )
    )
    doc = yaml.safe_load((town_copy / "personas.yaml").read_text())
    for p in doc["personas"][:3]:
        p["group"] = "book_club"
    (town_copy / "personas.yaml").write_text(yaml.safe_dump(doc))

    env = ga_env.parallel_env(town=town_copy, groups=["book_club", "residents"], max_cycles=144)
    assert [g.name for g in env.groups] == ["book_club", "residents"]
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    total = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        acts = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
        obs, rew, _, _, _ = env.step(acts)
        for a, r in rew.items():
            total[a] += r
    club = [a for a, p in zip(env.possible_agents, env.personas, strict=True) if p.group == "book_club"]
    assert len(club) == 3 and sum(total[a] for a in club) > 0
    # The group's episode reward is exactly its objective applied to its measured terms.
    g = 0
    weights = np.array([env.groups[g].objective.get(t, 0.0) for t in ga_env.OBJECTIVE_TERMS])
    assert sum(total[a] for a in club) == pytest.approx(float(weights @ env.episode_terms[:, g]))


def _write_personas(folder: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((SHIPPED / "personas.yaml").read_text())
    mutate(doc["personas"][0])
    path = folder / "personas.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda p: p.pop("innate"), r"personas\[0\] \('Isabel Ortiz'\)\.innate: is missing\. Fix: add innate"),
        (lambda p: p.update(age="old"), r"persona 'Isabel Ortiz'\.age: 'old' is not an age\. Fix:"),
        (lambda p: p.update(colour="red"), r"\.colour: is not a persona field\. Fix: use only"),
        (
            lambda p: p.update(group="poets"),
            r"persona 'Isabel Ortiz'\.group: 'poets' has no group file\. Fix: add poets.yaml",
        ),
        (
            lambda p: p.update(living_area="Maple Row:Ortiz hom"),
            r"persona 'Isabel Ortiz'\.living_area: unknown address.*did you mean 'Maple Row:Ortiz home'",
        ),
        (
            lambda p: p.update(spawn=[0, 0]),
            r"persona 'Isabel Ortiz'\.spawn: tile \(0, 0\) is a wall.*Fix: choose a walkable tile",
        ),
        (
            lambda p: p.update(att_bandwidth=0),
            r"persona 'Isabel Ortiz'\.att_bandwidth: 0 is not an integer >= 1\. Fix: write e\.g\. att_bandwidth: 3",
        ),
        (lambda p: p.update(att_bandwidth=True), r"persona 'Isabel Ortiz'\.att_bandwidth: True is not an integer"),
        (lambda p: p.update(retention="five"), r"persona 'Isabel Ortiz'\.retention: 'five' is not an integer >= 1"),
        (lambda p: p.update(vision_radius=-1), r"persona 'Isabel Ortiz'\.vision_radius: -1 is not an integer >= 0"),
        (lambda p: p.update(vision_radius=2.5), r"persona 'Isabel Ortiz'\.vision_radius: 2\.5 is not an integer"),
        (lambda p: p.update(vision_r=4), r"\.vision_r: is not a persona field\. Fix: use only .*vision_radius"),
    ],
)
def test_bad_persona_files_name_file_field_and_fix(tmp_path: Path, mutate, pattern: str) -> None:  # type: ignore[no-untyped-def]
    path = _write_personas(tmp_path, mutate)
    with pytest.raises(TownDataError, match=f"{path}.*{pattern}"):
        ga_env.parallel_env(personas_file=path)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (
            lambda g: g["objective"].update(fame=1.0),
            r"objective\.fame: is not a known reward term\. Fix: use one of awareness",
        ),
        (lambda g: g.update(individual_share=1.5), r"individual_share: 1\.5 is not in \[0, 1\]"),
        (lambda g: g.update(task_sites=["Moon:base"]), r"task_sites: unknown address 'Moon:base'"),
        (lambda g: g.update(task_sites="Lumen Gallery:artist studio"), r"task_sites: must be a list of places"),
        (lambda g: g.update(name="painters"), r"name: 'painters' differs from the file name 'artist_collective'"),
        (lambda g: g.update(cause=None), r"objective: awareness/supporters terms need a cause"),
        (
            lambda g: g["objective"].update(awareness=float("nan")),
            r"objective\.awareness: weight nan is not a finite number",
        ),
    ],
)
def test_bad_group_files_name_file_field_and_fix(town_copy: Path, mutate, pattern: str) -> None:  # type: ignore[no-untyped-def]
    path = town_copy / "groups" / "artist_collective.yaml"
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TownDataError, match=f"{path}.*{pattern}"):
        ga_env.parallel_env(town=town_copy)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "x.yaml"
    empty.write_text("")
    with pytest.raises(TownDataError, match=r"x.yaml: document: is empty or not a mapping"):
        load_group(empty)
    with pytest.raises(TownDataError, match=r"personas: must be a non-empty list"):
        load_personas(empty)
    with pytest.raises(TownDataError, match="town: 'atlantis' is neither a folder nor a shipped town"):
        ga_env.parallel_env(town="atlantis")


def test_personas_may_carry_their_own_attention(tmp_path: Path) -> None:
    path = _write_personas(tmp_path, lambda p: p.update(vision_radius=0, att_bandwidth=1, retention=12))
    personas = load_personas(path)
    assert (personas[0].vision_radius, personas[0].att_bandwidth, personas[0].retention) == (0, 1, 12)
    assert (personas[1].vision_radius, personas[1].att_bandwidth, personas[1].retention) == (None, None, None)
