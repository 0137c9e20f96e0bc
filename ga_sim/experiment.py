"""Interventions: change one thing at step k, run N seeds per branch from the same checkpoint, measure the effect.

``ga-experiment SPEC.yaml`` (``python -m scripts.experiment SPEC.yaml``) reads a spec such as::

    name: murals                      # results/experiments/murals/, runs murals__<branch>__s<seed>
    base:                             # a fresh base run, simulated up to `step` (reused if it exists)...
      overrides: ["+experiment=artists"]
      mind: scripted                  # scripted | random | trained | generative
      start: "2023-02-13 07:00"
      stride: 10
      step: 36
    # base: {run: town, step: 36}     # ...or an existing run's checkpoint at that step
    steps: 72                         # steps each branch runs after the base step
    seeds: 5                          # or a list: [0, 1, 2, 3, 4]
    jobs: 2                           # branch runs at once (processes)
    control: control                  # the branch the others are compared with
    branches:
      control: []
      louder:
        - objective: {group: artist_collective, term: awareness, weight: 2.0}
      leo_joins:
        - regroup: {persona: Leo Ibarra, group: artist_collective}
      rumour:                         # generative minds only: whisper / memory / event
        - whisper: {persona: Sofia Ibarra, text: The mural opening is on Friday.}
        - memory: {persona: Leo Ibarra, text: Sofia said the murals are about the river.}
        - event: {place: cafe, text: A poster for the mural opening is on the wall.}
      random_minds: [{mind: random}]  # another policy mind (policy minds only)
      other_llm: [{llm: ["llm=openai", "llm.preset=ollama", "llm.model=qwen2.5:7b"]}]
      no_lessons: [{lessons: false}]

Every branch run is a fork of the base run's checkpoint at step ``k`` (its first ``k`` steps are the base's), with
the branch's interventions applied at that step, its randomness reseeded from the seed (the town's generator and
the minds'; branch ``b`` and the control get the same streams for the same seed: common random numbers, so the
differences are paired), checkpointed, then run ``steps`` steps. Each branch run is an ordinary named run
(``ga-compress``, ``ga-replay``, ``ga-eval`` work on it); a killed experiment resumes its unfinished runs.

Interventions: ``whisper`` (the persona's inner voice, then a re-plan), ``memory`` (a planted memory, poignancy by
rule) and ``event`` (an event everyone at a place perceives) for generative minds; for any mind ``regroup`` (a
persona moved to another group: ``env.regroup``), ``objective`` (a group's objective weight: ``env.objective``),
``mind`` (another policy mind), ``llm`` (LLM overrides, e.g. another backend), ``lessons`` (false: none; a GRPO
run folder: its lessons).

The report (``report.json``, ``report.md`` in ``results/experiments/NAME/``, with each run's transcript of the
branch steps under ``transcripts/``) gives per branch and group the return per agent over the branch steps and the
goal metrics at the end (awareness of the cause among non-members, supporters, knowledge, task progress, and the
town's conversations), mean ± 95% CI over the seeds (Student's t), and the paired difference to the control with
its CI.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ga_env.checkpoint import atomic_write_bytes
from ga_sim.metrics import run_metrics, transcript_lines
from ga_sim.runstore import RunError, RunStore, validate_name
from ga_sim.simulation import MINDS, Simulation, cast_meta, compose_config, resolve_lessons
from trainers.evaluate import mean_ci

INTERVENTIONS: dict[str, str] = {
    "whisper": "{persona: NAME, text: TEXT}",
    "memory": "{persona: NAME, text: TEXT}",
    "event": "{place: PLACE, text: TEXT}",
    "regroup": "{persona: NAME, group: GROUP}",
    "objective": "{group: GROUP, term: TERM, weight: NUMBER}",
    "mind": "scripted | random | trained",
    "llm": '["llm.KEY=VALUE", ...]',
    "lessons": "false | PATH of a GRPO run",
}
"""Each intervention and the form of its value."""
MIND_ONLY = {"whisper", "memory", "event"}
"""Interventions that need generative minds (memories, plans)."""
POLICY_MINDS = ("scripted", "random", "trained")
GROUP_FIGURES = ("return_per_agent", "awareness_final", "awareness_peak", "supporters", "knowledge", "task_progress")


@dataclasses.dataclass(frozen=True)
class Spec:
    """An experiment: a base, a branch step, branches of interventions, seeds (see the module docstring)."""

    path: Path
    name: str
    base_run: str | None
    base: dict[str, Any]
    step: int
    steps: int
    seeds: list[int]
    branches: dict[str, list[dict[str, Any]]]
    control: str
    jobs: int

    def run_name(self, branch: str, seed: int) -> str:
        return f"{self.name}__{branch}__s{seed}"

    @property
    def base_name(self) -> str:
        return self.base_run or f"{self.name}__base"


def _fail(path: Path, field: str, problem: str, fix: str) -> RunError:
    return RunError(path, field, problem, fix)


def _int(path: Path, field: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(
            path, field, f"{value!r} is not an integer >= {low}", f"write e.g. {field.split('.')[-1]}: {low + 1}"
        )
    return value


def load_spec(path: str | Path) -> Spec:
    """Read and check an experiment spec.

    Raises:
        RunError: naming the file, the field and the fix.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise _fail(path, "file", f"cannot read it ({e.strerror})", "give the path of an experiment YAML") from None
    except yaml.YAMLError as e:
        raise _fail(path, "file", f"is not YAML ({str(e).splitlines()[0]})", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise _fail(path, "file", "is not a mapping", "write name:, base:, steps:, seeds:, branches:")
    known = {"name", "base", "steps", "seeds", "jobs", "control", "branches"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(path, unknown[0], "is not a field of an experiment", f"use the fields {sorted(known)}")
    try:
        name = validate_name(str(raw.get("name", "")), "name")
    except RunError:
        raise _fail(path, "name", f"{raw.get('name')!r} is not a run name", "use letters, digits, _ - .") from None
    base = raw.get("base")
    if not isinstance(base, dict) or "step" not in base:
        raise _fail(
            path,
            "base",
            "must be a mapping with step:",
            "write base: {run: NAME, step: K} or base: {overrides: [...], step: K}",
        )
    step = _int(path, "base.step", base["step"], 1)
    base_run = base.get("run")
    if base_run is not None:
        extra = sorted(set(base) - {"run", "step"})
        if extra:
            raise _fail(
                path, f"base.{extra[0]}", "does not go with base.run", "give either run: or a fresh base's fields"
            )
        base_run = validate_name(str(base_run), "base.run")
    else:
        fresh = {"overrides", "mind", "start", "stride", "seed", "step", "policy_checkpoint"}
        extra = sorted(set(base) - fresh)
        if extra:
            raise _fail(path, f"base.{extra[0]}", "is not a field of a fresh base", f"use {sorted(fresh)}")
        if not isinstance(base.get("overrides", []), list):
            raise _fail(path, "base.overrides", "must be a list", 'write overrides: ["+experiment=artists"]')
        if base.get("mind", "scripted") not in MINDS:
            raise _fail(path, "base.mind", f"{base.get('mind')!r} is unknown", f"use one of {list(MINDS)}")
    steps = _int(path, "steps", raw.get("steps"), 1)
    seeds_raw = raw.get("seeds", 5)
    if isinstance(seeds_raw, list):
        seeds = [_int(path, "seeds", s, 0) for s in seeds_raw]
        if len(set(seeds)) != len(seeds) or not seeds:
            raise _fail(path, "seeds", "must be distinct and not empty", "write e.g. seeds: [0, 1, 2, 3, 4]")
    else:
        seeds = list(range(_int(path, "seeds", seeds_raw, 1)))
    jobs = _int(path, "jobs", raw.get("jobs", 1), 1)
    branches = raw.get("branches")
    if not isinstance(branches, dict) or not branches:
        raise _fail(
            path, "branches", "must be a mapping of branch name -> interventions", "write branches: {control: []}"
        )
    control = str(raw.get("control", "control"))
    if control not in branches:
        raise _fail(
            path,
            "control",
            f"{control!r} is not a branch",
            f"add branches.{control}: [] or name one of {list(branches)}",
        )
    checked: dict[str, list[dict[str, Any]]] = {}
    for b, items in branches.items():
        validate_name(str(b), f"branches.{b}")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise _fail(path, f"branches.{b}", "must be a list of interventions", "write e.g. - objective: {...}")
        for k, item in enumerate(items):
            where = f"branches.{b}[{k}]"
            if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in INTERVENTIONS:
                raise _fail(path, where, f"{item!r} is not one intervention", f"use one of {INTERVENTIONS}")
            _check_intervention(path, where, *next(iter(item.items())))
        checked[str(b)] = list(items)
    return Spec(path, name, base_run, dict(base), step, steps, seeds, checked, control, jobs)


def _check_intervention(path: Path, where: str, kind: str, value: Any) -> None:
    form = INTERVENTIONS[kind]
    need = {
        "whisper": ("persona", "text"),
        "memory": ("persona", "text"),
        "event": ("place", "text"),
        "regroup": ("persona", "group"),
        "objective": ("group", "term", "weight"),
    }.get(kind)
    if need is not None:
        if not isinstance(value, dict) or sorted(value) != sorted(need):
            raise _fail(path, f"{where}.{kind}", f"{value!r} lacks or adds fields", f"write {kind}: {form}")
        if kind == "objective" and (isinstance(value["weight"], bool) or not isinstance(value["weight"], int | float)):
            raise _fail(path, f"{where}.objective.weight", f"{value['weight']!r} is not a number", "write e.g. 2.0")
    elif kind == "mind" and value not in POLICY_MINDS:
        raise _fail(path, f"{where}.mind", f"{value!r} is not a policy mind", f"use one of {list(POLICY_MINDS)}")
    elif kind == "llm" and (
        not isinstance(value, list) or not all(isinstance(o, str) and o.startswith("llm") and "=" in o for o in value)
    ):
        raise _fail(path, f"{where}.llm", f"{value!r} is not a list of llm overrides", f"write llm: {form}")
    elif kind == "lessons" and value is not False and not isinstance(value, str):
        raise _fail(path, f"{where}.lessons", f"{value!r} is neither false nor a path", f"write lessons: {form}")


# -- running -------------------------------------------------------------------------------------------------
def prepare_base(results: Path, spec: Spec, *, progress: bool = False) -> Path:
    """The base run's checkpoint at ``spec.step`` (a fresh base is simulated first, or reused); returns its path.

    Raises:
        RunError: the base run has no checkpoint at that step (naming those it has).
    """
    store = RunStore(results, spec.base_name)
    if spec.base_run is None and not store.exists():
        b = spec.base
        sim = Simulation.create(
            results,
            spec.base_name,
            list(b.get("overrides", [])),
            start=str(b.get("start", "2023-02-13 07:00")),
            stride=b.get("stride"),
            mind=b.get("mind", "scripted"),
            seed=int(b.get("seed", 0)),
            policy_checkpoint=b.get("policy_checkpoint"),
            checkpoint_every=spec.step,
        )
        sim.run(spec.step, progress=progress)
        sim.save()
    if not store.exists():
        raise _fail(
            spec.path,
            "base.run",
            f"no run named {spec.base_name!r} in {results}",
            "simulate it first, or give a fresh base",
        )
    found = dict(store.checkpoints())
    if spec.step not in found:
        raise _fail(
            spec.path,
            "base.step",
            f"run {spec.base_name!r} has no checkpoint at step {spec.step} (it has {sorted(found)})",
            "use one of those steps, or a fresh base",
        )
    return found[spec.step]


def _branch_meta(meta: dict[str, Any], spec: Spec, branch: str, seed: int) -> dict[str, Any]:
    """The branch run's meta: the base's, with the branch's config overrides, mind and lessons."""
    overrides = list(meta["overrides"])
    mind = meta["mind"]
    lessons = meta.get("lessons")
    regroup = {
        _key(v["persona"]): str(v["group"]) for item in spec.branches[branch] for k, v in item.items() if k == "regroup"
    }
    if regroup:  # one override: Hydra takes a persona's name (with a space) as a key only inside {}
        overrides.append("+env.regroup={" + ",".join(f"{n}:{g}" for n, g in regroup.items()) + "}")
    for item in spec.branches[branch]:
        kind, value = next(iter(item.items()))
        if kind == "objective":
            overrides.append(f"+env.objective.{value['group']}.{value['term']}={float(value['weight'])}")
        elif kind == "llm":
            overrides += list(value)
        elif kind == "mind":
            if mind == "generative":
                raise _fail(
                    spec.path,
                    f"branches.{branch}.mind",
                    "the base's minds are generative",
                    "switch minds only between policy minds",
                )
            mind = value
        elif kind == "lessons":
            if value is False:
                lessons = {}
            else:
                cfg = compose_config(overrides)
                lessons, _ = resolve_lessons(cfg, mind, meta.get("policy_checkpoint"), value)
        elif kind in MIND_ONLY and meta["mind"] != "generative":
            raise _fail(
                spec.path,
                f"branches.{branch}.{kind}",
                f"needs generative minds; the base's are {meta['mind']!r}",
                "use a base with mind: generative",
            )
    cast = cast_meta(compose_config(overrides).env.make())  # who is in which group, the objectives: the branch's
    return {
        **{k: v for k, v in meta.items() if k != "format"},
        **cast,
        "overrides": overrides,
        "mind": mind,
        "lessons": lessons,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "forked_from": [spec.base_name, spec.step],
        "experiment": {"name": spec.name, "branch": branch, "seed": seed, "interventions": spec.branches[branch]},
    }


def _key(name: str) -> str:
    """A persona's name as a key of a Hydra dict override (``Leo Ibarra`` stays; ``:`` or ``,`` would split it)."""
    if any(c in name for c in ".=[]{}:,'\""):
        raise ValueError(f"regroup: persona {name!r} has characters a config key cannot hold")
    return name


def _apply(sim: Simulation, spec: Spec, branch: str) -> None:
    """The branch's interventions that act on the minds (the others are in its config)."""
    society: Any = sim.society
    for item in spec.branches[branch]:
        kind, value = next(iter(item.items()))
        if kind == "whisper":
            society.whisper(value["persona"], value["text"])
        elif kind == "memory":
            society.plant(value["persona"], value["text"])
        elif kind == "event":
            society.event(value["place"], value["text"])


def run_branch(results: Path, spec: Spec, base_ckpt: Path, branch: str, seed: int) -> dict[str, Any]:
    """One branch run (created, or resumed if a previous attempt was killed); its metrics over the branch steps."""
    name = spec.run_name(branch, seed)
    store = RunStore(results, name)
    total = spec.step + spec.steps
    if store.exists():
        if sum(1 for _ in store.iter_steps()) < total:
            sim = Simulation.resume(results, name, warn=lambda _: None)
            sim.run(total - sim.step_count, progress=False)
    else:
        base = RunStore(results, spec.base_name)
        meta = _branch_meta(base.meta(), spec, branch, seed)
        store.create(meta)
        store.copy_checkpoint(base_ckpt)
        store.append_steps(base.steps()[: spec.step])
        sim = Simulation.resume(results, name, warn=lambda _: None)
        _apply(sim, spec, branch)
        sim.society.reseed(seed)
        sim.save()  # the branch point, intervention applied: a killed branch resumes from here
        sim.run(spec.steps, progress=False)
    metrics = run_metrics(store, after=spec.step)
    lines = transcript_lines(store, after=spec.step)
    out = results / "experiments" / spec.name / "transcripts"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{branch}__s{seed}.md", ("\n".join(lines) + "\n").encode())
    return metrics


def _figures(m: dict[str, Any]) -> dict[str, float]:
    out = {
        f"{g}.{k}": float(v)
        for g, fig in m["groups"].items()
        for k, v in fig.items()
        if k in GROUP_FIGURES and v is not None
    }
    out["town.conversations"] = float(m["conversations"]["count"])
    return out


def summarise(spec: Spec, metrics: Mapping[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per branch and figure: mean ± 95% CI over the seeds, and the paired difference to the control."""
    figs = {key: _figures(m) for key, m in metrics.items()}
    names = list(figs[(spec.control, spec.seeds[0])])
    branches: dict[str, Any] = {}
    for b in spec.branches:
        rows = {}
        for f in names:
            values = [figs[(b, s)][f] for s in spec.seeds]
            mean, ci = mean_ci(values)
            row: dict[str, Any] = {"mean": mean, "ci95": ci, "values": values}
            if b != spec.control:
                diffs = [figs[(b, s)][f] - figs[(spec.control, s)][f] for s in spec.seeds]
                d, dci = mean_ci(diffs)
                row["diff"] = {
                    "mean": d,
                    "ci95": dci,
                    "significant": bool(abs(d) > dci and dci >= 0 and len(diffs) > 1),
                }
            rows[f] = row
        branches[b] = {"interventions": spec.branches[b], "figures": rows}
    return {
        "experiment": spec.name,
        "spec": str(spec.path),
        "base": {"run": spec.base_name, "step": spec.step},
        "steps": spec.steps,
        "seeds": spec.seeds,
        "control": spec.control,
        "branches": branches,
        "runs": {b: [spec.run_name(b, s) for s in spec.seeds] for b in spec.branches},
    }


def report_markdown(summary: dict[str, Any]) -> str:
    """The report as Markdown: one table per branch against the control."""
    c = summary["control"]
    lines = [
        f"# Experiment `{summary['experiment']}`",
        "",
        f"Branched from run `{summary['base']['run']}` at step {summary['base']['step']}; {summary['steps']} steps per "
        f"branch; seeds {summary['seeds']} (the same seeds in every branch: differences are paired by seed). "
        "Mean ± 95% CI over the seeds (Student's t); Δ = branch − control, paired, with its CI (* when the CI "
        "excludes 0; 'same for every seed' when the difference does not vary with the seed).",
        "",
    ]
    ctrl = summary["branches"][c]["figures"]
    for b, data in summary["branches"].items():
        if b == c:
            continue
        lines += [f"## {b}", "", f"Interventions: `{json.dumps(data['interventions'])}`", ""]
        lines += [f"| figure | {c} | {b} | Δ |", "|-|-|-|-|"]
        for f, row in data["figures"].items():
            d = row["diff"]
            star = (" * (same for every seed)" if d["ci95"] == 0 else " *") if d["significant"] else ""
            lines.append(
                f"| {f} | {ctrl[f]['mean']:.3f} ± {ctrl[f]['ci95']:.3f} | {row['mean']:.3f} ± {row['ci95']:.3f} | "
                f"{d['mean']:+.3f} ± {d['ci95']:.3f}{star} |"
            )
        lines.append("")
    return "\n".join(lines)


def _job(args: tuple[Path, Spec, Path, str, int]) -> dict[str, Any]:
    return run_branch(*args)


def run(results: str | Path, spec: Spec, *, progress: bool = True) -> dict[str, Any]:
    """Run (or finish) an experiment; writes ``results/experiments/NAME/report.{json,md}``; returns the summary."""
    results = Path(results)
    base_ckpt = prepare_base(results, spec, progress=progress)
    base_meta = RunStore(results, spec.base_name).meta()
    for b in spec.branches:  # every branch's config and minds are checked before anything runs
        _branch_meta(base_meta, spec, b, 0)
    jobs = [(results, spec, base_ckpt, b, s) for b in spec.branches for s in spec.seeds]
    metrics: dict[tuple[str, int], dict[str, Any]] = {}
    if spec.jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(max_workers=spec.jobs) as pool:
            for job, m in zip(jobs, pool.map(_job, jobs), strict=True):
                metrics[(job[3], job[4])] = m
    else:
        for job in jobs:
            metrics[(job[3], job[4])] = _job(job)
    summary = summarise(spec, metrics)
    out = results / "experiments" / spec.name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "report.json", json.dumps(summary, indent=1).encode())
    atomic_write_bytes(out / "report.md", report_markdown(summary).encode())
    return summary


__all__ = ["INTERVENTIONS", "Spec", "load_spec", "report_markdown", "run", "run_branch", "summarise"]
