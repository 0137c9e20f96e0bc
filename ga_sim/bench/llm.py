"""Benchmark of the LLM backends (issue 4.4): the figures ``scripts/bench_llm.py`` prints as one JSON line.

1. ``concurrency``: 25 personas decide in one step through the ``openai`` backend (the real
   ``openai`` client) against the loopback server running in a separate process with a fixed
   latency L per answer (0.5 s and 1 s by default). Reports the step's wall time divided by L
   (sequential calls would give 25; the target is <= 1.5), the median over ``--steps`` steps
   after one warm-up step. What exceeds 1 is the client's CPU time (~5-10 ms per request for the
   ``openai`` client on this machine), so the ratio falls as L grows.
2. ``local_latency``: the median latency of one constrained decision (move/chat/task/research,
   with logprobs) of the ``local`` backend (SmolLM2-135M-Instruct, llama-cpp-python), with
   ``--threads`` threads and with 1 thread, plus the machine's load average (llama.cpp's threads
   spin-wait on a busy machine): ``short_suffix`` = on a cached prefix, only the prompt's last
   tokens new; ``full_observation`` = a fresh ~250-token observation per call, as in the town.
3. ``lesson_shift``: the same >= 100 decision prompts (10 personas x 10 moments of a day of the
   town) asked of the ``local`` backend without lessons and with lessons favouring one action
   (``--favour``, default chat). Reports the mean probability of that action (from the choice
   logprobs) without and with, their paired difference with a 95% bootstrap interval, and the
   share of prompts choosing it with 95% Wilson intervals. ``shift_shuffled`` (not run by
   default) repeats it with the options listed in a random order per prompt, since small models
   mostly pick the first listed option.

The decision prompts are the personas' real ones: ``agents.cognition.execute.decide_request``
with the system prompt of ``agents.cognition.prompts.system_prompt`` and the env's text
observation. No answer is cached (``llm.cache=false``).

The command line is ``scripts/bench_llm.py`` (``python scripts/bench_llm.py [--latency 0.5,1.0]
[--prompts 100] [--favour chat] [--parts concurrency,local,shift]``); :func:`run` gives its figures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from agents.cognition.execute import OPTION_TEXT, decide_request
from agents.cognition.prompts import PersonaProfile, quote, render, system_prompt
from agents.generative import make_town, persona_profiles
from agents.llm import LLMRequest, ReliableBackend, make_backend
from conf.schema import LLMConfig
from ga_env import ACTION_NAMES

GROUPS = ["artist_collective", "research_lab", "campaign_team", "residents"]
ALL = np.ones(4, dtype=np.int64)
FAVOURING = {
    "chat": [
        "On our best days we chatted with every neighbour we met: chat whenever someone is near.",
        "Members who chose chat most often earned the group the most reward; task work alone earned little.",
    ],
    "task": [
        "On our best days we worked on our task at the task site: choose task whenever you can.",
        "Members who chose task most often earned the group the most reward; chatting earned little.",
    ],
    "research": [
        "On our best days we did research at the research sites: choose research whenever you can.",
        "Members who chose research most often earned the group the most reward.",
    ],
    "move": [
        "On our best days we kept walking to new places: choose move whenever you can.",
        "Members who chose move most often earned the group the most reward.",
    ],
}


def town_prompts(n_personas: int, n_moments: int, seed: int = 0) -> tuple[list[PersonaProfile], list[list[str]]]:
    """Profiles of ``n_personas`` personas and, for each, its text observation at ``n_moments`` steps."""
    env = make_town(groups=GROUPS)
    _obs, infos = env.reset(seed=seed)
    profiles = persona_profiles(env)
    pick = np.linspace(0, len(profiles) - 1, n_personas).round().astype(int)
    texts: list[list[str]] = [[] for _ in pick]
    rng = np.random.default_rng(seed)
    for _ in range(n_moments):
        for _ in range(6):  # an hour of random play between two moments
            actions = {
                a: {"action": int(rng.integers(4)), "target": len(env.places), "partner": len(env.agents)}
                for a in env.agents
            }
            _obs, _r, _te, _tr, infos = env.step(actions)
        for j, i in enumerate(pick):
            texts[j].append(infos[env.agents[i]]["text"])
    return [profiles[i] for i in pick], texts


def request_for(
    profile: PersonaProfile, text: str, lessons: Sequence[str], order: Sequence[int] | None = None
) -> LLMRequest:
    """The persona's decide request; ``order`` lists the four options in another order in the prompt."""
    target = profile.task_places[0] if profile.task_places else profile.home
    place_match = re.search(r" at Willowbrook:([^;]+);", text)
    place = place_match.group(1) if place_match else profile.home
    activity = f"work on your task: {profile.persona.task}"
    request = decide_request(
        system=system_prompt(profile, lessons, "en"),
        perceived=text,
        place=place,
        activity=activity,
        target=target,
        memories="(none)",
        mask=ALL,
        lang="en",
        fallback=lambda: "task",
    )
    if order is None:
        return request
    user = render(
        "en",
        "decide",
        perceived=quote(text, 900),
        place=place,
        activity=quote(activity, 120),
        target=target,
        memories="(none)",
        options="; ".join(OPTION_TEXT["en"][i] for i in order),
        choices=", ".join(ACTION_NAMES[i] for i in order),
    )
    return dataclasses.replace(request, user=user)


