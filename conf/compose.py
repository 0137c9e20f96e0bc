"""The one way every command composes its configuration: :func:`compose` and :func:`hydra_app`.

Every command (``ga-simulate``, ``ga-eval --judge``, ``scripts/compare.py``,
``scripts/train_sb3_ppo.py``, ``scripts/results.py``...) calls :func:`compose` with its KEY=VALUE
overrides; ``python -m trainers.grpo`` is a Hydra application (output folders, ``hydra.run.dir``,
multirun sweeps) made with :func:`hydra_app`. Both register the same schema, read the same
``conf/config.yaml`` and validate with :func:`conf.schema.to_config`, so a key means the same
thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps

from omegaconf import DictConfig, OmegaConf

from conf.schema import Config, ConfigError, register_configs, to_config


def compose(overrides: Sequence[str] = ()) -> Config:
    """The typed, validated config of ``conf/config.yaml`` with Hydra ``overrides`` (``KEY=VALUE``).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a value the schema rejects;
            the message names the key and the fix.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="conf", version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        return to_config(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else None
        detail = " ".join(str(e).split("\n")[0:1]) + (f" ({str(cause).splitlines()[0]})" if cause else "")
        raise ConfigError(
            "overrides",
            detail,
            "write KEY=VALUE with a key of conf/schema.py and a value of its type (e.g. env.max_agents=8 llm=scripted);"
            " the defaults are conf/config.yaml",
        ) from None
    finally:
        GlobalHydra.instance().clear()


def hydra_app(func: Callable[[Config, str], None]) -> Callable[[], None]:
    """A Hydra application over ``conf/config.yaml``: ``func(config, config_yaml)`` gets the typed,
    validated config and its resolved YAML (what the run folder's ``config.yaml`` records).

    Used as ``@hydra_app`` on a command's ``main``; the command line is Hydra's (``KEY=VALUE``,
    ``+experiment=NAME``, ``hydra.run.dir=...``, ``-m`` for sweeps).
    """
    import hydra

    register_configs()

    @hydra.main(version_base=None, config_path="pkg://conf", config_name="config")
    @wraps(func)
    def main(cfg: DictConfig) -> None:
        func(to_config(cfg), OmegaConf.to_yaml(cfg, resolve=True))

    return main  # type: ignore[no-any-return]
