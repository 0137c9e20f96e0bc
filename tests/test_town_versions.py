"""Town versions: v0 reproduces the first release exactly; v1 is the default and fixes its incentives."""

from __future__ import annotations

import numpy as np
import pettingzoo
import pytest

import ga_env
from ga_env import Dynamics, town_v0, town_v1
from ga_env.errors import TownDataError
from ga_env.world import CHAT, IDLE, MOVE, TASK

# Per-agent returns of one random day on Town-v0, recorded with the first release's code
# (commit 5ad45f5, before Town-v1): artists seed 0 and society seed 7, actions drawn uniformly
# among the valid ones from default_rng(100 + seed).
V0_REFERENCE = {
    ("artists", 0): [13.951975621, 14.315740001, 15.349213748, 14.729972039, 14.312285864, 14.608282326,
                     14.750188315, 8.898447662, 14.278742028, 20.275510988, 19.977531899, 12.707210913,
                     14.44030822, 11.29493056, 12.780384794],
    ("society", 7): [19.524319185, 17.986671244, 22.961038066, 23.45686153, 21.613156632, 9.208238395,
                     9.820333801, 10.119596731, 8.540675503, 8.443210214, 2.848026961, 2.665946053,
                     3.051092143, 3.367607748, 3.97172688, 16.966770094, 20.123425898, 23.63703863,
                     20.837085763, 21.229020916, 13.360056151, 15.239651816, 14.842690204, 15.768353861,
                     11.76430582],
}  # fmt: skip
GROUPS = {"artists": ["artist_collective", "residents"], "society": None}


def _random_day(env: ga_env.TownEnv, seed: int) -> np.ndarray:
    _, mask = env.reset_arrays(seed)
    rng = np.random.default_rng(100 + seed)
    done = False
    while not done:
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        _, mask, _, done = env.step_arrays(actions)
    return env.episode_rewards.copy()


@pytest.mark.parametrize(("name", "seed"), list(V0_REFERENCE))
def test_town_v0_reproduces_the_first_release(name: str, seed: int) -> None:
    env = town_v0.parallel_env(groups=GROUPS[name], obs_mode="box")
    np.testing.assert_allclose(_random_day(env, seed), V0_REFERENCE[(name, seed)], rtol=0, atol=1e-8)
    assert env.metadata["name"] == "town_v0"


def test_versions_are_registered_and_v1_is_the_default() -> None:
    assert ga_env.parallel_env().metadata["name"] == "town_v1"
    assert town_v1.parallel_env().dynamics == Dynamics()
    assert pettingzoo.make("parallel", "ga/Town-v0", max_agents=3).dynamics == Dynamics.for_version(0)
    assert pettingzoo.make("parallel", "ga/Town-v1", max_agents=3).dynamics == Dynamics()
    assert ga_env.parallel_env(version=0, dynamics={"spread_rate": 0.2}).dynamics == Dynamics.for_version(
        0, spread_rate=0.2
    )
    with pytest.raises(TownDataError, match="version"):
        ga_env.parallel_env(version=7)
    with pytest.raises(TownDataError, match=r"readiness_floor.*Fix"):
        Dynamics(readiness_floor=2.0)
    with pytest.raises(TownDataError, match=r"chat_scaled.*boolean"):
        Dynamics(chat_scaled=1)  # type: ignore[arg-type]


