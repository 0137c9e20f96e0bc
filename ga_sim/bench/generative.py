"""A simulated day of generative personas on a real model: wall time, calls, tokens and sense (issue 17).

``python scripts/bench_generative.py`` runs the 25 personas of Willowbrook through one simulated day
(144 steps of 10 minutes from 07:00) with the in-process ``local`` backend (SmolLM2-135M-Instruct
by default), or any other (``llm=openai llm.preset=llamacpp llm.concurrency=4`` for a llama.cpp
server with parallel slots), and prints ONE JSON line:

- ``wall_s``, ``s_per_step``, and per persona-day: requests, tokens and seconds of calls by kind of request
  (``seconds_by_kind``: the whole run's, largest first);
- cache hits, KV-prefix restores (``local``), retries, faults and fallbacks by fault kind, and the
  fallback rate;
- sense: the wake-up hours chosen, the share of plan items and decomposed steps dropped as
  meaningless (copied placeholders, place names, repeats: ``semantic`` faults), decisions by option
  and the first-option rate (the share of decisions that are the first option listed), reactions,
  conversations, reflections, and where the personas spend the night.

Quicker variants for CI-sized checks: ``--personas 4 --hours 2``. The full day is the published
figure (README, "A day on the offline model"), with the machine it was measured on.
"""

from __future__ import annotations

import collections
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

STEPS_PER_HOUR = 6


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.system()}


