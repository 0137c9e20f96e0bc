"""Simulate the town as a named run: ``python -m scripts.simulate --name NAME --step 144``.

The workflow of the original Generative Agents, made reliable::

    ga-simulate --name monday --start "2023-02-13 07:00" --step 144 --stride 10
    ga-simulate --name monday --resume --step 144          # continue exactly where it stopped
    ga-simulate --name tuesday --fork monday --step 72     # a new run from monday's latest checkpoint
    ga-simulate --name monday --resume --interactive       # the console (type help)
    ga-simulate --name watch --mind trained agent.checkpoint=outputs/artists/<run>/checkpoint.npz

Positional arguments are Hydra overrides of the training config (``conf/``): ``env.groups=[...]``,
``env.max_agents=8``, ``llm=scripted``, ``agent.hidden=...``. ``--mind`` picks who decides:
``scripted`` (the hand-written routine), ``random``, ``trained`` (a GRPO checkpoint, given by
``agent.checkpoint=PATH``) or ``generative`` (the LLM personas of
``agents.generative``, when installed).

Run folders: ``<results>/runs/NAME/`` (see ``scripts/runstore.py``). A checkpoint is written every
``--checkpoint-every`` steps, at ``save``/``fin`` and at the end; a run killed at any moment resumes
from its last checkpoint and, with a deterministic mind (scripted backend), continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import ga_env
from conf.schema import Config, register_configs, to_config
from scripts.runstore import DEFAULT_RESULTS, RunError, RunStore, validate_name
from scripts.society import PolicySociety

MINDS = ("scripted", "random", "trained", "generative")


# -- configuration ---------------------------------------------------------------------------------------
def compose_config(overrides: Sequence[str]) -> Config:
    """The typed config from Hydra overrides, composed exactly as training does (``conf/config.yaml``)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="conf", version_base=None):
            cfg = compose(config_name="config", overrides=list(overrides))
        return to_config(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else None
        detail = " ".join(str(e).split("\n")[0:1]) + (f" ({str(cause).splitlines()[0]})" if cause else "")
        raise RunError(
            "conf/config.yaml",
            "overrides",
            f"{detail}",
            "write KEY=VALUE with a key of conf/schema.py and a value of its type (e.g. env.max_agents=8 llm=scripted)",
        ) from None
    finally:
        GlobalHydra.instance().clear()


def make_env(cfg: Config, start: str, stride: int | None, *, rich: bool = False) -> ga_env.TownEnv:
    """The town for a simulation: the config's groups and dynamics, the run's clock.

    ``max_cycles`` stays the config's episode length (a policy's "episode progress" feature
    saturates after it); the simulation itself runs for as many steps as asked.
    """
    dyn = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.env.dynamics.items()}
    return ga_env.parallel_env(
        groups=list(cfg.env.groups),
        max_agents=cfg.env.max_agents,
        max_cycles=cfg.env.max_cycles,
        stride=stride if stride is not None else cfg.env.stride,
        start=start,
        obs_mode="box",
        action_mode="rich" if rich else "discrete",
        text_obs=rich,
        dynamics=dyn or None,
        version=cfg.env.version,
    )


def load_trained_policy(path: str | Path, env: ga_env.TownEnv, rng: np.random.Generator) -> Any:
    """A ``SoftmaxPolicy`` with the parameters of a GRPO checkpoint (``param/<k>`` arrays).

    The file (or a run folder holding ``checkpoint.npz``) is read and verified by the trainer's
    :func:`trainers.grpo.load_checkpoint` (checksum; the previous checkpoint if the newest is damaged).

    Raises:
        RunError: if the file is missing or unreadable, or was trained on another town layout.
    """
    from agents import SoftmaxPolicy
    from trainers.grpo import CheckpointError, load_checkpoint

    path = Path(path)
    try:
        arrays, path = load_checkpoint(path)
    except CheckpointError as e:
        raise RunError(path, "agent.checkpoint", str(e), "give the checkpoint.npz of a GRPO run") from None
    params = {k[len("param/") :]: np.asarray(v) for k, v in arrays.items() if k.startswith("param/")}
    if not params:
        raise RunError(path, "agent.checkpoint", "has no param/<name> arrays", "give the checkpoint.npz of a GRPO run")
    hidden = int(params["w1"].shape[2]) if "w1" in params else 0
    policy = SoftmaxPolicy(env.obs_dim, len(env.groups), hidden=hidden, rng=rng)
    for k, v in policy.params.items():
        if k not in params or params[k].shape != v.shape:
            got = params[k].shape if k in params else "missing"
            raise RunError(
                path,
                f"param/{k}",
                f"shape {got} does not fit this town (expected {v.shape}: {len(env.groups)} groups, obs size {env.obs_dim})",
                "simulate with the env.groups the policy was trained on (see config.yaml next to the checkpoint)",
            )
        policy.params[k] = params[k]
    return policy


