"""Do the trained lessons change what LLM personas do? The figures ``scripts/bench_lessons.py`` prints (issue 15).

**Design.** A GRPO run of the town (``+experiment=artists``, trained here in about a minute, or
given with ``run=``) supplies the lessons (``checkpoint.npz``, field ``lessons``) and the MLP
``f_θ``. The same evaluation seeds are then played by LLM personas under three **lesson
conditions**, put into the personas' system prompts exactly as ``ga-simulate --lessons`` does:

- ``trained``: the run's lessons;
- ``none``: no lessons (the prompt says "(none yet)");
- ``placebo``: as many lessons, each of the same number of characters, about the town's scenery,
  saying nothing about any objective or action (:func:`placebo_lessons`).

and two **decision settings**: ``plain`` choice log-probabilities, and ``calibrated`` (contextual
calibration, ``llm.calibrate``: each option's log-prob minus its log-prob under the content-free
request, :func:`agents.llm.calibrate.calibrate`). Two **minds** act:

- ``neurosymbolic``: ``softmax(f_θ(obs) + λ·ℓ_LLM)`` with the run's ``f_θ`` and ``λ = 1``
  (``agent=neurosymbolic``), and as a reference the MLP alone (``λ = 0``, ``mlp_only``);
- ``generative``: the generative personas (:class:`agents.generative.GenerativeSociety`), whose
  every action choice is the model's; their other requests (poignancy, plans, reflections,
  conversations) are answered by the ``scripted`` backend (the rule-based fallback), because
  each is a free generation that takes SmolLM2 seconds to minutes on 2 cores (issue 17), while
  the lessons act on the decisions this bench measures. Said in the output (``other_requests``).

Sampling uses common random numbers: the same seed gives the same random stream in every
condition, so a difference between conditions comes from the model's answers alone.

**Figures** (each a mean and 95% CI half-width over the seeds, ``[mean, ci]``):

- ``returns``: per-agent episode return of each group; ``actions``: share of each action;
  ``goals``: the group's goal metrics (``env.goal_metrics()``, without the per-block shares);
  ``first_option_rate``: share of the model's decisions that took the first listed option;
- ``vs_none``: the paired difference (same seed) of returns and action shares to ``none``;
- ``changed``: on the states of the ``none`` episodes, each decision is also asked with the
  trained and the placebo lessons in the prompt (a counterfactual on the same state): the share
  of decisions whose choice differs from the ``none`` choice, and the mean total-variation
  distance between the choice distributions.

Answers are cached on disk per prompt (``cache_dir``), so a prompt shared by conditions (the
counterfactuals are the next conditions' prompts while their episodes stay on the same states)
is asked once; the calibrated setting reuses the plain answers and adds one content-free answer
per system prompt and choice set. Any ``llm`` config works (``llm=openai llm.base_url=...``): the
same figures for a hosted model. The step deadline is off (``llm.step_deadline_s=null`` unless
given): a deadline fallback would replace the model's answer that is being measured.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.llm.base import LLMBackend, LLMRequest, LLMResponse
from agents.llm.calibrate import argmax_choice, calibrate, content_free_request
from conf.schema import Config, LLMConfig
from ga_env import ACTION_NAMES
from trainers.evaluate import mean_ci

CONDITIONS = ("none", "trained", "placebo")
"""Lesson conditions; ``none`` is the reference of the paired differences."""
SETTINGS = ("plain", "calibrated")
MINDS = ("neurosymbolic", "generative")
SCENERY = (
    "The clock tower on the square was repainted a pale green two springs ago.",
    "In the coldest weeks the river freezes along its banks but never in the middle.",
    "The bakery's sourdough starter is said to be older than its oven.",
    "Swallows nest under the eaves of the old post office every summer.",
    "A weather vane shaped like a fox turns on the library roof.",
    "The hill to the north turns purple with heather in late August.",
    "The market square is paved with grey cobblestones laid a century ago.",
    "Two stone lions guard the bridge, one of them missing an ear.",
)
"""Placebo sentences: true-sounding, neutral, and about nothing a persona could do."""
TRAIN = ("+experiment=artists", "env.max_agents=7", "trainer.seed=0")
"""The GRPO run that supplies lessons and ``f_θ`` when no run is given (5 artists, 2 residents)."""


def placebo_lessons(lessons: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """For each group, as many lessons as ``lessons`` has, each of the same length in characters.

    Each is cut from the :data:`SCENERY` sentences (a different start per lesson), ending with a
    full stop.
    """
    out: dict[str, list[str]] = {}
    k = 0
    for group, texts in lessons.items():
        out[group] = []
        for text in texts:
            n = len(text)
            words: list[str] = []
            i = k
            while len(" ".join(words)) < n:
                words.extend(SCENERY[i % len(SCENERY)].split())
                i += 1
            s = " ".join(words)[: max(n - 1, 0)].rstrip()
            s = (s + "." + " " * n)[:n] if n else ""
            out[group].append(s)
            k += 1
    return out


class ConditionLLM:
    """The personas' LLM in one condition of the bench (an :class:`agents.llm.base.LLMBackend`).

    Decisions (``kind == "decide"`` with choices) go to ``model``; in the ``calibrated`` setting
    their log-probs are calibrated against ``model``'s answer to the content-free request; the
    choice is the argmax (the requests are greedy). Other requests go to ``others`` (None: to
    ``model``). With ``alternates`` (system prompt → ``{condition: system prompt}``), every
    decision is also asked under the other conditions' system prompts, and each is recorded in
    ``log``: ``(first listed choice, {condition: log-probs})``.
    """

    def __init__(
        self,
        model: LLMBackend,
        *,
        calibrated: bool,
        others: LLMBackend | None = None,
        alternates: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.inner, self.calibrated, self.others = model, calibrated, others
        self.alternates = alternates
        self.name, self.model, self.usage = model.name, model.model, model.usage
        self.log: list[tuple[str, dict[str, dict[str, float]]]] = []
        self.priors: dict[tuple[str, tuple[str, ...]], dict[str, float] | None] = {}

    # -- the LLMBackend protocol ----------------------------------------------------------------------
    def complete(self, request: LLMRequest) -> LLMResponse:
        return self.complete_many([request])[0]

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        return self.complete(request)

    def embed(self, texts: Sequence[str]) -> Any:
        return None

    def close(self) -> None:
        """The wrapped backends belong to the caller."""

    def begin_step(self) -> None:
        self.inner.begin_step()

    def end_step(self) -> None:
        self.inner.end_step()

    @property
    def unavailable(self) -> Any:
        return self.inner.unavailable

    def complete_many(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        out: list[LLMResponse | None] = [None] * len(requests)
        decide = [i for i, r in enumerate(requests) if r.kind == "decide" and len(r.choices) > 1]
        rest = [i for i in range(len(requests)) if i not in set(decide)]
        if rest:
            answers = (self.others or self.inner).complete_many([requests[i] for i in rest])
            for i, a in zip(rest, answers, strict=True):
                out[i] = a
        if decide:
            for i, a in zip(decide, self._decide([requests[i] for i in decide]), strict=True):
                out[i] = a
        return [a for a in out if a is not None]

    # -- decisions -------------------------------------------------------------------------------------
    def _decide(self, requests: list[LLMRequest]) -> list[LLMResponse]:
        asked = list(requests)
        alts: list[list[tuple[str, LLMRequest]]] = []
        for r in requests:
            other = (self.alternates or {}).get(r.system, {})
            alts.append([(c, dataclasses.replace(r, system=s)) for c, s in other.items() if s != r.system])
            asked.extend(a for _, a in alts[-1])
        answers = self.inner.complete_many(asked)
        logps = [self._logprobs(r, answers[i]) for i, r in enumerate(asked)]
        out: list[LLMResponse] = []
        at = len(requests)
        for i, r in enumerate(requests):
            lp = logps[i]
            if lp is None:  # the model failed: its fallback stands, as in a real run
                out.append(answers[i])
            else:
                choice = argmax_choice(lp, r.choices)
                out.append(dataclasses.replace(answers[i], text=choice, choice=choice, choice_logprobs=lp))
            if self.alternates is not None and lp is not None:
                entry = {"self": lp}
                for c, _ in alts[i]:
                    alt_lp = logps[at]
                    at += 1
                    if alt_lp is not None:
                        entry[c] = alt_lp
                self.log.append((r.choices[0], entry))
            else:
                at += len(alts[i])
                if lp is not None:
                    self.log.append((r.choices[0], {"self": lp}))
        return out

    def _logprobs(self, request: LLMRequest, answer: LLMResponse) -> dict[str, float] | None:
        lp = answer.choice_logprobs
        if answer.fallback or not lp or set(lp) != set(request.choices):
            return None
        if not self.calibrated:
            return dict(lp)
        key = (request.system, tuple(sorted(request.choices)))
        if key not in self.priors:
            prior = self.inner.complete(content_free_request(request))
            ok = not prior.fallback and prior.choice_logprobs and set(prior.choice_logprobs) == set(request.choices)
            self.priors[key] = dict(prior.choice_logprobs) if ok and prior.choice_logprobs else None
        prior_lp = self.priors[key]
        return calibrate(lp, prior_lp) if prior_lp is not None else dict(lp)


# -- episodes ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Episode:
    """One seed's outcome under one condition."""

    returns: dict[str, float]
    actions: dict[str, float]
    goals: dict[str, dict[str, float]]
    first_option_rate: float
    changed: dict[str, float]  # condition -> share of decisions changed vs self (counterfactuals)
    tv: dict[str, float]  # condition -> mean total-variation distance
    decisions: int  # the model's decisions in the episode


