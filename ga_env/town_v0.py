"""Town-v0, the first release's dynamics (``from ga_env import town_v0``), kept for reproducibility.

Same map, personas, groups, spaces and API as :mod:`ga_env.town_v1`; only the constants differ
(``ga_env.Dynamics.for_version(0)``): chat is free of energy and night, conversations pay without
saturation, awareness decay is not charged, work does not condition outreach, places do not matter.
"""

from typing import Any

from ga_env.town import TownEnv, parallel_to_aec

__all__ = ["env", "parallel_env", "raw_env"]


def parallel_env(**kwargs: Any) -> TownEnv:
    """Town-v0 as a PettingZoo ``ParallelEnv`` (arguments as :func:`ga_env.parallel_env`)."""
    return TownEnv(version=0, **kwargs)


def env(**kwargs: Any) -> Any:
    """Town-v0's AEC version."""
    return parallel_to_aec(parallel_env(**kwargs))


raw_env = parallel_env