def generative_available() -> bool:
    """Whether the generative personas (``agents.generative``) are installed."""
    import importlib.util

    return importlib.util.find_spec("agents.generative") is not None


def build_society(cfg: Config, meta: dict[str, Any], run_dir: Path) -> Any:
    """The society (env + minds) described by a run's meta, reset to its first step."""
    mind, seed = meta["mind"], int(meta["seed"])
    rng = np.random.default_rng(seed)
    if mind == "generative":
        from scripts.generative_driver import make_generative_society

        return make_generative_society(cfg, meta, run_dir)
    env = make_env(cfg, meta["start"], meta["stride"])
    if mind == "scripted":
        from agents import ScriptedPolicy

        policy: Any = ScriptedPolicy(env.groups)
    elif mind == "random":
        from agents import RandomPolicy

        policy = RandomPolicy()
    elif mind == "trained":
        policy = load_trained_policy(meta["policy_checkpoint"], env, np.random.default_rng(0))
    else:
        raise RunError("argument", "--mind", f"{mind!r} is unknown", f"use one of {', '.join(MINDS)}")
    society = PolicySociety(env, policy, rng, mind)
    society.reset(seed)
    return society


def map_meta(env: ga_env.TownEnv) -> dict[str, Any]:
    """The map as plain data for the replay page (walls, place of every tile, place names)."""
    m = env.town_map
    return {
        "name": m.name,
        "width": m.width,
        "height": m.height,
        "places": list(m.places),
        "place_of": m.place_of.astype(int).tolist(),
        "walkable": ["".join("1" if w else "0" for w in row) for row in m.walkable],
    }