def _summarise_log(log: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]]) -> tuple[float, dict, dict]:
    firsts, changed, tv, counts = (
        0,
        dict.fromkeys(CONDITIONS, 0.0),
        dict.fromkeys(CONDITIONS, 0.0),
        dict.fromkeys(CONDITIONS, 0),
    )
    for first, entry in log:
        own = entry["self"]
        choice = argmax_choice(own)
        firsts += choice == first
        for c, lp in entry.items():
            if c == "self":
                continue
            changed[c] += argmax_choice(lp) != choice
            tv[c] += 0.5 * sum(abs(math.exp(lp[k]) - math.exp(own[k])) for k in own)
            counts[c] += 1
    rate = firsts / len(log) if log else float("nan")
    return (
        rate,
        {c: changed[c] / counts[c] for c in CONDITIONS if counts[c]},
        {c: tv[c] / counts[c] for c in CONDITIONS if counts[c]},
    )


def _outcome(env: Any, counts: np.ndarray, log: Sequence[Any]) -> Episode:
    rewards = np.asarray(env.episode_rewards, dtype=np.float64)
    returns = {g.name: float(rewards[env.group_of == k].mean()) for k, g in enumerate(env.groups)}
    goals = {
        g: {k: float(v) for k, v in m.items() if not k.startswith("share/")} for g, m in env.goal_metrics().items()
    }
    total = max(float(counts.sum()), 1.0)
    rate, changed, tv = _summarise_log(log)
    shares = {a: float(counts[i]) / total for i, a in enumerate(ACTION_NAMES)}
    return Episode(returns, shares, goals, rate, changed, tv, len(log))


