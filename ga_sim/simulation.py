"""Simulate the town as a named run: ``python -m scripts.simulate --name NAME --step 144``.

The workflow of the original Generative Agents, made reliable::

    ga-simulate --name monday --start "2023-02-13 07:00" --step 144 --stride 10
    ga-simulate --name monday --resume --step 144          # continue exactly where it stopped
    ga-simulate --name tuesday --fork monday --step 72     # a new run from monday's latest checkpoint
    ga-simulate --name monday --resume --interactive       # the console (type help)
    ga-simulate --name watch --mind trained agent.checkpoint=outputs/artists/<run>/checkpoint.npz
    ga-simulate --name taught --lessons outputs/artists/<run>   # personas prompted with a GRPO run's lessons

Positional arguments are Hydra overrides of the training config (``conf/``): ``env.groups=[...]``,
``env.max_agents=8``, ``llm=scripted``, ``agent.hidden=...``. ``--mind`` picks who decides:
``scripted`` (the hand-written routine), ``random``, ``trained`` (a GRPO checkpoint, given by
``agent.checkpoint=PATH``) or ``generative`` (the LLM personas of
``agents.generative``, when installed). A neuro-symbolic checkpoint (its stored config says
``agent.kind: neurosymbolic``) runs as trained: MLP + λ·LLM, the LLM being the run's ``llm``
config, prompted with the checkpoint's lessons.

``--lessons RUN_OR_CHECKPOINT`` puts the lessons of a GRPO run (its ``checkpoint.npz``, field
``lessons``) into the personas' system prompts (generative mind; trained mind with a
neuro-symbolic checkpoint, instead of the checkpoint's own). The lessons and their source are
stored in the run's meta (``lessons``, ``lessons_source``), so ``--resume`` and ``--fork`` keep
them even if the GRPO run has since moved on.

Run folders: ``<results>/runs/NAME/`` (see ``ga_sim/runstore.py``). A checkpoint is written every
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import ga_env
from agents import Policy
from agents.llm.base import LLMUnavailable
from conf.compose import compose
from conf.schema import Config, LLMConfig
from ga_env.checkpoint import CheckpointError, load_checkpoint
from ga_sim.runstore import RunError, RunStore, validate_name
from ga_sim.society import PolicySociety, Society

MINDS = ("scripted", "random", "trained", "generative")


# -- configuration ---------------------------------------------------------------------------------------
def compose_config(overrides: Sequence[str]) -> Config:
    """The typed config from Hydra overrides (:func:`conf.compose.compose`, as every command does)."""
    return compose(overrides)


def make_env(cfg: Config, start: str, stride: int | None, *, rich: bool = False) -> ga_env.TownEnv:
    """The town for a simulation: the config's town, groups and dynamics; the run's clock.

    ``max_cycles`` stays the config's episode length (a policy's "episode progress" feature
    saturates after it); the simulation itself runs for as many steps as asked.
    """
    return cfg.env.make(
        start=start,
        stride=stride if stride is not None else cfg.env.stride,
        obs_mode="box",
        action_mode="rich" if rich else "discrete",
        text_obs=rich,
    )


def load_trained_policy(
    path: str | Path,
    env: ga_env.TownEnv,
    rng: np.random.Generator,
    *,
    llm: LLMConfig | None = None,
    make_llm: Callable[[], Any] | None = None,
    lessons: Mapping[str, Sequence[str]] | None = None,
) -> Policy:
    """The policy of a GRPO checkpoint (:func:`agents.factory.load_policy`).

    A ``SoftmaxPolicy``, or for a neuro-symbolic checkpoint a ``NeuroSymbolicPolicy`` whose LLM is
    ``make_llm()`` (else the shared backend of ``llm``) and whose prompts hold ``lessons`` (None:
    the checkpoint's own).

    Raises:
        RunError: if the file is missing or damaged, was trained on another town layout, or is
            neuro-symbolic and no LLM is given.
    """
    from agents.factory import load_policy

    try:
        policy = load_policy(path, env, rng, llm=llm, make_llm=make_llm, lessons=lessons is None)
    except CheckpointError as e:
        raise RunError.of(e) from None
    for group, texts in (lessons or {}).items():
        policy.set_lessons(group, texts)
    return policy


def read_lessons(source: str | Path) -> tuple[dict[str, list[str]], Path]:
    """The lessons of a GRPO run (its folder or ``checkpoint.npz``, field ``lessons``) and the file read.

    Raises:
        RunError: the file is missing or damaged, stores no lessons, or they are empty; the
            message names the file, the field and the fix.
    """
    from agents.factory import checkpoint_lessons

    try:
        arrays, path = load_checkpoint(source)
        lessons = checkpoint_lessons(arrays, path)
    except CheckpointError as e:
        raise RunError.of(e) from None
    if lessons is None:
        raise RunError(
            path,
            "lessons",
            "this checkpoint stores no lessons",
            "give --lessons the folder or checkpoint.npz of a GRPO run (python -m trainers.grpo) that made lessons",
        )
    if not any(lessons.values()):
        raise RunError(
            path,
            "lessons",
            "is empty (the run made no lessons yet)",
            "give a GRPO run that has finished at least one iteration, or drop --lessons",
        )
    return lessons, path


def resolve_lessons(
    cfg: Config, mind: str, policy_checkpoint: str | None, lessons: str | Path | None
) -> tuple[dict[str, list[str]] | None, str | None]:
    """``(lessons, source)`` of a new run (stored in its meta), checked against the mind and the town.

    ``--lessons`` needs a mind with prompts (``generative``, or ``trained`` with a neuro-symbolic
    checkpoint); a neuro-symbolic checkpoint without ``--lessons`` brings its own lessons.

    Raises:
        RunError: a mind without prompts, a file without lessons, lessons of groups not in the town.
    """
    source: Path | None = None
    out: dict[str, list[str]] | None = None
    fix = ""
    if mind == "trained" and policy_checkpoint:
        from agents.factory import checkpoint_agent, checkpoint_lessons

        try:
            arrays, path = load_checkpoint(policy_checkpoint)
            agent = checkpoint_agent(arrays, path)
            own = checkpoint_lessons(arrays, path)
        except CheckpointError as e:
            raise RunError.of(e) from None
        neuro = agent is not None and agent.kind == "neurosymbolic"
        if lessons is not None and not neuro:
            kind = agent.kind if agent is not None else "softmax (no config stored)"
            raise RunError(
                path,
                "config_yaml: agent.kind",
                f"is {kind}: this policy asks no LLM, so --lessons would reach no prompt",
                "use a checkpoint trained with agent=neurosymbolic, or --mind generative --lessons ...",
            )
        if neuro and lessons is None:
            out, source = own or {}, path
            fix = "simulate the town it was trained on: the env.groups of config.yaml next to the checkpoint"
    elif lessons is not None and mind in ("scripted", "random"):
        raise RunError(
            "argument",
            "--lessons",
            f"the {mind} mind has no language model to read them",
            "use --mind generative, or --mind trained with a neuro-symbolic checkpoint",
        )
    if lessons is not None:
        out, source = read_lessons(lessons)
    if out:
        unknown = sorted(set(out) - set(cfg.env.groups))
        if unknown:
            raise RunError(
                source or "argument",
                "lessons",
                f"are for group(s) {', '.join(unknown)}, which are not in this town (env.groups="
                f"[{','.join(cfg.env.groups)}])",
                fix or f"add them: env.groups=[{','.join([*cfg.env.groups, *unknown])}]",
            )
    return out, str(source.resolve()) if source is not None else None


def generative_available() -> bool:
    """Whether the generative personas (``agents.generative``) are installed."""
    import importlib.util

    return importlib.util.find_spec("agents.generative") is not None


def build_society(cfg: Config, meta: dict[str, Any], run_dir: Path) -> Society:
    """The society (env + minds) described by a run's meta, reset to its first step."""
    mind, seed = meta["mind"], int(meta["seed"])
    rng = np.random.default_rng(seed)
    if mind == "generative":
        from ga_sim.generative import make_generative_society

        return make_generative_society(cfg, meta, run_dir)
    env = make_env(cfg, meta["start"], meta["stride"])
    if mind == "scripted":
        from agents import ScriptedPolicy

        policy: Policy = ScriptedPolicy(env.groups)
    elif mind == "random":
        from agents import RandomPolicy

        policy = RandomPolicy()
    elif mind == "trained":
        import functools

        from ga_sim.generative import run_backend

        policy = load_trained_policy(
            meta["policy_checkpoint"],
            env,
            np.random.default_rng(0),
            llm=cfg.llm,
            make_llm=functools.partial(run_backend, cfg, run_dir),  # built only for a neuro-symbolic policy
            lessons=meta.get("lessons") or {},
        )
    else:
        raise RunError("argument", "--mind", f"{mind!r} is unknown", f"use one of {', '.join(MINDS)}")
    society = PolicySociety(env, policy, rng, mind)
    society.reset(seed)
    return society


def cast_meta(env: ga_env.TownEnv) -> dict[str, Any]:
    """The run meta's ``personas`` (name, group, age, task, living area) and ``groups`` (name, cause, objective)."""
    return {
        "personas": [
            {"name": p.name, "group": p.group, "age": p.age, "task": p.task, "living_area": p.living_area}
            for p in env.personas
        ],
        "groups": [{"name": g.name, "cause": g.cause, "objective": dict(g.objective)} for g in env.groups],
    }


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

    def __init__(self, store: RunStore, cfg: Config, meta: dict[str, Any], society: Society, checkpoint_every: int):
        self.store, self.cfg, self.meta, self.society = store, cfg, meta, society
        self.checkpoint_every = checkpoint_every
        self.last_checkpoint = society.t
        self._writer: tuple[int, int] | None = None  # (pid, step) of a background checkpoint writer
        self.background_checkpoints = False  # periodic checkpoints from a forked child (see run())

    @property
    def env(self) -> ga_env.TownEnv:
        """The town."""
        return self.society.env

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
        lessons: str | Path | None = None,
    ) -> Simulation:
        """Start a new named run (its step 0 is checkpointed at once).

        ``mind=None`` picks ``trained`` when a GRPO checkpoint is given (``policy_checkpoint`` or
        ``agent.checkpoint=PATH`` in the overrides), else ``generative`` when installed, else
        ``scripted``. ``lessons`` (a GRPO run folder or its ``checkpoint.npz``) puts that run's
        lessons into the personas' prompts (:func:`resolve_lessons`).
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
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            problem = f"{seed!r} is negative" if isinstance(seed, int) else f"{seed!r} is not an integer"
            raise RunError("argument", "--seed", problem, "give a seed >= 0, e.g. --seed 0")
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
        lessons_by_group, lessons_source = resolve_lessons(cfg, mind, policy_checkpoint, lessons)
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
            "lessons": lessons_by_group,
            "lessons_source": lessons_source,
        }
        society = build_society(cfg, meta, store.dir)
        env: ga_env.TownEnv = society.env
        meta.update(cast_meta(env))
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
        ``ga_sim/runstore.py``), so they are written in this process by default. With
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
                llm = self.society.llm
                if llm is not None and llm.unavailable is not None:  # the breaker opened: keep what we have
                    self.store.append_steps(buffer)
                    buffer = []
                    self.save()
                    raise llm.unavailable
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
        llm = self.society.llm
        if llm is None:
            return None
        usage = llm.usage
        from ga_env.checkpoint import atomic_write_bytes
        from trainers.tblog import summary_writer

        report: dict[str, Any] = {"step": self.step_count, "backend": llm.name, **usage.report()}
        atomic_write_bytes(self.store.dir / "usage.json", json.dumps(report, indent=2).encode())
        writer = summary_writer(self.store.dir / "tb")
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


# -- the command ----------------------------------------------------------------------------------------------
def command(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """What ``ga-simulate`` does with its parsed options (see ``scripts/simulate.py``); returns the exit code."""
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
            if overrides or args.mind or getattr(args, "lessons", None):
                raise RunError(
                    "argument",
                    "overrides",
                    "a resumed or forked run keeps its own configuration (and lessons)",
                    "drop the KEY=VALUE overrides, --mind and --lessons (or start a new run)",
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
                lessons=getattr(args, "lessons", None),
            )
        steps = args.step
        if args.until is not None:
            steps = max(0, args.until - sim.step_count)
        if steps:
            sim.run(steps, progress=not args.no_progress)
            sim.save()
        if args.interactive:
            from ga_sim.console import Console

            return Console(sim, progress=not args.no_progress).loop(sys.stdin, sys.stdout)
        llm = sim.society.llm
        if llm is not None and steps:
            print(f"LLM usage ({llm.name}): {llm.usage.summary()}; report in {sim.store.dir / 'usage.json'}")
            print(fallback_line(llm.usage.report()))
        print(f"run {sim.store.name}: {sim.step_count} steps, time {sim.env.now:%Y-%m-%d %H:%M}, in {sim.store.dir}")
        return 0
    except LLMUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        if RunStore(results, args.name).exists():
            print(
                f"the run is saved; once the endpoint works: ga-simulate --name {args.name} --resume", file=sys.stderr
            )
        return 3
    except (RunError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def fallback_line(report: dict[str, Any]) -> str:
    """One line: the share of LLM requests answered by the rule-based fallback, and why."""
    requests, fallbacks = int(report.get("requests", 0)), int(report.get("fallbacks", 0))
    share = fallbacks / requests if requests else 0.0
    why = ", ".join(f"{k}={v}" for k, v in sorted(report.get("fallbacks_by_fault", {}).items())) or "none"
    flag = "  WARNING: the personas ran largely on the rule-based fallback" if share >= 0.2 else ""
    return f"fallback share: {share:.1%} of {requests} requests ({fallbacks}; by fault: {why}){flag}"
