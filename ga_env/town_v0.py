"""Versioned entry point of the town, in PettingZoo's style (``from ga_env import town_v0``)."""

from ga_env.town import env, parallel_env, raw_env

__all__ = ["env", "parallel_env", "raw_env"]