def neurosymbolic_episode(env: Any, policy: Any, llm: ConditionLLM | None, seed: int, steps: int) -> Episode:
    """One episode of ``steps`` steps under the neuro-symbolic ``policy`` (its LLM: ``llm``)."""
    rng = np.random.default_rng(seed)  # the same stream in every condition
    obs, mask = env.reset_arrays(seed)
    counts = np.zeros(len(ACTION_NAMES))
    if llm is not None:
        llm.log.clear()
    for _ in range(steps):
        aug = policy.augment_obs([env], obs[None])[0]
        actions = policy.act(aug, mask, rng)
        counts += np.bincount(actions, minlength=len(ACTION_NAMES))
        obs, mask, _, done = env.step_arrays(actions)
        if done:
            break
    return _outcome(env, counts, llm.log if llm is not None else [])


def generative_episode(society: Any, llm: ConditionLLM, seed: int, steps: int) -> Episode:
    """One episode of ``steps`` steps of the generative ``society`` (fresh minds, its env reset to ``seed``)."""
    society.reset(seed)
    llm.log.clear()
    counts = np.zeros(len(ACTION_NAMES))
    for _ in range(steps):
        society.step()
        counts += np.bincount(np.asarray(society.env.last_action), minlength=len(ACTION_NAMES))
    return _outcome(society.env, counts, llm.log)


# -- one mind, all conditions --------------------------------------------------------------------------------
def _mean_ci(values: Sequence[float]) -> list[float]:
    x = [v for v in values if not math.isnan(v)]
    if not x:
        return [float("nan"), 0.0]
    m, h = mean_ci(x)
    return [round(m, 4), round(h, 4)]


def _table(eps: Sequence[Episode], ref: Sequence[Episode] | None) -> dict[str, Any]:
    groups = list(eps[0].returns)
    row: dict[str, Any] = {
        "returns": {g: _mean_ci([e.returns[g] for e in eps]) for g in groups},
        "actions": {a: _mean_ci([e.actions[a] for e in eps]) for a in ACTION_NAMES},
        "goals": {g: {k: _mean_ci([e.goals[g][k] for e in eps]) for k in eps[0].goals[g]} for g in groups},
        "first_option_rate": _mean_ci([e.first_option_rate for e in eps]),
        "decisions_per_episode": _mean_ci([float(e.decisions) for e in eps]),
    }
    if ref is not None:
        row["vs_none"] = {
            "returns": {
                g: _mean_ci([e.returns[g] - r.returns[g] for e, r in zip(eps, ref, strict=True)]) for g in groups
            },
            "actions": {
                a: _mean_ci([e.actions[a] - r.actions[a] for e, r in zip(eps, ref, strict=True)]) for a in ACTION_NAMES
            },
        }
    return row