def bench_concurrency(latency: float, steps: int) -> dict[str, Any]:
    """Figure 1: one step of 25 concurrent decisions / one call's latency."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.testing.loopback", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"(http://\S+/v1)", line)
        if url is None:
            raise RuntimeError(f"loopback server did not start: {line!r}")
        cfg = LLMConfig(backend="openai", preset="loopback", base_url=url.group(1), cache=False, concurrency=32)
        backend = make_backend(cfg)
        profiles, texts = town_prompts(25, steps + 1)
        batches = [[request_for(p, t[k], []) for p, t in zip(profiles, texts, strict=True)] for k in range(steps + 1)]
        backend.complete_many(batches[0])  # warm-up: connections
        walls = []
        for batch in batches[1:]:
            t0 = time.perf_counter()
            results = backend.complete_many(batch)
            walls.append(time.perf_counter() - t0)
            assert not any(r.fallback for r in results)
        singles = []
        for r in batches[1][:5]:
            t0 = time.perf_counter()
            backend.complete(r)
            singles.append(time.perf_counter() - t0)
        backend.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    wall = statistics.median(walls)
    return {
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "agents": 25,
        "latency_s": latency,
        "step_wall_s": round(wall, 4),
        "ratio": round(wall / latency, 3),
        "ratio_steps": [round(w / latency, 3) for w in walls],
        "single_call_ratio": round(statistics.median(singles) / latency, 3),
        "sequential_ratio_would_be": 25,
        "target": 1.5,
    }


def bench_local_latency(threads: int, n: int = 12) -> dict[str, Any]:
    """Figure 2: median latency of one constrained decision of the local backend.

    ``short_suffix``: the persona's decide prompt with only its last few tokens changing from call
    to call (the cost of a decision on a cached prefix); ``full_observation``: a fresh observation
    every call, as in the town, where the whole user message (~250 tokens) is new each step.
    """
    profiles, texts = town_prompts(1, n + 1)
    profile, moments = profiles[0], texts[0]
    base = request_for(profile, moments[0], [])
    short = [
        dataclasses.replace(base, user=f"{base.user}\n(Step {k}: the clock reads {8 + k // 6}:{k % 6}0.)")
        for k in range(n + 1)
    ]
    full = [request_for(profile, text, []) for text in moments]
    out: dict[str, Any] = {"load_avg_1min_before": round(os.getloadavg()[0], 2)}
    for nt in dict.fromkeys((threads, 1)):
        backend = make_backend(LLMConfig(backend="local", cache=False, n_threads=nt, n_ctx=1024))
        for name, requests in (("short_suffix", short), ("full_observation", full)):
            backend.complete(requests[0])  # cold: fills the KV cache with the shared prefix
            times = []
            for r in requests[1:]:
                t0 = time.perf_counter()
                answer = backend.complete(r)
                times.append(time.perf_counter() - t0)
                assert not answer.fallback, answer.error
            out[f"{name}_median_s_threads{nt}"] = round(statistics.median(times), 4)
            out[f"{name}_prompt_tokens"] = answer.prompt_tokens
        backend.close()
    out["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    out["model"] = backend.model
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(centre - half, 4), round(centre + half, 4))


def bench_lesson_shift(
    n_personas: int, n_moments: int, favour: str, threads: int, progress: Callable[[str], None], shuffle: bool = False
) -> dict[str, Any]:
    """Figure 3: P(favour) with vs without lessons over the same prompts (paired).

    With ``shuffle``, each prompt lists the four options in a random order (the same in both
    conditions): small models mostly pick the first listed option, which can hide the lessons.
    """
    profiles, texts = town_prompts(n_personas, n_moments, seed=1)
    order_rng = np.random.default_rng(2)
    orders = [[order_rng.permutation(4).tolist() if shuffle else None for _ in m] for m in texts]
    backend: ReliableBackend = make_backend(LLMConfig(backend="local", cache=False, n_threads=threads, n_ctx=1024))
    probs: dict[str, list[float]] = {"none": [], "lessons": []}
    chosen: dict[str, list[str]] = {"none": [], "lessons": []}
    t0 = time.perf_counter()
    for j, (profile, moments) in enumerate(zip(profiles, texts, strict=True)):
        # persona by persona, condition by condition: the system prompt stays in the KV cache
        for cond, lessons in (("none", []), ("lessons", FAVOURING[favour])):
            for text, order in zip(moments, orders[j], strict=True):
                r = backend.complete(request_for(profile, text, lessons, order))
                assert r.choice_logprobs is not None and not r.fallback, r.error
                probs[cond].append(math.exp(r.choice_logprobs[favour]))
                chosen[cond].append(r.choice or "")
        progress(f"lesson shift: persona {j + 1}/{len(profiles)} ({time.perf_counter() - t0:.0f} s)")
    backend.close()
    p0, p1 = np.array(probs["none"]), np.array(probs["lessons"])
    diff = p1 - p0
    rng = np.random.default_rng(0)
    boots = diff[rng.integers(0, len(diff), size=(10_000, len(diff)))].mean(axis=1)
    k0, k1, n = chosen["none"].count(favour), chosen["lessons"].count(favour), len(diff)

    def dist(names: list[str]) -> dict[str, float]:
        return {a: round(names.count(a) / len(names), 4) for a in ("move", "chat", "task", "research")}

    return {
        "prompts": n,
        "options_order": "shuffled per prompt" if shuffle else "fixed (move, chat, task, research)",
        "favoured": favour,
        "lessons": FAVOURING[favour],
        "mean_p_without": round(float(p0.mean()), 4),
        "mean_p_with": round(float(p1.mean()), 4),
        "mean_p_shift": round(float(diff.mean()), 4),
        "mean_p_shift_ci95_bootstrap": [round(float(q), 4) for q in np.quantile(boots, [0.025, 0.975])],
        "prompts_shifted_up": int((diff > 0).sum()),
        "choice_share_without": round(k0 / n, 4),
        "choice_share_without_ci95_wilson": wilson(k0, n),
        "choice_share_with": round(k1 / n, 4),
        "choice_share_with_ci95_wilson": wilson(k1, n),
        "choice_distribution_without": dist(chosen["none"]),
        "choice_distribution_with": dist(chosen["lessons"]),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def progress_to_stderr(msg: str) -> None:
    """Print a progress line to stderr (stdout carries only the JSON line)."""
    print(msg, file=sys.stderr, flush=True)


def run(
    parts: Collection[str] = ("concurrency", "local", "shift"),
    *,
    latencies: Sequence[float] = (0.5, 1.0),
    steps: int = 5,
    threads: int = 2,
    prompts: int = 100,
    favour: str = "chat",
    shift_threads: int = 1,
    progress: Callable[[str], None] = progress_to_stderr,
) -> dict[str, Any]:
    """The figures of ``scripts/bench_llm.py``, as the one JSON object it prints.

    Args:
        parts: figures to run: ``concurrency``, ``local``, ``shift``, ``shift_shuffled``.
        latencies: loopback latencies L per answer (s) for the concurrency figure.
        steps: timed steps of 25 decisions.
        threads: llama.cpp threads for the local backend's latency figure.
        prompts: decision prompts per condition of the lesson shift (10 personas x ceil(prompts / 10) moments).
        favour: the action the lessons favour (a key of :data:`FAVOURING`).
        shift_threads: llama.cpp threads for the lesson-shift runs.
        progress: called with a line of progress after each figure (and persona of the lesson shift).
    """
    out: dict[str, Any] = {}
    if "concurrency" in parts:
        out["concurrency"] = [bench_concurrency(x, steps) for x in latencies]
        progress(f"concurrency: {[c['ratio'] for c in out['concurrency']]}")
    if "local" in parts:
        out["local_latency"] = bench_local_latency(threads)
        progress(f"local latency: {out['local_latency']}")
    if "shift" in parts:
        n_personas = 10
        n_moments = math.ceil(prompts / n_personas)
        out["lesson_shift"] = bench_lesson_shift(n_personas, n_moments, favour, shift_threads, progress)
    if "shift_shuffled" in parts:
        n_personas = 10
        n_moments = math.ceil(prompts / n_personas)
        out["lesson_shift_shuffled"] = bench_lesson_shift(
            n_personas, n_moments, favour, shift_threads, progress, shuffle=True
        )
    return out