# -- the simulation -----------------------------------------------------------------------------------------
class Simulation:
    """A named run: its store, config and society, with stepping and checkpoints.

    Use :meth:`create`, :meth:`resume` or :meth:`fork` to get one.
    """

    def __init__(self, store: RunStore, cfg: Config, meta: dict[str, Any], society: Any, checkpoint_every: int):
        self.store, self.cfg, self.meta, self.society = store, cfg, meta, society
        self.checkpoint_every = checkpoint_every
        self.last_checkpoint = society.t
        self._writer: tuple[int, int] | None = None  # (pid, step) of a background checkpoint writer
        self.background_checkpoints = False  # periodic checkpoints from a forked child (see run())

    @property
    def env(self) -> ga_env.TownEnv:
        """The town."""
        env: ga_env.TownEnv = self.society.env
        return env

    @property
    def step_count(self) -> int:
        """Steps simulated so far."""
        return int(self.society.t)

    # -- constructors --
    @classmethod
    def create(
        cls,
        results: Path,
        name: str,
        overrides: Sequence[str],
        *,
        start: str,
        stride: int | None,
        mind: str | None = None,
        seed: int = 0,
        policy_checkpoint: str | None = None,
        checkpoint_every: int = 10,
    ) -> Simulation:
        """Start a new named run (its step 0 is checkpointed at once).

        ``mind=None`` picks ``trained`` when a GRPO checkpoint is given (``policy_checkpoint`` or
        ``agent.checkpoint=PATH`` in the overrides), else ``generative`` when installed, else
        ``scripted``.
        """
        store = RunStore(results, name)
        if store.exists():
            raise RunError(
                store.meta_path,
                "--name",
                f"run {name!r} already exists",
                "pick another --name, or continue it with --resume",
            )
        try:
            dt.datetime.fromisoformat(start)
        except ValueError:
            raise RunError(
                "argument", "--start", f"{start!r} is not a date and time", "write 'YYYY-MM-DD HH:MM'"
            ) from None
        cfg = compose_config(overrides)
        policy_checkpoint = policy_checkpoint or cfg.agent.checkpoint
        if mind is None:
            mind = "trained" if policy_checkpoint else ("generative" if generative_available() else "scripted")
        if mind not in MINDS:
            raise RunError("argument", "--mind", f"{mind!r} is unknown", f"use one of {', '.join(MINDS)}")
        if mind == "trained" and not policy_checkpoint:
            raise RunError(
                "argument", "--mind trained", "needs a GRPO checkpoint", "add agent.checkpoint=PATH/checkpoint.npz"
            )
        meta: dict[str, Any] = {
            "name": name,
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "overrides": list(overrides),
            "config": _config_dict(cfg),
            "start": start,
            "stride": stride if stride is not None else cfg.env.stride,
            "mind": mind,
            "seed": seed,
            "policy_checkpoint": str(Path(policy_checkpoint).resolve()) if policy_checkpoint else None,
        }
        society = build_society(cfg, meta, store.dir)
        env: ga_env.TownEnv = society.env
        meta["personas"] = [
            {"name": p.name, "group": p.group, "age": p.age, "task": p.task, "living_area": p.living_area}
            for p in env.personas
        ]
        meta["groups"] = [{"name": g.name, "cause": g.cause, "objective": dict(g.objective)} for g in env.groups]
        meta["map"] = map_meta(env)
        meta["initial"] = {p.name: list(env.position(i)) for i, p in enumerate(env.personas)}
        store.create(meta)
        sim = cls(store, cfg, store.meta(), society, checkpoint_every)
        sim.save()
        return sim

    @classmethod
    def resume(cls, results: Path, name: str, *, checkpoint_every: int = 10, warn: Any = print) -> Simulation:
        """Continue a run from its newest good checkpoint (later step records are dropped)."""
        store = RunStore(results, name)
        meta = store.meta()
        cfg = compose_config(meta["overrides"])
        society = build_society(cfg, meta, store.dir)
        step, state, _ = store.load_latest(warn=warn)
        society.load_state_dict(state["society"])
        store.truncate_steps(step)
        return cls(store, cfg, meta, society, checkpoint_every)

    @classmethod
    def fork(cls, results: Path, name: str, other: str, *, checkpoint_every: int = 10, warn: Any = print) -> Simulation:
        """A new run ``name`` that starts from run ``other``'s newest good checkpoint."""
        src = RunStore(results, validate_name(other, "--fork"))
        dst = RunStore(results, name)
        if dst.exists():
            raise RunError(dst.meta_path, "--name", f"run {name!r} already exists", "pick another --name")
        meta = src.meta()
        step, _, path = src.load_latest(warn=warn)
        meta = {k: v for k, v in meta.items() if k != "format"}
        meta.update(name=name, created=dt.datetime.now().isoformat(timespec="seconds"), forked_from=[other, step])
        dst.create(meta)
        dst.copy_checkpoint(path)
        dst.append_steps(src.steps()[:step])
        return cls.resume(results, name, checkpoint_every=checkpoint_every, warn=warn)

    # -- running --
    def run(self, n: int, *, progress: bool = True, on_step: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Simulate ``n`` more steps, checkpointing every ``checkpoint_every`` steps.

        ``on_step(record)`` is called after each step (and its checkpoint, if due), e.g. for live
        views or benchmarks.

        Checkpoints are incremental (the large arrays' completed blocks are shared files, see
        ``scripts/runstore.py``), so they are written in this process by default. With
        ``background_checkpoints = True`` they are written by a forked child process instead
        (copy-on-write snapshot, as Redis' BGSAVE does); the run then waits for the last one
        before it returns. On a week-long run the child's copy-on-write faults cost the
        simulation more than the incremental write does (``scripts/bench_longrun.py``).
        """
        buffer: list[dict[str, Any]] = []
        bar = tqdm(total=n, desc=f"simulate {self.store.name}", unit="step", disable=not progress, file=sys.stderr)
        try:
            for _ in range(n):
                record = self.society.step()
                buffer.append(record)
                bar.update(1)
                bar.set_postfix_str(record["time"])
                if self.checkpoint_every and self.step_count % self.checkpoint_every == 0:
                    self.store.append_steps(buffer)
                    buffer = []
                    self.save(background=self.background_checkpoints)
                if on_step is not None:
                    on_step(record)
        finally:
            self.store.append_steps(buffer)
            self.wait_for_checkpoint()
            bar.close()
            self.write_usage()

    def write_usage(self) -> dict[str, Any] | None:
        """The LLM usage report of a generative run (None for other minds).

        Written to ``<run>/usage.json`` (atomically) and as TensorBoard scalars in ``<run>/tb``
        (``llm/calls``, ``llm/retries``, ``llm/fallbacks``, ``llm/faults/<kind>``...) at the
        current step. The counts are those of the whole run, resumes included (the meter is
        checkpointed).
        """
        llm = getattr(self.society, "llm", None)
        usage = getattr(llm, "usage", None)
        if usage is None:
            return None
        from scripts.runstore import atomic_write_bytes
        from trainers.grpo import _import_summary_writer

        report: dict[str, Any] = {"step": self.step_count, "backend": getattr(llm, "name", "?"), **usage.report()}
        atomic_write_bytes(self.store.dir / "usage.json", json.dumps(report, indent=2).encode())
        writer = _import_summary_writer()(str(self.store.dir / "tb"))
        try:
            for tag, value in usage.scalars().items():
                writer.add_scalar(tag, value, self.step_count)
        finally:
            writer.close()
        return report

    def save(self, *, background: bool = False) -> Path:
        """Checkpoint now (atomic); returns the checkpoint's path.

        Args:
            background: write it from a forked child process (POSIX) and return at once.
        """
        self.wait_for_checkpoint()
        step = self.step_count
        path = self.store.ckpt_dir / f"ckpt-{step:08d}.npz"
        if background and hasattr(os, "fork"):
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: write the snapshot it inherited, then leave without cleanup
                code = 1
                try:
                    _die_with_parent()
                    self._write_checkpoint(step)
                    code = 0
                except BaseException as e:
                    print(f"warning: background checkpoint of step {step} failed: {e}", file=sys.stderr)
                finally:
                    os._exit(code)
            self._writer = (pid, step)
        else:
            self._write_checkpoint(step)
        self.last_checkpoint = step
        return path

    def _write_checkpoint(self, step: int) -> Path:
        state = {"society": self.society.state_dict(), "saved": dt.datetime.now().isoformat(timespec="seconds")}
        return self.store.save_checkpoint(step, state)

    def wait_for_checkpoint(self) -> None:
        """Wait for a background checkpoint; if it failed, write it again in this process."""
        writer = self._writer
        if writer is None:
            return
        self._writer = None
        pid, step = writer
        _, status = os.waitpid(pid, 0)
        if status != 0 and step == self.step_count:
            self._write_checkpoint(step)  # the state is still that of the step: redo it here
        elif status != 0:
            print(f"warning: the checkpoint of step {step} was not written; the next one will be", file=sys.stderr)


def _die_with_parent() -> None:
    """Linux: the checkpoint writer dies with the simulation (a killed run leaves no writer behind)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _config_dict(cfg: Config) -> dict[str, Any]:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


# -- command line -------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """``(options, Hydra overrides)``."""
    parser = argparse.ArgumentParser(
        prog="ga-simulate",
        description="Simulate the town as a named run (see the module docstring).",
        epilog="Positional KEY=VALUE arguments are Hydra overrides, e.g. env.max_agents=8 llm=scripted.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (KEY=VALUE) of conf/config.yaml")
    parser.add_argument("--name", required=True, help="unique run name (letters, digits, _ - .)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    parser.add_argument("--start", default="2023-02-13 07:00", help="start date and time, 'YYYY-MM-DD HH:MM'")
    parser.add_argument("--step", type=int, default=0, help="steps to simulate now (default 0)")
    parser.add_argument("--until", type=int, default=None, help="simulate until the run has this many steps")
    parser.add_argument("--stride", type=int, default=None, help="minutes per step (default: env.stride, 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the town and the minds")
    parser.add_argument("--mind", choices=MINDS, default=None, help="who decides (default: generative if installed)")
    parser.add_argument("--resume", action="store_true", help="continue the named run from its last checkpoint")
    parser.add_argument("--fork", metavar="OTHER", default=None, help="start from run OTHER's latest checkpoint")
    parser.add_argument("--interactive", action="store_true", help="open the console (commands on stdin)")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="checkpoint every N steps (0 = only at end)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unknown options {unknown}; Hydra overrides are written KEY=VALUE without dashes")
    return args, list(args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-simulate``; returns the exit code."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args, overrides = parse_args(argv)
    results = Path(args.results)
    try:
        validate_name(args.name)
        if args.step < 0:
            raise RunError("argument", "--step", f"{args.step} is negative", "give a number of steps >= 0")
        if args.checkpoint_every < 0:
            raise RunError("argument", "--checkpoint-every", "is negative", "give 0 (only at the end) or N > 0")
        if args.resume or args.fork:
            if args.resume and args.fork:
                raise RunError("argument", "--resume/--fork", "both given", "use one: --resume NAME or --fork OTHER")
            if overrides or args.mind:
                raise RunError(
                    "argument",
                    "overrides",
                    "a resumed or forked run keeps its own configuration",
                    "drop the KEY=VALUE overrides and --mind (or start a new run)",
                )
            if args.resume:
                sim = Simulation.resume(results, args.name, checkpoint_every=args.checkpoint_every)
            else:
                sim = Simulation.fork(results, args.name, args.fork, checkpoint_every=args.checkpoint_every)
        else:
            sim = Simulation.create(
                results,
                args.name,
                overrides,
                start=args.start,
                stride=args.stride,
                mind=args.mind,
                seed=args.seed,
                checkpoint_every=args.checkpoint_every,
            )
        steps = args.step
        if args.until is not None:
            steps = max(0, args.until - sim.step_count)
        if steps:
            sim.run(steps, progress=not args.no_progress)
            sim.save()
        if args.interactive:
            from scripts.console import Console

            return Console(sim, progress=not args.no_progress).loop(sys.stdin, sys.stdout)
        llm = getattr(sim.society, "llm", None)
        if llm is not None and steps:
            print(f"LLM usage ({llm.name}): {llm.usage.summary()}; report in {sim.store.dir / 'usage.json'}")
        print(f"run {sim.store.name}: {sim.step_count} steps, time {sim.env.now:%Y-%m-%d %H:%M}, in {sim.store.dir}")
        return 0
    except (RunError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