def _systems(env: Any, lessons: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, dict[str, str]]:
    """``none`` system prompt of each persona → ``{condition: its system prompt}``."""
    from agents.cognition.prompts import system_prompt
    from agents.generative import persona_profiles

    out: dict[str, dict[str, str]] = {}
    for p in persona_profiles(env):
        by = {c: system_prompt(p, lessons[c].get(p.group.name, []), "en") for c in CONDITIONS}
        out[by["none"]] = by
    return out


def run_mind(
    mind: str,
    *,
    cfg: Config,
    run_dir: Path,
    lessons: Mapping[str, Mapping[str, Sequence[str]]],
    seeds: Sequence[int],
    steps: int,
    cache_dir: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Every condition and setting of one mind; the ``mind`` section of the output."""
    from agents.factory import load_params
    from agents.llm import make_backend

    model = make_backend(cfg.llm, cache_dir=cache_dir)
    scripted = make_backend(LLMConfig(backend="scripted"), cache_dir=None) if mind == "generative" else None
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if mind == "neurosymbolic":
        from agents.neurosymbolic import NeuroSymbolicPolicy

        env = cfg.env.make(max_cycles=steps)
        systems = _systems(env, lessons)

        def policy_for(llm: ConditionLLM | None, cond: str, lam: float) -> Any:
            pol = NeuroSymbolicPolicy(
                env.obs_dim,
                len(env.groups),
                llm=llm,
                lam=lam,
                decide_every=cfg.agent.decide_every,
                hidden=cfg.agent.hidden,
                rng=np.random.default_rng(0),
            )
            load_params(pol, run_dir)
            for group, texts in lessons[cond].items():
                pol.set_lessons(group, texts)
            return pol

        mlp = policy_for(None, "none", 0.0)
        out["mlp_only"] = _table([neurosymbolic_episode(env, mlp, None, s, steps) for s in seeds], None)

        def episodes(setting: str, cond: str) -> list[Episode]:
            llm = ConditionLLM(
                model, calibrated=setting == "calibrated", alternates=systems if cond == "none" else None
            )
            pol = policy_for(llm, cond, cfg.agent.lam)
            return [neurosymbolic_episode(env, pol, llm, s, steps) for s in seeds]
    else:
        from agents.embeddings import make_embedder
        from agents.generative import GenerativeSociety, make_town

        probe = make_town(groups=list(cfg.env.groups), max_agents=cfg.env.max_agents, start=cfg.env.start)
        systems = _systems(probe, lessons)

        def episodes(setting: str, cond: str) -> list[Episode]:
            llm = ConditionLLM(
                model,
                calibrated=setting == "calibrated",
                others=scripted,
                alternates=systems if cond == "none" else None,
            )
            result = []
            for s in seeds:
                env = make_town(groups=list(cfg.env.groups), max_agents=cfg.env.max_agents, start=cfg.env.start)
                society = GenerativeSociety(env, llm, make_embedder("hashing"), seed=s)
                for group, texts in lessons[cond].items():
                    society.set_lessons(group, texts)
                result.append(generative_episode(society, llm, s, steps))
            return result

    for setting in SETTINGS:
        ref = episodes(setting, "none")
        section: dict[str, Any] = {"none": _table(ref, None)}
        for cond in CONDITIONS[1:]:
            section[cond] = _table(episodes(setting, cond), ref)
        section["changed"] = {c: _mean_ci([e.changed.get(c, float("nan")) for e in ref]) for c in CONDITIONS[1:]}
        section["tv_distance"] = {c: _mean_ci([e.tv.get(c, float("nan")) for e in ref]) for c in CONDITIONS[1:]}
        out[setting] = section
        progress(f"bench_lessons: {mind} {setting}: changed {section['changed']} ({time.perf_counter() - t0:.0f} s)")
    usage = model.usage.report()
    out["llm_calls"] = int(usage.get("calls", 0))
    out["requests"] = int(usage.get("requests", 0))
    out["cache_hits"] = int(usage.get("cached", 0))
    out["fallbacks"] = int(usage.get("fallbacks", 0))
    out["other_requests"] = "scripted (rule-based)" if mind == "generative" else "none (the LLM term only decides)"
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    model.close()
    return out


def _run_mind_job(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from ga_sim.bench.llm import progress_to_stderr

    return kwargs["mind"], run_mind(progress=progress_to_stderr, **kwargs)


def train_run(out: Path, overrides: Sequence[str] = ()) -> Path:
    """A GRPO run of :data:`TRAIN` (+ ``overrides``) in ``out``; returns ``out``."""
    from omegaconf import OmegaConf

    from conf.compose import compose
    from trainers.grpo import train

    cfg = compose([*TRAIN, *overrides])
    train(cfg, out, OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return out


def run(
    *,
    seeds: int = 20,
    steps: int = 8,
    generative_steps: int = 6,
    generative_agents: int = 4,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    minds: Sequence[str] = MINDS,
    jobs: int = 1,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The figures of ``scripts/bench_lessons.py``, as the one JSON object it prints.

    Args:
        seeds: evaluation seeds (``1000 .. 1000 + seeds - 1``, never seen in training).
        steps: steps per neuro-symbolic episode (10 game minutes each, from the config's start).
        generative_steps: steps per generative episode.
        generative_agents: personas of the generative town (the first of the config's).
        run_dir: a GRPO run (folder or ``checkpoint.npz``) of this town; None = train one (:data:`TRAIN`).
        overrides: Hydra overrides of the personas' config (e.g. ``llm=openai llm.base_url=...``;
            default ``llm=local``) and of the trained run when one is trained.
        minds: which minds to run.
        jobs: processes (one mind each; the local model then uses one thread each).
        cache_dir: where answers are cached (None = a temporary folder: every answer is asked).
    """
    from conf.compose import compose
    from ga_sim.bench.llm import progress_to_stderr
    from ga_sim.simulation import read_lessons

    say = progress or progress_to_stderr
    bad = [m for m in minds if m not in MINDS]
    if bad:
        raise ValueError(f"bench_lessons: minds: {bad} unknown. Fix: use {', '.join(MINDS)}")
    with tempfile.TemporaryDirectory(prefix="bench-lessons-") as tmp:
        t0 = time.perf_counter()
        source = f"{run_dir}" if run_dir is not None else f"trained here: {' '.join(TRAIN)}"
        if run_dir is None:
            run_dir = train_run(Path(tmp) / "run", [o for o in overrides if not o.startswith("llm")])
            say(f"bench_lessons: trained {TRAIN} in {time.perf_counter() - t0:.0f} s")
        trained, path = read_lessons(run_dir)
        run_path = path.parent if path.name.endswith(".npz") else path
        lessons = {"none": {}, "trained": trained, "placebo": placebo_lessons(trained)}
        llm_over = [o for o in overrides if o.startswith("llm")] or ["llm=local"]
        threads = 1 if jobs > 1 else 2
        base = [*TRAIN, *[o for o in overrides if not o.startswith("llm")], *llm_over]
        if not any(o.startswith("llm.n_threads") for o in llm_over) and "llm=local" in llm_over:
            base.append(f"llm.n_threads={threads}")
        if not any(o.startswith("llm.step_deadline_s") for o in llm_over):
            base.append("llm.step_deadline_s=null")  # the answers are measured, not a real-time budget
        cfg = compose(base)
        eval_seeds = [1000 + i for i in range(seeds)]
        cache = Path(cache_dir) if cache_dir is not None else Path(tmp) / "llm_cache"
        gen_cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, max_agents=generative_agents))
        tasks: list[dict[str, Any]] = [
            {
                "mind": m,
                "cfg": cfg if m == "neurosymbolic" else gen_cfg,
                "run_dir": run_path,
                "lessons": lessons,
                "seeds": eval_seeds,
                "steps": steps if m == "neurosymbolic" else generative_steps,
                "cache_dir": cache,
            }
            for m in minds
        ]
        results: dict[str, Any] = {}
        if jobs > 1 and len(tasks) > 1:
            with concurrent.futures.ProcessPoolExecutor(min(jobs, len(tasks))) as pool:
                for mind, res in pool.map(_run_mind_job, tasks):
                    results[mind] = res
        else:
            for t in tasks:
                results[t["mind"]] = run_mind(progress=say, **t)
    return {
        "model": cfg.llm.model or cfg.llm.backend,
        "backend": cfg.llm.backend,
        "run": source,
        "seeds": eval_seeds,
        "steps": {"neurosymbolic": steps, "generative": generative_steps},
        "agents": {"neurosymbolic": cfg.env.max_agents, "generative": generative_agents},
        "lessons": trained,
        "placebo": lessons["placebo"],
        "lesson_chars": {g: [len(x) for x in v] for g, v in trained.items()},
        **results,
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


__all__ = ["CONDITIONS", "ConditionLLM", "placebo_lessons", "run", "run_mind", "train_run"]