def _pair(version: int, start: str = "2023-02-13 09:00", place: str = "Willow Cafe:dining area") -> ga_env.TownEnv:
    env = ga_env.parallel_env(
        groups=["artist_collective", "residents"], version=version, dynamics={"persuasion": 1.0}, start=start
    )
    env.reset(seed=0)
    tiles = env.town_map.place_tiles(env.town_map.place_index(place))
    xy = np.array([env.position(i) for i in range(len(env.personas))])
    xy[0], xy[-1] = tiles[len(tiles) // 2], tiles[len(tiles) // 2 + 1]  # an artist and a resident side by side
    env.set_positions(xy)
    return env


def _chat(env: ga_env.TownEnv, listener: int = IDLE) -> np.ndarray:
    a = np.full(len(env.personas), IDLE, dtype=np.int64)
    a[0], a[-1] = CHAT, listener
    return env.step_arrays(a)[2]


def test_v1_repeated_talks_saturate_and_a_passive_partner_earns_no_conversation() -> None:
    env = _pair(1)
    resident = len(env.personas) - 1
    w_rel = env.weights[env.group_of[resident]]
    first = _chat(env)  # the resident idles: it is talked to, but earns no conversation credit
    assert first[resident] == pytest.approx(0.0, abs=1e-12)
    rel = [env.relationship[0, resident]]
    for _ in range(3):
        _chat(env)
        rel.append(env.relationship[0, resident])
    gains = np.diff([0.0, *rel])
    assert np.all(gains[1:] < 0.5 * gains[:-1] + 1e-12)  # each repeat pays at most half the previous
    assert w_rel.sum() > 0
    v0 = _pair(0)
    assert _chat(v0)[resident] > 0  # Town-v0 credits the idle partner


def test_place_kinds_for_chat() -> None:
    kinds = ga_env.parallel_env().world.describe_places()
    assert kinds["Streets:main street"] == "transit"
    assert kinds["Willow Cafe:dining area"] == kinds["Town Square:plaza"] == "social"
    assert kinds["Lumen Gallery:artist studio"] == kinds["Maple Row:Ortiz home"] == "workplace"


def test_v1_chat_depends_on_energy_night_and_place() -> None:
    rewards = {}
    for label, start, place, energy in [
        ("day cafe", "2023-02-13 09:00", "Willow Cafe:dining area", 1.0),
        ("tired", "2023-02-13 09:00", "Willow Cafe:dining area", 0.1),
        ("night", "2023-02-13 23:00", "Willow Cafe:dining area", 1.0),
        ("street", "2023-02-13 09:00", "Streets:main street", 1.0),
    ]:
        env = _pair(1, start, place)
        env.energy[:] = energy
        env._refresh()
        gain_before = env.aware[0, -1]
        _chat(env, CHAT)
        rewards[label] = env.aware[0, -1] - gain_before * (1 - env.dynamics.awareness_decay)
    assert rewards["day cafe"] > 2 * rewards["tired"] > 0
    assert rewards["day cafe"] > 5 * rewards["night"] > 0
    assert rewards["day cafe"] > 3 * rewards["street"] > 0


def test_v1_work_conditions_outreach_and_decay_is_charged() -> None:
    # Two identical towns; in one the artists have worked: their talk persuades more.
    gains = []
    for stock in (0.0, 100.0):
        env = _pair(1)
        env._core.readiness_stock[0, 0] = stock
        env._refresh()  # derived quantities (readiness) follow a change of state
        before = env.aware[0, -1]
        _chat(env, CHAT)
        gains.append(env.aware[0, -1] - before * (1 - env.dynamics.awareness_decay))
    floor = env.dynamics.readiness_floor
    assert gains[0] == pytest.approx(floor * gains[1], rel=1e-6)
    # Nobody talks: the artists' awareness term is the (negative) net change of community awareness.
    env = _pair(1)
    aware = env.aware[0].copy()
    idle = np.full(len(env.personas), IDLE, dtype=np.int64)
    for _ in range(5):
        env.step_arrays(idle)
    nonmember = 1.0 - env.members[0]
    net = float(((env.aware[0] - aware) * nonmember).sum())
    assert net < 0
    assert env.episode_terms[0, 0] == pytest.approx(net)


def test_v1_sleep_at_home_restores_more_than_a_nap() -> None:
    gains = {}
    for label, start in (("night", "2023-02-13 23:00"), ("day", "2023-02-13 14:00")):
        env = ga_env.parallel_env(groups=["residents"], max_agents=1, start=start)
        env.reset(seed=0)
        env.energy[0] = 0.2
        env.step_arrays(np.array([TASK]))  # at home: rest
        gains[label] = env.energy[0] - 0.2
    assert gains["night"] > 3 * gains["day"] > 0


def test_goal_metrics_count_nights_at_home_and_social_chats() -> None:
    env = ga_env.parallel_env(groups=["artist_collective", "residents"], max_cycles=144)
    env.reset(seed=1)
    done = False
    while not done:  # everyone stays home and rests: all nights at home, no chats
        _, _, _, done = env.step_arrays(np.full(len(env.personas), TASK, dtype=np.int64))
    m = env.goal_metrics()
    assert set(m) == {"artist_collective", "residents"}
    for group in m.values():
        assert group["night_at_home"] == 1.0 and group["chat_at_social_sites"] == 0.0
        assert group["share/night/task"] == 1.0 and group["share/morning/move"] == 0.0
        assert group["task_progress"] == 0.0
    assert {"awareness_end", "supporters"} <= set(m["artist_collective"]) and "awareness_end" not in m["residents"]
    env.reset(seed=1)
    for _ in range(30):  # everyone walks: nobody is at home by day, no night yet
        env.step_arrays(np.full(len(env.personas), MOVE, dtype=np.int64))
    assert env.goal_metrics()["residents"]["share/morning/move"] == 1.0


def test_render_before_reset_is_an_error() -> None:
    env = ga_env.parallel_env(render_mode="ansi")
    with pytest.raises(RuntimeError, match="reset"):
        env.render()
