"""Town-v1, the current dynamics (``from ga_env import town_v1``); see :mod:`ga_env.town`."""

from ga_env.town import env, parallel_env, raw_env

__all__ = ["env", "parallel_env", "raw_env"]
