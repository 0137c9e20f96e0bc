"""ga_env: a town of generative-agent personas as a PettingZoo multi-agent environment.

Quick start::

    import ga_env
    env = ga_env.parallel_env(groups=["artist_collective", "residents"])
    obs, infos = env.reset(seed=0)

The env is also registered with PettingZoo: ``pettingzoo.make("parallel", "ga/Town-v1")`` (the
default dynamics); ``"ga/Town-v0"`` keeps the first release's dynamics for reproducibility.
"""

from pettingzoo import register

from ga_env.errors import ActionError, TownDataError
from ga_env.maps import TownMap, load_ascii_map, load_map, load_tiled_map
from ga_env.personas import OBJECTIVE_TERMS, Group, Persona, load_group, load_groups, load_personas
from ga_env.town import TownEnv, env, parallel_env, raw_env
from ga_env.vector import vec_env
from ga_env.world import ACTION_NAMES, DAY_BLOCKS, LATEST_VERSION, OBS, OBS_FEATURES, Dynamics, World

__all__ = [
    "ACTION_NAMES",
    "DAY_BLOCKS",
    "LATEST_VERSION",
    "OBJECTIVE_TERMS",
    "OBS",
    "OBS_FEATURES",
    "ActionError",
    "Dynamics",
    "Group",
    "Persona",
    "TownDataError",
    "TownEnv",
    "TownMap",
    "World",
    "env",
    "load_ascii_map",
    "load_group",
    "load_groups",
    "load_map",
    "load_personas",
    "load_tiled_map",
    "parallel_env",
    "raw_env",
    "vec_env",
]

register("parallel", "ga/Town-v1", entry_point="ga_env.town_v1:parallel_env", max_cycles=144)
register("aec", "ga/Town-v1", entry_point="ga_env.town_v1:env", max_cycles=144)
register("parallel", "ga/Town-v0", entry_point="ga_env.town_v0:parallel_env", max_cycles=144)
register("aec", "ga/Town-v0", entry_point="ga_env.town_v0:env", max_cycles=144)
