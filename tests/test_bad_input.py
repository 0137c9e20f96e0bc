"""Bad input, generated (hypothesis): mutated persona files, group files, maps (ASCII and Tiled
JSON), Hydra overrides and action dicts.

Every mutation must either run (build the env, reset, step) or fail with an error that names the
file (or argument), the field and the fix — never a bare traceback from deep inside, never a hang
(pytest-timeout guards each test). ``GA_HYPOTHESIS_EXAMPLES=500 pytest tests/test_bad_input.py``
searches harder than CI's default of 25 examples per test.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ga_env
from ga_env import ActionError, TownDataError

DATA = Path(ga_env.__file__).parent / "data" / "willowbrook"
PERSONAS = yaml.safe_load((DATA / "personas.yaml").read_text())
GROUPS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((DATA / "groups").glob("*.yaml"))}
MAP = yaml.safe_load((DATA / "map.yaml").read_text())
PERSONA_FIELDS = sorted({k for p in PERSONAS["personas"] for k in p})
GROUP_FIELDS = sorted({k for g in GROUPS.values() for k in g})

SETTINGS = settings(
    max_examples=int(os.environ.get("GA_HYPOTHESIS_EXAMPLES", "25")),  # more for a thorough local run
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MESSAGE = re.compile(r"^.+: .+: .+\. Fix: .+", re.DOTALL)

# Values a careless or hostile user might write in a YAML field.
WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "ünïcödé 🎨 画展", "\x00\x07", "Nowhere:nothing", "../../etc/passwd", "x" * 100_000]),
    st.lists(st.integers(-5, 70), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _small_town(tmp: Path) -> Path:
    """A copy of the shipped town in ``tmp`` (the test then overwrites one of its files)."""
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(DATA, tmp)
    return tmp


def _run(town: Path, **kwargs: Any) -> None:
    """Build the env from ``town``, reset, and step a few random actions."""
    env = ga_env.parallel_env(town=str(town), max_cycles=5, **kwargs)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    while env.agents:
        acts = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
        obs, *_ = env.step(acts)


def _expect_clear(town: Path, bad_file: Path, **kwargs: Any) -> None:
    """Run, or fail with a TownDataError naming ``bad_file`` (or an argument) and a fix."""
    try:
        _run(town, **kwargs)
    except TownDataError as e:
        msg = str(e)
        assert MESSAGE.match(msg), msg
        assert e.fix.strip() and e.field.strip(), msg
        # The error names the file at fault (or the town folder / a file the bad one refers to).
        assert e.source.startswith(str(town)) or e.source == "argument", msg


def _dump(path: Path, doc: Any) -> None:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


# -- persona files -------------------------------------------------------------------------------

persona_mutation = st.tuples(
    st.sampled_from(["set", "delete", "unknown_key", "duplicate", "drop_all", "not_mapping"]),
    st.integers(0, len(PERSONAS["personas"]) - 1),
    st.sampled_from(PERSONA_FIELDS),
    WEIRD,
)


@pytest.mark.timeout(300)
@SETTINGS
@given(mutations=st.lists(persona_mutation, min_size=1, max_size=3))
def test_mutated_persona_files(tmp_path: Path, mutations: list[tuple[str, int, str, Any]]) -> None:
    town = _small_town(tmp_path / "town")
    doc = copy.deepcopy(PERSONAS)
    for op, i, key, value in mutations:
        people = doc["personas"]
        if not people:
            break
        i %= len(people)
        if not isinstance(people[i], dict) and op in ("set", "delete", "unknown_key"):
            continue
        if op == "set":
            people[i][key] = value
        elif op == "delete":
            people[i].pop(key, None)
        elif op == "unknown_key":
            people[i]["favourite_colour"] = value
        elif op == "duplicate":
            people.append(copy.deepcopy(people[i]))
        elif op == "drop_all":
            doc["personas"] = []
        else:
            people[i] = value
    _dump(town / "personas.yaml", doc)
    _expect_clear(town, town / "personas.yaml")


@pytest.mark.timeout(300)
@SETTINGS
@given(content=st.one_of(st.text(max_size=200), st.binary(max_size=200), st.just(""), st.just("personas: [")))
def test_garbage_persona_file(tmp_path: Path, content: str | bytes) -> None:
    town = _small_town(tmp_path / "town")
    path = town / "personas.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    _expect_clear(town, path)


# -- group files -----------------------------------------------------------------------------------

group_mutation = st.tuples(
    st.sampled_from(sorted(GROUPS)),
    st.sampled_from(["set", "delete", "objective_term", "objective_weight", "site", "rename"]),
    st.sampled_from(GROUP_FIELDS),
    WEIRD,
    st.sampled_from([*ga_env.OBJECTIVE_TERMS, "happiness", "", "awareness "]),
)


@pytest.mark.timeout(300)
@SETTINGS
@given(mutations=st.lists(group_mutation, min_size=1, max_size=3))
def test_mutated_group_files(tmp_path: Path, mutations: list[tuple[str, str, str, Any, str]]) -> None:
    town = _small_town(tmp_path / "town")
    docs = copy.deepcopy(GROUPS)
    for name, op, key, value, term in mutations:
        g = docs[name]
        if not isinstance(g, dict):
            continue
        if op == "set":
            g[key] = value
        elif op == "delete":
            g.pop(key, None)
        elif op == "objective_term":
            if isinstance(g.get("objective"), dict):
                g["objective"][term] = 1.0
        elif op == "objective_weight":
            if isinstance(g.get("objective"), dict) and g["objective"]:
                g["objective"][next(iter(g["objective"]))] = value
        elif op == "site":
            g["task_sites"] = [value]
        else:
            docs[name] = value if isinstance(value, dict | None) else {**g, "name": value}
    for name, g in docs.items():
        _dump(town / "groups" / f"{name}.yaml", g)
    _expect_clear(town, town / "groups")


def test_a_group_file_that_is_not_yaml(tmp_path: Path) -> None:
    town = _small_town(tmp_path / "town")
    (town / "groups" / "campaign_team.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(TownDataError, match=r"campaign_team\.yaml: .*Fix: "):
        _run(town)


# -- maps: the ASCII format ------------------------------------------------------------------------

map_mutation = st.tuples(
    st.sampled_from(["tile", "row", "legend_delete", "legend_set", "walls", "grid_value", "huge", "all_walls"]),
    st.integers(0, 10_000),
    st.sampled_from(["#", "~", ".", "?", "é", "🎨", "z", "1", "G", " ", "\t"]),
    WEIRD,
)


def _mutate_map(doc: dict[str, Any], op: str, k: int, ch: str, value: Any) -> None:
    rows = [r for r in str(doc["grid"]).splitlines() if r.strip()]
    if op == "tile":
        y = k % len(rows)
        x = (k // len(rows)) % len(rows[y])
        rows[y] = rows[y][:x] + ch + rows[y][x + 1 :]
    elif op == "row":
        y = k % len(rows)
        rows[y] = rows[y][: len(rows[y]) // 2]
    elif op == "legend_delete":
        legend = doc["places"] if k % 2 else doc["objects"]
        legend.pop(sorted(legend)[k % len(legend)], None)
    elif op == "legend_set":
        legend = doc["places"] if k % 2 else doc["objects"]
        legend[sorted(legend)[k % len(legend)]] = value
    elif op == "walls":
        doc["walls"] = value
    elif op == "grid_value":
        doc["grid"] = value
        return
    elif op == "huge":  # a much larger town: the shipped one tiled 3 x 3
        rows = [r * 3 for r in rows] * 3
    else:
        rows = ["#" * len(r) for r in rows]
    doc["grid"] = "\n".join(rows) + "\n"


@pytest.mark.timeout(300)
@SETTINGS
@given(mutations=st.lists(map_mutation, min_size=1, max_size=3))
def test_mutated_ascii_maps(tmp_path: Path, mutations: list[tuple[str, int, str, Any]]) -> None:
    town = _small_town(tmp_path / "town")
    doc = copy.deepcopy(MAP)
    for m in mutations:
        if not isinstance(doc.get("grid"), str) or not doc["grid"].strip():
            break  # a grid that is no text, or empty, is already the bad input under test
        _mutate_map(doc, *m)
    _dump(town / "map.yaml", doc)
    _expect_clear(town, town / "map.yaml")


# -- maps: Tiled JSON ------------------------------------------------------------------------------

TILED = ga_env.load_ascii_map(DATA / "map.yaml").to_tiled()

tiled_mutation = st.tuples(
    st.sampled_from(["drop_layer", "data_len", "data_value", "size", "layer_field", "names"]),
    st.integers(0, 10_000),
    WEIRD,
)


@pytest.mark.timeout(300)
@SETTINGS
@given(mutations=st.lists(tiled_mutation, min_size=1, max_size=3))
def test_mutated_tiled_maps(tmp_path: Path, mutations: list[tuple[str, int, Any]]) -> None:
    town = _small_town(tmp_path / "town")
    doc = copy.deepcopy(TILED)
    for op, k, value in mutations:
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            break
        layer = layers[k % len(layers)]
        if op == "drop_layer":
            layers.remove(layer)
        elif op == "data_len" and isinstance(layer.get("data"), list):
            layer["data"] = layer["data"][: len(layer["data"]) // 2]
        elif op == "data_value" and isinstance(layer.get("data"), list):
            layer["data"][k % len(layer["data"])] = value
        elif op == "size":
            doc["width" if k % 2 else "height"] = value
        elif op == "layer_field":
            layer[["name", "data", "type", "properties"][k % 4]] = value
        else:
            layer["properties"] = [{"name": "names", "type": "string", "value": json.dumps({"1": value})}]
    path = town / "map.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    (town / "map.yaml").unlink()
    _expect_clear(town, path)


# -- Hydra overrides -------------------------------------------------------------------------------

OVERRIDE_KEYS = [
    "env.groups",
    "env.max_agents",
    "env.max_cycles",
    "env.stride",
    "env.dynamics",
    "agent.hidden",
    "agent.init_scale",
    "trainer.iterations",
    "trainer.group_size",
    "trainer.gamma",
    "trainer.group_by",
    "trainer.scale",
    "trainer.lr",
    "trainer.epsilon",
    "trainer.beta",
    "trainer.resume",
    "trainer.no_such_field",
    "env.no_such_field",
    "llm.backend",
]
OVERRIDE_VALUES = st.one_of(
    st.sampled_from(
        [
            "-1",
            "0",
            "1e9",
            "abc",
            "null",
            "[]",
            "[nobody]",
            "[artist_collective]",
            "{spread_rate: 0.2}",
            "{spread_rate: abc}",
            "{nope: 1}",
            "ünïcödé",
            "true",
            "0.5",
            "'1 2'",
        ]
    ),
    st.integers(-5, 50).map(str),
)


@pytest.mark.timeout(300)
@SETTINGS
@given(overrides=st.lists(st.tuples(st.sampled_from(OVERRIDE_KEYS), OVERRIDE_VALUES), min_size=1, max_size=3))
def test_hydra_overrides(overrides: list[tuple[str, str]]) -> None:
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from conf.schema import ConfigError, register_configs, to_config

    register_configs()
    args = ["+experiment=artists", "env.max_cycles=3", *(f"{k}={v}" for k, v in overrides)]
    keys = {k.split(".")[-1] for k, _ in overrides}
    try:
        with initialize_config_module(config_module="conf", version_base=None):
            cfg = to_config(compose(config_name="config", overrides=args))
        env = cfg.env.make()
        env.reset_arrays(0)
    except (ConfigError, TownDataError) as e:
        assert MESSAGE.match(str(e)), str(e)
    except (HydraException, OmegaConfBaseException) as e:  # Hydra/OmegaConf name the key themselves
        msg = str(e)
        assert any(k in msg for k in keys) or "override" in msg.lower(), msg


# -- action dicts ----------------------------------------------------------------------------------

ENV_DISCRETE = ga_env.parallel_env(max_agents=4, max_cycles=10_000)
ENV_RICH = ga_env.parallel_env(max_agents=4, max_cycles=10_000, action_mode="rich")
ACTION_VALUES = st.one_of(
    WEIRD,
    st.integers(0, 3),
    st.builds(np.int64, st.integers(-2, 6)),
    st.dictionaries(
        st.sampled_from(["action", "target", "partner", "utterance", "emoji"]), st.one_of(WEIRD, st.integers(0, 30))
    ),
)


@pytest.mark.timeout(300)
@SETTINGS
@given(
    rich=st.booleans(),
    entries=st.lists(
        st.tuples(st.one_of(st.integers(0, 3), st.text(max_size=8), st.integers(-3, 9)), ACTION_VALUES), max_size=6
    ),
)
def test_action_dicts(rich: bool, entries: list[tuple[int | str, Any]]) -> None:
    env = ENV_RICH if rich else ENV_DISCRETE
    if not env.agents:
        env.reset(seed=0)
    actions = {(env.agents[k] if isinstance(k, int) and 0 <= k < len(env.agents) else k): v for k, v in entries}
    before = env.state().copy()
    try:
        env.step(actions)
    except ActionError as e:
        assert MESSAGE.match(str(e)), str(e)
        np.testing.assert_array_equal(env.state(), before)  # a rejected step changes nothing


@pytest.mark.parametrize("bad", [None, [0, 1], "Move", 3])
def test_actions_that_are_not_a_dict(bad: Any) -> None:
    env = ga_env.parallel_env(max_agents=2)
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"actions\['\*'\]: .*Fix: "):
        env.step(bad)


# -- numbers of every config section: NaN, ±inf and out-of-range values --------------------------


def _config_sections() -> dict[str, type]:
    from conf.schema import AgentConfig, DynamicsConfig, EnvConfig, GRPOConfig, LLMConfig, RolloutConfig

    return {
        "env": EnvConfig,
        "env.dynamics": DynamicsConfig,
        "agent": AgentConfig,
        "llm": LLMConfig,
        "trainer": GRPOConfig,
        "trainer.rollout": RolloutConfig,
    }


def _numeric_fields() -> list[tuple[str, str, str]]:
    """``(section, field, "int" | "float" | "list")`` of every numeric field of the schema."""
    import dataclasses

    out = []
    for section, cls in _config_sections().items():
        for f in dataclasses.fields(cls):
            kind = str(f.type)
            if kind.startswith("list[float]"):
                out.append((section, f.name, "list"))
            elif kind.split(" ")[0] in ("int", "float"):
                out.append((section, f.name, kind.split(" ")[0]))
    return out


NUMERIC_FIELDS = _numeric_fields()


def _override(section: str, name: str, kind: str, value: str) -> str:
    if kind == "list":  # energy_cost: the bad value among good ones
        return f"{section}.{name}=[0.001,{value},0.001,0.001]"
    return f"{section}.{name}={value}"


def _expect_config_error(overrides: list[str], field: str) -> str:
    from conf.compose import compose
    from conf.schema import ConfigError

    with pytest.raises(ConfigError) as e:
        compose(overrides)
    msg = str(e.value)
    assert MESSAGE.match(msg), msg
    assert field in msg and "Fix: " in msg, msg
    return msg


def test_every_numeric_field_has_a_range() -> None:
    from conf.schema import NUMBER_RANGES

    assert NUMERIC_FIELDS and {s for s, _, _ in NUMERIC_FIELDS} == set(_config_sections())
    for section, name, _ in NUMERIC_FIELDS:
        assert name in NUMBER_RANGES[section], f"{section}.{name} has no range in conf.schema.NUMBER_RANGES"
    for section, ranges in NUMBER_RANGES.items():  # and no range names a field that is not there
        assert set(ranges) <= {n for s, n, _ in NUMERIC_FIELDS if s == section}, section


def _build(section: str, name: str, kind: str, value: float) -> None:
    """Build the section in Python with one field set (a list field: the value among good ones)."""
    _config_sections()[section](**{name: [0.001, value, 0.001, 0.001] if kind == "list" else value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("section", "name", "kind"), NUMERIC_FIELDS, ids=[f"{s}.{n}" for s, n, _ in NUMERIC_FIELDS])
def test_non_finite_numbers_are_rejected(section: str, name: str, kind: str, value: float) -> None:
    from conf.schema import ConfigError

    with pytest.raises(ConfigError) as e:
        _build(section, name, kind, value)
    msg = str(e.value)
    assert MESSAGE.match(msg) and msg.startswith(f"config: {section}.{name}: "), msg
    assert "is not a finite number. Fix: set " in msg and "finite number" in msg.split("Fix: ")[1], msg


def _out_of_range() -> list[tuple[str, str, str, float]]:
    """``(section, field, kind, value)``: a value just below and one just above each field's range."""
    from conf.schema import NUMBER_RANGES

    out = []
    for section, name, kind in NUMERIC_FIELDS:
        rng = NUMBER_RANGES[section][name]
        step = 1 if kind == "int" else 0.5
        if rng.lo != -np.inf:
            out.append((section, name, kind, rng.lo if rng.lo_open else rng.lo - step))
        if rng.hi != np.inf:
            out.append((section, name, kind, rng.hi if rng.hi_open else rng.hi + step))
    return [(s, n, k, int(v) if k == "int" else float(v)) for s, n, k, v in out]


