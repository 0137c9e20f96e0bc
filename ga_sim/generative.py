"""The generative personas (``agents.generative.GenerativeSociety``) behind the simulation's contract.

:class:`GenerativeDriver` wraps a :class:`~agents.generative.GenerativeSociety` so that
:mod:`ga_sim.simulation` and the console treat it like :class:`ga_sim.society.PolicySociety`:
the same step records (tile, place, action, emoji, description, utterance, partner, reward, group
figures, plus the step's whole conversations, the object each persona acted on (``object``), the
objects in use (``objects``: address -> state; ``object_tiles``: address -> its tiles) and the LLM
usage), one checkpointable state (the
env's exact state, every mind, the LLM usage meter) and text answers for the console.

The town runs as one continuous stretch of time (``max_cycles`` is set beyond any run), so the
personas are never sent home by an episode boundary in the middle of a simulation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.llm.base import LLMUnavailable
from conf.schema import Config
from ga_sim.society import persona_index, restore_usage, town_summary, usage_dict

log = logging.getLogger("ga_sim")

if TYPE_CHECKING:
    from agents.generative import GenerativeSociety
    from agents.llm import LLMBackend
    from ga_env import TownEnv

ENDLESS = 10**9
"""``max_cycles`` of a simulated town: a run is one stretch of time, not episodes."""


class GenerativeDriver:
    """The town stepped by every persona's cognition (see the module docstring).

    Args:
        society: a :class:`agents.generative.GenerativeSociety` on a fresh env.
        seed: the town's seed.
    """

    mind = "generative"

    def __init__(self, society: GenerativeSociety, seed: int) -> None:
        self.society = society
        self.env: TownEnv = society.env
        self.llm: LLMBackend = society.llm
        self.t = 0
        society.reset(seed)

    # -- stepping --
    def step(self) -> dict[str, Any]:
        """One step of the town with every persona's cognition; returns its record."""
        env = self.env
        raw = self.society.step()
        self.t += 1
        rewards = np.array([raw["agents"][p.name]["reward"] for p in env.personas])
        partners: dict[str, str] = {}
        for conv in raw["conversations"]:
            a, b = conv["participants"][:2]
            partners[a], partners[b] = b, a
        personas: dict[str, Any] = {}
        for i, p in enumerate(env.personas):
            r = raw["agents"][p.name]
            x, y = env.position(i)
            personas[p.name] = {
                "tile": [x, y],
                "place": env.places[int(env.current_places[i])],
                "action": r["action"],
                "emoji": r["emoji"],
                "description": r["description"],
                "utterance": r["utterance"],
                "partner": partners.get(p.name),
                "reward": round(float(r["reward"]), 6),
                "target": r["target"],
                "fallback": bool(r["fallback"]),
                "fallbacks": list(r.get("fallbacks", [])),  # "request kind:fault kind" of this step
                "object": r["object"],  # Town:Sector:arena:object acted on, or None
            }
        usage = self.llm.usage
        return {
            "step": self.t,
            "time": raw["time"],
            "personas": personas,
            "groups": town_summary(env, rewards),
            "conversations": raw["conversations"],
            "objects": raw["objects"],
            "object_tiles": {a: self.society.objects.tiles(self.society.objects.index(a)) for a in raw["objects"]},
            "mind": "generative",
            "llm": {
                "backend": self.llm.name,
                "requests": usage.requests,
                "calls": usage.calls,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "fallbacks": usage.fallbacks,
                "retries": usage.retries,
                "faults": dict(usage.faults),
            },
        }

    # -- save / restore --
    def state_dict(self) -> dict[str, Any]:
        """The env's exact state, every mind and the LLM usage."""
        return {
            "t": self.t,
            "env": self.env.state_dict(),
            "minds": self.society.state_dict(),
            "usage": usage_dict(self.llm),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.t = int(state["t"])
        self.env.load_state_dict(state["env"])
        self.society.load_state_dict(state["minds"])
        restore_usage(self.llm, state["usage"])
        self.society.records.clear()

    # -- console accessors (text) --
    def _name(self, name: str) -> str:
        return self.env.personas[persona_index(self.env, name)].name

    def schedule(self, name: str) -> str:
        plan = self.society.schedule(name)
        who = self._name(name)
        return f"{who}'s plan for today:\n" + (
            "\n".join(f"  {k + 1}. {item}" for k, item in enumerate(plan)) if plan else "  (no plan yet: run a step)"
        )

    def hourly_schedule(self, name: str) -> str:
        blocks = self.society.hourly_schedule(name)
        if not blocks:
            return f"{self._name(name)}: no hourly schedule yet (run a step)"
        lines = [f"{self._name(name)}, hour by hour:"]
        for b in blocks:
            lines.append(f"  {int(b['hour']):02d}:00  {b['activity']}  @ {b['place']}")
        return "\n".join(lines)

    def current_tile(self, name: str) -> str:
        x, y = self.society.current_tile(name)
        i = persona_index(self.env, name)
        return f"({x}, {y}) {self.env.address_of(i)}"

    def chatting_with_buffer(self, name: str) -> str:
        buf = self.society.chatting_with_buffer(name)
        if not buf:
            return f"{self._name(name)}: the chatting-with buffer is empty"
        return "\n".join(f"  {who}: {n} step(s) before chatting again" for who, n in sorted(buf.items()))

    def associative_memory(self, name: str, kind: str) -> str:
        if kind not in ("event", "thought", "chat"):
            raise KeyError(f"unknown memory kind {kind!r}; use event, thought or chat")
        nodes = self.society.associative_memory(name, kind)
        if not nodes:
            return f"{self._name(name)}: no {kind} memories yet"
        lines = []
        for node in nodes[:30]:
            when = getattr(node, "created", "")
            lines.append(f"  [{when}] (poignancy {getattr(node, 'poignancy', '?')}) {node.description}")
        more = f"\n  ... {len(nodes) - 30} older" if len(nodes) > 30 else ""
        return "\n".join(lines) + more

    def spatial_memory(self, name: str) -> str:
        tree = self.society.spatial_memory(name)
        town = self.env.town_map.name  # every place reads world:sector:arena, as in 'print tile details'
        lines = [
            f"  {town}:{sector}:{arena}" + (f"  [{', '.join(objects)}]" if objects else "")
            for sector, arenas in tree.items()
            for arena, objects in arenas.items()
        ]
        return f"{self._name(name)} knows:\n" + ("\n".join(lines) or "  (nothing yet)")

    def object_at(self, x: int, y: int) -> tuple[str, str] | None:
        """The address and state (``idle`` if unused) of the object on tile ``(x, y)``, or None if it has none."""
        return self.society.object_at(x, y)

    def analysis_chat(self, name: str, message: str) -> str:
        return f"{self._name(name)}: {self.society.analysis_chat(name, message)}"

    def load_history(self, path: str | Path) -> str:
        return f"loaded {self.society.load_history(path)} memories from {path}"

    def whisper(self, name: str, text: str) -> str:
        self.society.whisper(name, text)
        then = "re-plans at the next step" if self.society.cfg.replan else "stored; agent.replan=false: no re-plan"
        return f"{self._name(name)} heard: {' '.join(text.split())[:300]} ({then})"

    def reseed(self, seed: int) -> None:
        """New streams from ``seed``: the minds' (the LLM's sampling seeds) and the town's generator."""
        minds, town = np.random.SeedSequence(seed).spawn(2)
        self.society.rng = np.random.default_rng(minds)
        self.env.np_random = np.random.default_rng(town)

    def plant(self, name: str, text: str) -> str:
        """A memory planted in the persona's stream (an observed event, poignancy by rule)."""
        self.society.plant(name, text)
        return f"{self._name(name)} remembers: {' '.join(text.split())[:300]}"

    def event(self, place: str, text: str) -> str:
        """An event everyone at ``place`` perceives now."""
        who = self.society.event(place, text)
        return f"{len(who)} at {place} perceived it: {', '.join(who) or 'nobody is there'}"

    def lessons(self) -> dict[str, list[str]]:
        """The lessons in the personas' system prompts, by group (those of the group's first persona)."""
        out: dict[str, list[str]] = {}
        for a in self.society.agents:
            if a.lessons and a.persona.group not in out:
                out[a.persona.group] = list(a.lessons)
        return out


def run_backend(cfg: Config, run_dir: Path) -> LLMBackend:
    """The run's LLM backend (``cfg.llm``, answers cached in ``<run>/llm_cache``), checked at once.

    Raises:
        LLMUnavailable: the endpoint is dead and ``llm.on_unavailable=stop`` (else a warning,
            and the rule-based fallback answers).
    """
    from agents.llm import make_backend

    llm = make_backend(cfg.llm, cache_dir=run_dir / "llm_cache")
    try:
        llm.preflight()  # a dead server, a refused key or a missing model fails now, naming the fix
    except LLMUnavailable as e:
        if cfg.llm.on_unavailable == "stop":
            llm.close()
            raise
        log.warning("%s; going on with the rule-based fallback (llm.on_unavailable=fallback)", e)
    return llm


def make_generative_society(cfg: Config, meta: Mapping[str, Any], run_dir: Path) -> GenerativeDriver:
    """The generative personas for a run: town, LLM backend (cached in the run folder) and embedder.

    The run's lessons (``meta["lessons"]``, ``{group: [lesson, ...]}``, read from a GRPO
    checkpoint when the run was created) go into each group's personas' system prompts.
    """
    from agents.embeddings import make_embedder
    from agents.generative import GenerativeConfig, GenerativeSociety

    env = cfg.env.make(
        max_cycles=ENDLESS,
        stride=int(meta["stride"]),
        start=str(meta["start"]),
        obs_mode="dict",
        action_mode="rich",
        text_obs=True,
    )
    llm = run_backend(cfg, run_dir)
    embedder = make_embedder(cfg.agent.embedder, backend=llm)
    society = GenerativeSociety(
        env,
        llm,
        embedder,
        GenerativeConfig(
            lang=cfg.agent.lang,
            memory_capacity=cfg.agent.memory_capacity,
            react=cfg.agent.react,
            replan=cfg.agent.replan,
            model_emoji=cfg.agent.model_emoji,
        ),
        seed=int(meta["seed"]),
    )
    for group, lessons in (meta.get("lessons") or {}).items():
        society.set_lessons(group, lessons)
    return GenerativeDriver(society, int(meta["seed"]))