def run(
    overrides: Sequence[str] = (),
    *,
    personas: int = 25,
    hours: float = 24.0,
    start: str = "2025-02-13T07:00",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Simulate ``hours`` of ``personas`` generative personas and measure (see the module docstring).

    Args:
        overrides: Hydra overrides of the config (``llm=local``, ``llm=openai llm.preset=llamacpp``...);
            by default ``llm=local``, the four groups (25 personas) and no step deadline.
        personas: how many of the town's personas live (the first ones of ``personas.yaml``).
        hours: simulated hours (stride 10 minutes: 6 steps an hour).
        start: the simulated start time.
        seed: the town's and the society's seed.
        progress: print a line per simulated hour to stderr.
    """
    import sys

    from agents.embeddings import make_embedder
    from agents.generative import GenerativeConfig, GenerativeSociety
    from agents.llm import make_backend
    from conf.compose import compose

    overrides = list(overrides)
    defaults = {
        "llm=": "llm=local",
        "env.groups=": "env.groups=[artist_collective,research_lab,campaign_team,residents]",  # the 25 personas
        "llm.step_deadline_s=": "llm.step_deadline_s=null",  # a measurement: no call is cut short by the clock
    }
    for prefix, default in defaults.items():
        if not any(o.startswith(prefix) for o in overrides):
            overrides.insert(0 if prefix == "llm=" else len(overrides), default)
    cfg = compose(overrides)
    env = cfg.env.make(
        max_cycles=10**9, stride=10, start=start, obs_mode="dict", action_mode="rich", text_obs=True,
        max_agents=personas,
    )  # fmt: skip
    # A fresh answer cache: a rerun must not reuse the answers of an earlier run (hits within the run count).
    cache_dir = tempfile.mkdtemp(prefix="bench_generative_cache_")
    llm = make_backend(cfg.llm, cache_dir=cache_dir)
    society = GenerativeSociety(
        env,
        llm,
        make_embedder(cfg.agent.embedder, backend=llm),
        GenerativeConfig(
            lang=cfg.agent.lang, react=cfg.agent.react, replan=cfg.agent.replan, model_emoji=cfg.agent.model_emoji
        ),
        seed=seed,
    )
    society.reset(seed)
    steps = round(hours * STEPS_PER_HOUR)
    records = []
    t0 = time.perf_counter()
    try:
        for k in range(steps):
            records.append(society.step())
            if progress and (k + 1) % STEPS_PER_HOUR == 0:
                u = llm.usage
                print(
                    f"[bench_generative] {records[-1]['time']} step {k + 1}/{steps} "
                    f"{time.perf_counter() - t0:.0f} s, {u.requests} requests, {u.fallbacks} fallbacks",
                    file=sys.stderr,
                    flush=True,
                )
        wall = time.perf_counter() - t0
        report = llm.usage.report()
        seconds = dict(llm.usage.seconds_by_kind)
        prefix_hits = int(getattr(getattr(llm, "inner", None), "prefix_hits", 0))
    finally:
        llm.close()
        shutil.rmtree(cache_dir, ignore_errors=True)
    n = len(society.agents)
    persona_days = n * steps / (24 * STEPS_PER_HOUR)
    return {
        "bench": "generative",
        "backend": f"{cfg.llm.backend}" + (f":{cfg.llm.preset}" if cfg.llm.backend == "openai" else ""),
        "model": llm.model,
        "machine": machine(),
        "personas": n,
        "steps": steps,
        "start": start,
        "seed": seed,
        "wall_s": round(wall, 1),
        "s_per_step": round(wall / max(steps, 1), 2),
        "persona_days": round(persona_days, 3),
        "per_persona_day": {
            "requests": _per(report["requests_by_kind"], persona_days),
            "tokens": _per(report["tokens_by_kind"], persona_days),
            "seconds": _per(seconds, persona_days),
        },
        "seconds_by_kind": {k: round(v, 1) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])},
        "requests": report["requests"],
        "calls": report["calls"],
        "prompt_tokens": report["prompt_tokens"],
        "completion_tokens": report["completion_tokens"],
        "cached": report["cached"],
        "kv_prefix_restores": prefix_hits,
        "retries": report["retries"],
        "faults": report["faults"],
        "fallbacks": report["fallbacks"],
        "fallbacks_by_fault": report["fallbacks_by_fault"],
        "fallback_rate": round(report["fallbacks"] / max(report["requests"], 1), 4),
        "hosted_day_usd": hosted_costs(report, persona_days, 25),
        "sense": sense(society, records),
    }


HOSTED = ("gpt-4o-mini", "gpt-4.1-mini", "deepseek-chat", "gpt-4o")
"""Hosted models whose cost of the same day :func:`hosted_costs` estimates."""


def hosted_costs(report: dict[str, Any], persona_days: float, personas: int) -> dict[str, float]:
    """What a day of ``personas`` personas would cost on hosted models, in USD, from this run's requests: its prompt
    tokens at the model's input price, and its completion tokens (which count the JSON syntax the local backend
    writes around the model's words, as a hosted model would write it) at the output price. A rough figure:
    another tokenizer counts the same text differently, and a hosted model is not asked exactly the same (the JSON
    schema goes in ``response_format``); list prices of :data:`agents.llm.usage.PRICES_PER_MTOK`."""
    from agents.llm.usage import price_of

    scale = personas / max(persona_days, 1e-9)
    out = {}
    for model in HOSTED:
        p_in, p_out = price_of(model)
        out[model] = round(scale * (report["prompt_tokens"] * p_in + report["completion_tokens"] * p_out) / 1e6, 3)
    return out


def _per(counts: Mapping[str, float], persona_days: float) -> dict[str, float]:
    return {k: round(v / max(persona_days, 1e-9), 1) for k, v in sorted(counts.items())}


def sense(society: Any, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Figures that tell a sensible day from a degenerate one (see the module docstring)."""
    wake = collections.Counter(int(a.scratch.wake_hour) for a in society.agents)
    decided = [r for rec in records for r in (a.get("decided") for a in rec["agents"].values()) if r]
    by_option = collections.Counter(d["choice"] for d in decided)
    first = [d["choice"] == d["options"][0] for d in decided if len(d["options"]) > 1]
    reactions = collections.Counter(
        a["reaction"].split(":", 1)[0] for rec in records for a in rec["agents"].values() if a.get("reaction")
    )
    actions = collections.Counter(a["action"] for rec in records for a in rec["agents"].values())
    stats = society.stats
    night = [rec for rec in records if int(rec["time"][11:13]) in (0, 1, 2, 3)]
    at_home = [
        a["target"] == society.agents[k].profile.home and a["description"] == "sleeping"
        for rec in night
        for k, a in enumerate(rec["agents"].values())
    ]
    return {
        "wake_hours": dict(sorted(wake.items())),
        "wake_hour_values": len(wake),
        "steps": int(stats["steps"]),
        "steps_dropped_share": _share(stats["steps_dropped"], stats["steps"]),
        "decisions": len(decided),
        "decisions_by_option": dict(sorted(by_option.items())),
        "first_option_rate": _share(sum(first), len(first)),
        "decisions_with_a_choice": len(first),
        "reactions": dict(sorted(reactions.items())),
        "conversations": sum(len(rec["conversations"]) for rec in records),
        "reflections": int(stats["reflections"]),
        "actions": {k: _share(v, sum(actions.values())) for k, v in sorted(actions.items())},
        "asleep_at_home_0_4h": _share(sum(at_home), len(at_home)) if at_home else None,
        "example_plan": list(society.agents[0].scratch.daily_plan),
    }


def _share(part: float, whole: float) -> float | None:
    return round(float(part) / whole, 4) if whole else None