OUT_OF_RANGE = _out_of_range()


@pytest.mark.parametrize(
    ("section", "name", "kind", "value"), OUT_OF_RANGE, ids=[f"{s}.{n}={v}" for s, n, _, v in OUT_OF_RANGE]
)
def test_out_of_range_numbers_are_rejected(section: str, name: str, kind: str, value: float) -> None:
    from conf.schema import ConfigError

    with pytest.raises(ConfigError) as e:
        _build(section, name, kind, value)
    msg = str(e.value)
    assert MESSAGE.match(msg) and msg.startswith(f"config: {section}.{name}: {value!r}"), msg


BAD_OVERRIDES = [  # one per field (composing takes ~0.3 s): NaN, inf, -inf or out of range in turn
    (s, n, k, ("nan", "inf", "-inf", "range")[i % 4] if k != "int" else "range")
    for i, (s, n, k) in enumerate(NUMERIC_FIELDS)
]
BAD_OVERRIDES = [
    (s, n, k, next(repr(b) for s2, n2, _, b in OUT_OF_RANGE if (s2, n2) == (s, n)) if v == "range" else v)
    for s, n, k, v in BAD_OVERRIDES
]


@pytest.mark.parametrize(
    ("section", "name", "kind", "value"), BAD_OVERRIDES, ids=[f"{s}.{n}={v}" for s, n, _, v in BAD_OVERRIDES]
)
def test_bad_numbers_through_overrides(section: str, name: str, kind: str, value: str) -> None:
    """The same through ``conf.compose.compose``, as every command composes: for every numeric field,
    NaN, inf, -inf or a value out of its range (in turn over the fields)."""
    msg = _expect_config_error([_override(section, name, kind, value)], f"config: {section}.{name}: ")
    assert ("is not a finite number" in msg) == (value in ("nan", "inf", "-inf")), msg


