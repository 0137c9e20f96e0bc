"""The town as a vector env for single-agent learners with parameter sharing (SuperSuit).

``vec_env(num_envs, base_class=...)`` chains SuperSuit's ``pettingzoo_env_to_vec_env_v1`` (one
row per persona) and ``concat_vec_envs_v1`` (``num_envs`` copies of the town), so a learner such
as Stable-Baselines3 PPO sees ``num_envs * N`` rows that share one policy::

    import ga_env
    venv = ga_env.vec_env(4, base_class="stable_baselines3", groups=["artist_collective", "residents"])

What works (checked by ``tests/test_supersuit.py``):

* ``obs_mode="box"`` (the default here): observations ``(rows, D)`` float32, ``Discrete(4)`` actions;
  both ``base_class="gymnasium"`` and ``"stable_baselines3"``, in-process or with ``num_cpus``
  worker processes.
* ``obs_mode="dict"`` (the env's own default) batches too, as a dict of arrays
  ``{"observation": (rows, D), "action_mask": (rows, 4)}``; Stable-Baselines3 then needs
  ``MultiInputPolicy`` and sees the mask only as an input (its PPO does not mask). Prefer ``box``.
* The population is fixed (no persona leaves before the day ends: every agent truncates at
  ``max_cycles`` together), so SuperSuit's ``black_death`` is not needed; the vector env resets
  the town automatically at the end of each day.

What cannot work: ``action_mode="rich"`` (its action is a ``Dict`` holding a ``Text`` utterance,
which vector envs cannot batch). :func:`vec_env` refuses it with a :class:`TownDataError` that
names ``action_mode="discrete"``.
"""

from __future__ import annotations

from typing import Any

from ga_env.errors import TownDataError
from ga_env.town import TownEnv

__all__ = ["BASE_CLASSES", "vec_env"]

BASE_CLASSES: tuple[str, ...] = ("gymnasium", "stable_baselines3")


def vec_env(
    num_envs: int = 1,
    *,
    base_class: str = "gymnasium",
    num_cpus: int = 0,
    env: TownEnv | None = None,
    **env_kwargs: Any,
) -> Any:
    """SuperSuit vector env of ``num_envs`` towns, one row per persona (parameter sharing).

    Args:
        num_envs: copies of the town stepped together (rows = ``num_envs * N``).
        base_class: ``"gymnasium"`` (a ``gymnasium.vector.VectorEnv``) or ``"stable_baselines3"``
            (an SB3 ``VecEnv``).
        num_cpus: worker processes (0 = step the copies in this process).
        env: an already built town to copy (e.g. ``cfg.env.make()``); else one is built from
            ``env_kwargs`` with ``obs_mode="box"`` unless given.
        **env_kwargs: arguments of :func:`ga_env.parallel_env`.

    Raises:
        TownDataError: a mode that cannot be vectorised or a bad argument.
        ImportError: SuperSuit is not installed (extra ``[marl]``).
    """
    if base_class not in BASE_CLASSES:
        raise TownDataError("argument", "base_class", f"{base_class!r} is unknown", f"use one of {list(BASE_CLASSES)}")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise TownDataError("argument", "num_envs", f"{num_envs!r} is not a positive integer", "give e.g. 4")
    if env is not None and env_kwargs:
        raise TownDataError(
            "argument", "env", "given together with env arguments", "pass either a built env or its arguments"
        )
    if env is None:
        env = TownEnv(**{"obs_mode": "box", **env_kwargs})
    if env.action_mode != "discrete":
        raise TownDataError(
            "argument",
            "action_mode",
            f"{env.action_mode!r} actions hold a Text utterance, which a vector env cannot batch",
            "use action_mode='discrete' (and obs_mode='box') with vec_env / SuperSuit",
        )
    try:
        import supersuit
    except ImportError:
        raise ImportError(
            "ga_env.vec_env: needs SuperSuit, which is not installed. Fix: pip install -e '.[marl]'"
        ) from None
    markov = supersuit.pettingzoo_env_to_vec_env_v1(env)
    venv = supersuit.concat_vec_envs_v1(markov, num_envs, num_cpus=num_cpus, base_class="gymnasium")
    return venv if base_class == "gymnasium" else _seedable_sb3(venv)


def _seedable_sb3(venv: Any) -> Any:
    """SuperSuit's SB3 wrapper with working seeds.

    SuperSuit 3.11's ``SB3VecEnvWrapper`` forwards ``seed()`` to its gymnasium vector env, which has
    no ``seed`` method (so ``PPO(..., seed=0)`` crashes), and its ``reset(seed=...)`` drops the seed.
    Here a seed is kept for the next reset, as SB3's own ``VecEnv.seed`` does (copy ``i`` gets
    ``seed + i``, SuperSuit's convention).
    """
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SeedableSB3VecEnv(SB3VecEnvWrapper):  # type: ignore[misc]
        def __init__(self, venv: Any) -> None:
            super().__init__(venv)
            self._next_seed: int | None = None

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._next_seed = seed
            return [None if seed is None else seed + i for i in range(self.num_envs)]

        def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
            if seed is not None:
                self._next_seed = seed
            observations, self.reset_infos = self.venv.reset(seed=self._next_seed, options=options)
            self._next_seed = None
            return observations

    return SeedableSB3VecEnv(venv)