def test_int_fields_reject_non_finite_overrides_naming_the_key() -> None:
    for key in ("trainer.seed", "env.dynamics.move_speed"):  # OmegaConf: not an integer
        _expect_config_error([f"{key}=nan"], f"{key}=nan")


@pytest.mark.parametrize(
    ("overrides", "field", "fix"),
    [
        (["trainer.lr=nan"], "trainer.lr", "finite number > 0"),
        (["trainer.lr=inf"], "trainer.lr", "finite number > 0"),
        (["trainer.epsilon=nan"], "trainer.epsilon", r"finite number in \(0, 1\)"),
        (["trainer.seed=-1"], "trainer.seed", "seed >= 0"),
        (["trainer.gamma=1.5"], "trainer.gamma", r"in \[0, 1\]"),
        (["trainer.adv_eps=0"], "trainer.adv_eps", r"adv_eps > 0"),
        (["env.dynamics.spread_rate=1.5"], "env.dynamics.spread_rate", r"in \[0, 1\]"),
        (["env.dynamics.energy_cost=[0.1,0.1]"], "env.dynamics.energy_cost", "give four"),
        (["env.dynamics.night_end=24"], "env.dynamics.night_end", r"hour in \[0, 23\]"),
        (["llm.max_cost_usd=inf"], "llm.max_cost_usd", "or null"),
        (["llm.step_deadline_s=-inf"], "llm.step_deadline_s", "or null"),
        (["llm.breaker_failures=0"], "llm.breaker_failures", ">= 1"),
        (["llm.base_url=ftp://example.org/v1"], "llm.base_url", r"http\(s\)://HOST"),
        (["llm.base_url=localhost:8000/v1"], "llm.base_url", r"http\(s\)://HOST"),
        (["llm.base_url=http:///v1"], "llm.base_url", r"http\(s\)://HOST"),
        (["llm.base_url=http://127.0.0.1:0/v1"], "llm.base_url", r"http\(s\)://HOST"),
        (["llm.base_url=http://127.0.0.1:65536/v1"], "llm.base_url", r"http\(s\)://HOST"),
        (["llm.base_url='http://127.0.0.1:port/v1'"], "llm.base_url", r"http\(s\)://HOST"),
        (["llm.base_url='http://my host:8000/v1'"], "llm.base_url", r"http\(s\)://HOST"),
    ],
)
def test_config_number_and_url_messages(overrides: list[str], field: str, fix: str) -> None:
    msg = _expect_config_error(overrides, f"config: {field}: ")
    assert re.search(rf"Fix: .*{fix}", msg), msg


def test_good_urls_and_edges_are_accepted() -> None:
    from conf.compose import compose

    for url in ("http://127.0.0.1:11434/v1", "https://api.example.org/v1", "http://[::1]:8000/v1", "http://host"):
        assert compose([f"llm.base_url='{url}'"]).llm.base_url == url
    cfg = compose(["trainer.gamma=1", "trainer.seed=0", "env.dynamics.spread_rate=0", "env.dynamics.night_start=23"])
    assert cfg.trainer.gamma == 1 and cfg.env.make().dynamics.night_start == 23


def test_simulate_rejects_a_negative_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ga_sim.runstore import RunError
    from ga_sim.simulation import Simulation
    from scripts.simulate import main

    assert main(["--results", str(tmp_path), "--name", "s", "--mind", "scripted", "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "argument: --seed: -1 is negative. Fix: give a seed >= 0" in err, err
    assert not (tmp_path / "runs" / "s").exists()
    with pytest.raises(RunError, match=r"--seed: .*Fix: "):
        Simulation.create(tmp_path, "t", [], start="2023-02-13 07:00", stride=10, mind="scripted", seed=-3)
