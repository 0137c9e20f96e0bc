"""Generative personas (Park et al. 2023) living in the town: one mind per persona, one driver for all.

:class:`GenerativeAgent` is one persona's mind: its profile (own fields, group, places), memory
stream, spatial memory, plans and scratch (current activity, conversation, chat cooldowns) and
the group lessons injected into its system prompt.

:class:`GenerativeSociety` steps the town (``action_mode="rich"``, ``text_obs=True``) with every
persona's cognition. One :meth:`GenerativeSociety.step` runs, for all personas together:

1. **perceive**: new events within the vision radius (attention bandwidth, retention) → one
   concurrent batch of poignancy requests → event memories;
2. **plan**: at a new day, wake-up → daily plan → hourly schedule (three batches, only for the
   personas starting a day); at a new hour, decomposition of the current block (one batch);
3. **reflect**: personas whose poignancy since the last reflection reached the threshold ask
   focal questions, then infer insights with evidence (two batches);
4. **execute**: the action choice among the possible actions (one batch, with log-preferences);
5. **converse**: personas that chat pick a partner; all conversations advance turn by turn, each
   turn one batch; both sides store the chat; then a batch of poignancy requests for the chats;
6. the env steps with the rich actions (target = the block's place, partner, first utterance).

Every batch goes through ``llm.complete_many`` (concurrent for real backends). Every request has a
rule-based fallback from the persona's own fields, which the ``scripted`` backend answers with.

**Objects with state** (the original's object events): a persona that works or researches at its
target place, rests at home or chats at a social site acts on one object of that arena
(:class:`TownObjects`: the object whose name best matches the activity's words, else the arena's
first), whose state becomes ``"being used by NAME: ACTIVITY"`` (a rule, no LLM call) until the
persona leaves or does something else. Personas perceive the objects in use within their vision
radius as events, competing with persona events for the attention bandwidth.

The driver records each step (positions, actions, emoji, descriptions, utterances, whole
conversations, the object each persona acted on and the objects in use) for the transcript, and :meth:`GenerativeSociety.state_dict` /
:meth:`GenerativeSociety.load_state_dict` hold everything of the minds needed to resume exactly
(memories, schedules, scratch, lessons, the society's generator). The env's own state is the
caller's to save.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.cognition import converse, execute, perceive, plan, react, reflect
from agents.cognition.prompts import LANGS, PersonaProfile, numbered, quote, render, system_prompt
from agents.cognition.retrieve import MEMORY_CHARS, retrieve_lines
from agents.embeddings import Embedder
from agents.llm.base import LLMBackend, LLMRequest, LLMResponse
from agents.memory import MemoryNode, MemoryStream, RetrievalWeights, SpatialMemory
from ga_env import ACTION_NAMES, TownEnv
from ga_env.maps import TownMap
from ga_env.personas import Persona

EMOJI_CACHE = 512
"""Activities whose model emoji a society remembers (oldest forgotten first)."""
WHISPER_POIGNANCY = 9.0
"""Poignancy of a whispered thought (the persona's inner voice is not mundane)."""
FOCAL_MEMORIES = 30
"""Latest memories a reflecting persona asks its focal questions about (the original: 100; 30 fit the offline
model's 2,048-token context)."""
INSIGHT_MEMORIES = 10
"""Memories retrieved for each focal question (the original: 15)."""
PLAN_MEMORIES = 5
"""Memories a persona retrieves when it plans its day."""
REPLAN_MEMORIES = 3
"""Memories shown in a re-plan prompt (the trigger itself says what happened)."""
RATED_LOOKBACK = 100
"""Latest memories searched for an event the persona has already rated."""
RECORDS_KEPT = 144
"""Step records kept in memory by :class:`GenerativeSociety` (one day at the default stride)."""

IDLE = "idle"
"""The state of an object nobody acts on."""

__all__ = ["IDLE", "GenerativeAgent", "GenerativeConfig", "GenerativeSociety", "TownObjects", "make_town"]


@dataclass(frozen=True, kw_only=True)
class GenerativeConfig:
    """Settings of the personas' cognition (defaults after Park et al.'s code where it has one)."""

    lang: str = "en"
    """Prompt language: ``en`` or ``zh``."""
    bandwidth: int = 3
    """Attention bandwidth: events perceived per step (a persona's ``att_bandwidth`` overrides it)."""
    retention: int = 5
    """Latest event memories checked before storing a repeat (a persona's ``retention`` overrides it)."""
    vision_radius: int | None = None
    """Tiles a persona sees (None = the env's ``Dynamics.vision_radius``; a persona's own overrides it)."""
    reflect_threshold: float = 150.0
    """Summed poignancy since the last reflection that triggers one."""
    focal_points: int = 3
    insights: int = 3
    """Insights per focal point."""
    chat_turns: int = 4
    """Utterances per conversation (alternating speakers)."""
    chat_cooldown: int = 12
    """Steps before a persona chats with the same partner again (the original's chatting_with_buffer)."""
    memories_in_prompt: int = 3
    """Retrieved memories shown in decision and conversation prompts."""
    temperature: float = 0.0
    weights: RetrievalWeights = field(default_factory=RetrievalWeights)
    memory_capacity: int | None = None
    """Most memories a persona keeps (None = never forget, as in the paper); see ``MemoryStream.forget``."""
    react: bool = True
    """On perceiving a persona within reach: decide to talk, wait or continue (the original's reaction)."""
    react_cooldown: int = 18
    """Steps before a persona reacts to the same other persona again (three hours: co-workers at one place all day
    are not asked about each other every hour)."""
    talk_rest: int = 9
    """Steps after a conversation before a persona talks to anyone again (an hour and a half)."""
    replan: bool = True
    """After a conversation or a whisper: memo, planning thought and a re-plan of the rest of the day."""
    model_emoji: bool = True
    """Ask the model for the emoji of each new activity (else the action's rule emoji)."""

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ValueError(f"config: agent.lang: {self.lang!r} is unknown. Fix: use one of {', '.join(LANGS)}")
        for name in (
            "bandwidth", "retention", "focal_points", "insights", "chat_turns", "memories_in_prompt", "react_cooldown",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"config: agent.{name}: {getattr(self, name)} must be >= 1. Fix: use a positive value")
        if self.reflect_threshold <= 0:
            raise ValueError("config: agent.reflect_threshold: must be > 0. Fix: use e.g. 150")


def make_town(**kwargs: Any) -> TownEnv:
    """The town as :class:`GenerativeSociety` needs it: rich actions, text observations, dict observations."""
    import ga_env

    return ga_env.parallel_env(action_mode="rich", text_obs=True, obs_mode="dict", **kwargs)


@dataclass(frozen=True, kw_only=True, eq=False)
class TownObjects:
    """The town's objects as personas act on them: one per arena and object name (a table with two tiles
    in the dining area is one object), in reading order of their first tile.

    Attributes:
        addresses: ``(M,)`` ``Town:Sector:arena:object``.
        names: ``(M,)`` the object's name (``"exhibition wall"``).
        place: ``(M,)`` index of the object's arena in ``TownMap.places``.
        tile_xy: ``(T, 2)`` every object tile, ``(x, y)``.
        tile_object: ``(T,)`` the object of each tile.
        vocabulary: ``(V,)`` the words of the object names.
        name_words: ``(M, V)`` which words each object's name has.
    """

    addresses: tuple[str, ...]
    names: tuple[str, ...]
    place: np.ndarray
    tile_xy: np.ndarray
    tile_object: np.ndarray
    vocabulary: tuple[str, ...]
    name_words: np.ndarray

    @classmethod
    def of(cls, town: TownMap) -> TownObjects:
        """The objects of ``town`` (none if its map has no object layer)."""
        ys, xs = np.nonzero(town.object_of >= 0)  # row-major: reading order
        key = town.place_of[ys, xs].astype(np.int64) * max(len(town.object_names), 1) + town.object_of[ys, xs]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")  # unique key -> reading-order index
        order = np.argsort(first, kind="stable")
        place = town.place_of[ys[first[order]], xs[first[order]]].astype(np.int64)
        names = tuple(town.object_names[int(o)] for o in town.object_of[ys[first[order]], xs[first[order]]])
        addresses = tuple(f"{town.name}:{town.places[int(p)]}:{name}" for p, name in zip(place, names, strict=True))
        vocabulary = tuple(dict.fromkeys(w for name in names for w in _words(name)))
        name_words = np.array([[w in _words(name) for w in vocabulary] for name in names], dtype=bool)
        return cls(
            addresses=addresses,
            names=names,
            place=place,
            tile_xy=np.stack([xs, ys], axis=1).astype(np.int64),
            tile_object=rank[inverse.ravel()].astype(np.int64),
            vocabulary=vocabulary,
            name_words=name_words.reshape(len(names), len(vocabulary)),
        )

    def __len__(self) -> int:
        return len(self.addresses)

    def index(self, address: str) -> int:
        """The object at ``address`` (``Town:Sector:arena:object``).

        Raises:
            KeyError: an unknown address.
        """
        try:
            return self.addresses.index(address)
        except ValueError:
            raise KeyError(f"object {address!r} is unknown; objects read Town:Sector:arena:object") from None

    def tiles(self, m: int) -> list[list[int]]:
        """The ``[x, y]`` tiles of object ``m``."""
        return self.tile_xy[self.tile_object == m].tolist()

    def distance(self, xy: np.ndarray) -> np.ndarray:
        """``(N, M)`` Chebyshev distance from each of ``xy`` ``(N, 2)`` to each object's nearest tile."""
        cheb = np.abs(xy[:, None, :] - self.tile_xy[None, :, :]).max(-1)  # (N, T)
        out = np.full((len(xy), len(self)), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(out.T, self.tile_object, cheb.T)
        return out

    def choose(self, places: np.ndarray, activities: Sequence[str]) -> np.ndarray:
        """The object each persona acts on: in its arena ``places[i]``, the object with the most name words in
        ``activities[i]`` (a word matches its plural too), ties and no match the arena's first; -1 if the
        arena has none. ``(N,)``."""
        said = [_words(text) for text in activities]
        hits = np.array([[any(t.startswith(w) for t in words) for w in self.vocabulary] for words in said], dtype=bool)
        score = hits.reshape(len(said), len(self.vocabulary)).astype(np.int64) @ self.name_words.T  # (N, M)
        here = self.place[None, :] == np.asarray(places)[:, None]  # (N, M)
        m = len(self)
        key = np.where(here, score * m - np.arange(m), np.iinfo(np.int64).min)  # most words, then reading order
        return np.where(here.any(1), key.argmax(1) if m else -1, -1)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@dataclass(kw_only=True)
class Scratch:
    """A persona's short-term state (the original's ``scratch``): plans, activity, conversation."""

    plan_date: str | None = None
    wake_hour: int = 7
    daily_plan: list[str] = field(default_factory=list)
    hourly: list[dict[str, Any]] = field(default_factory=list)
    block_hour: int = -1
    steps: list[dict[str, Any]] = field(default_factory=list)
    activity: str = "waking up"
    action: str = "move"
    emoji: str = execute.EMOJI["idle"]
    target: str = ""
    chatting_with: str | None = None
    chat: list[tuple[str, str]] = field(default_factory=list)
    chat_buffer: dict[str, int] = field(default_factory=dict)
    perceived: str = ""
    replan: str = ""
    """What calls for a re-plan at the next step (a conversation, a whisper); empty = nothing."""
    reacted: dict[str, int] = field(default_factory=dict)
    """Personas reacted to recently, with the steps before reacting to them again."""
    reaction: str = ""
    """This step's reaction (``talk:NAME``, ``wait:NAME``, ``continue:NAME``) or empty."""
    emoji_activity: str = ""
    """The activity whose emoji ``emoji`` shows (asked again when the activity changes)."""
    talk_rest: int = 0
    """Steps before the persona talks to anyone again (set after a conversation)."""
    run: list[Any] = field(default_factory=list)
    """The plan item the steps decompose: ``[from_hour, end_hour, activity, place]`` (empty: none yet)."""
    decided: str = ""
    """The action last chosen by the model at the target place (repeated until the activity changes)."""
    decided_for: str = ""
    """``activity @ target`` of that choice: a new activity or target asks again."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["chat"] = [list(t) for t in self.chat]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scratch:
        d = dict(d)
        d["chat"] = [tuple(t) for t in d.get("chat", [])]
        return cls(**d)


class GenerativeAgent:
    """One persona's mind.

    Args:
        profile: the persona, its group and its places.
        embedder: shared sentence embedder.
        cfg: cognition settings.
    """

    def __init__(self, profile: PersonaProfile, embedder: Embedder, cfg: GenerativeConfig) -> None:
        self.profile, self.cfg = profile, cfg
        p = profile.persona
        # Attention (the original's scratch.vision_r / att_bandwidth / retention): the persona's own, else the config's.
        self.vision_radius: int | None = p.vision_radius if p.vision_radius is not None else cfg.vision_radius
        """Tiles the persona sees (None = the env's ``Dynamics.vision_radius``)."""
        self.att_bandwidth: int = p.att_bandwidth if p.att_bandwidth is not None else cfg.bandwidth
        self.retention: int = p.retention if p.retention is not None else cfg.retention
        self.memory = MemoryStream(embedder, cfg.weights, cfg.memory_capacity)
        self.spatial = SpatialMemory()
        for place in profile.places:
            self.spatial.learn(place)
        self.scratch = Scratch(target=profile.home)
        self.lessons: list[str] = []
        self._system: str | None = None

    @property
    def name(self) -> str:
        return self.profile.persona.name

    @property
    def persona(self) -> Persona:
        return self.profile.persona

    @property
    def system(self) -> str:
        """The system prompt (identity, group task, lessons); rebuilt only when the lessons change."""
        if self._system is None:
            self._system = system_prompt(self.profile, self.lessons, self.cfg.lang)
        return self._system

    def set_lessons(self, lessons: Sequence[str]) -> None:
        self.lessons = [str(x) for x in lessons]
        self._system = None

    def block(self, hour: int) -> dict[str, Any]:
        """The hourly schedule's block at ``hour`` (the rule's before the first plan)."""
        if not self.scratch.hourly:
            return plan.hourly_schedule_rule(self.profile, self.scratch.wake_hour)[hour]
        return self.scratch.hourly[hour]

    def state_dict(self) -> dict[str, Any]:
        return {
            "memory": self.memory.state_dict(),
            "spatial": self.spatial.state_dict(),
            "scratch": self.scratch.to_dict(),
            "lessons": list(self.lessons),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.spatial.load_state_dict(state["spatial"])
        self.scratch = Scratch.from_dict(state["scratch"])
        self.set_lessons(state["lessons"])


def persona_profiles(env: TownEnv) -> list[PersonaProfile]:
    """Every persona of ``env`` as a prompt profile (home, task, research and social places by name)."""
    groups = {g.name: g for g in env.groups}
    out = []
    places = env.places

    def sites(mask: np.ndarray) -> tuple[str, ...]:
        return tuple(places[k] for k in np.flatnonzero(mask))

    for i, p in enumerate(env.personas):
        out.append(
            PersonaProfile(
                persona=p,
                group=groups[p.group],
                home=places[int(env.home[i])],
                task_places=sites(env.is_task_site[i]),
                research_places=sites(env.is_research_site[i]),
                social_places=sites(env.is_social_site[i]),
            )
        )
    return out


class GenerativeSociety:
    """Steps the town with every persona's cognition, one concurrent batch of LLM calls per cognition step.

    Args:
        env: the town built by :func:`make_town` (rich actions, text and dict observations).
        llm: the personas' language model (``agents.llm.make_backend``).
        embedder: sentence embedder for the memory streams.
        cfg: cognition settings.
        seed: seeds the env's reset and the society's generator (LLM sampling seeds).
    """

    def __init__(
        self,
        env: TownEnv,
        llm: LLMBackend,
        embedder: Embedder,
        cfg: GenerativeConfig | None = None,
        *,
        seed: int = 0,
    ) -> None:
        if env.action_mode != "rich" or not env.text_obs or env.obs_mode != "dict":
            raise ValueError(
                "GenerativeSociety: env: needs action_mode='rich', text_obs=True, obs_mode='dict'. "
                "Fix: build it with agents.generative.make_town(...)"
            )
        self.env, self.llm, self.embedder = env, llm, embedder
        self.cfg = cfg or GenerativeConfig()
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.agents: list[GenerativeAgent] = [GenerativeAgent(p, embedder, self.cfg) for p in persona_profiles(env)]
        # Each persona's attention as arrays for the vectorised perceive step, (N,) each.
        radius = env.dynamics.vision_radius
        self.vision_radius = np.array([radius if a.vision_radius is None else a.vision_radius for a in self.agents])
        self.att_bandwidth = np.array([a.att_bandwidth for a in self.agents])
        self.retention = np.array([a.retention for a in self.agents])
        self._by_name: dict[str, int] = {}
        for i, a in enumerate(self.agents):
            self._by_name[a.name.lower()] = i
            self._by_name[env.possible_agents[i]] = i
            self._by_name[a.persona.first_name.lower()] = i
        self.step_count = 0
        self.emoji_cache: dict[str, str] = {}  # activity text -> the model's emoji (bounded, see _emoji)
        # The latest step records (the driver stores every step on disk; a week must not pile up here).
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECORDS_KEPT)
        self._step_fallbacks: list[list[str]] = []  # per persona: "kind:fault" of this step's fallbacks
        self._obs: dict[str, Any] | None = None
        self._infos: dict[str, dict[str, Any]] = {}
        # Objects with state: what each object in use is doing, and the object each persona acts on (-1: none).
        self.objects = TownObjects.of(env.town_map)
        self.object_state: dict[int, str] = {}
        """The objects in use: object index -> state (an object not in it is idle)."""
        self.acts_on = np.full(len(self.agents), -1, dtype=np.int64)
        self.stats: collections.Counter[str] = collections.Counter()
        """Diagnostics for benchmarks: model items given and dropped (``plan_items``, ``steps``), ``reflections``."""

    # -- accessors (the console's "print persona ..." commands) --------------------------------------
    def agent(self, name: str) -> GenerativeAgent:
        """A persona by full name, first name or agent id (case-insensitive).

        Raises:
            KeyError: an unknown name, listing the personas.
        """
        i = self._by_name.get(name.lower().strip()) if name.lower().strip() in self._by_name else None
        if i is None:
            i = self._by_name.get("_".join(name.lower().split()))
        if i is None:
            raise KeyError(f"persona {name!r} is unknown; the personas are: {', '.join(a.name for a in self.agents)}")
        return self.agents[i]

    def schedule(self, name: str) -> list[str]:
        """The persona's daily plan in broad strokes."""
        return list(self.agent(name).scratch.daily_plan)

    def hourly_schedule(self, name: str) -> list[dict[str, Any]]:
        """The persona's 24 hourly blocks ``{hour, activity, place}``."""
        return [dict(b) for b in self.agent(name).scratch.hourly]

    def current_tile(self, name: str) -> tuple[int, int]:
        return self.env.position(self._index(name))

    def chatting_with_buffer(self, name: str) -> dict[str, int]:
        """Partners this persona will not chat with again for the given number of steps."""
        return dict(self.agent(name).scratch.chat_buffer)

    def associative_memory(self, name: str, kind: str) -> list[MemoryNode]:
        """The persona's memories of one kind (``event``, ``thought`` or ``chat``), newest first."""
        return self.agent(name).memory.of_kind(kind)

    def spatial_memory(self, name: str) -> dict[str, dict[str, list[str]]]:
        return self.agent(name).spatial.state_dict()["tree"]

    def object_states(self) -> dict[str, str]:
        """The objects in use, ``{Town:Sector:arena:object: state}`` (every other object is idle)."""
        return {self.objects.addresses[m]: state for m, state in sorted(self.object_state.items())}

    def object_at(self, x: int, y: int) -> tuple[str, str] | None:
        """The address and state (``idle`` if unused) of the object on tile ``(x, y)``, or None if it has none."""
        hit = np.flatnonzero((self.objects.tile_xy == (x, y)).all(1))
        if not len(hit):
            return None
        m = int(self.objects.tile_object[hit[0]])
        return self.objects.addresses[m], self.object_state.get(m, IDLE)

    def _index(self, name: str) -> int:
        return self.agents.index(self.agent(name))

    # -- episode --------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Reset the town (keeps the minds: a new day of the same lives; the objects are idle again)."""
        self._obs, self._infos = self.env.reset(seed=self.seed if seed is None else seed)
        self.object_state, self.acts_on = {}, np.full(len(self.agents), -1, dtype=np.int64)

    def set_lessons(self, group: str, lessons: Sequence[str]) -> None:
        """Inject a group's lessons into its personas' system prompts."""
        for a in self.agents:
            if a.persona.group == group:
                a.set_lessons(lessons)

    def _ask(self, requests: list[LLMRequest]) -> list[LLMResponse]:
        answers = self.llm.complete_many(requests) if requests else []
        # Which persona's request fell back, and why (step records tell the truth): a persona's
        # requests carry its own system prompt.
        by_system = {a.system: i for i, a in enumerate(self.agents)}
        for request, answer in zip(requests, answers, strict=True):
            i = by_system.get(request.system)
            if answer.fallback and i is not None and i < len(self._step_fallbacks):
                fault = (answer.error or "unknown").split(":", 1)[0]
                self._step_fallbacks[i].append(f"{request.kind}:{fault}")
        return answers

    def _seed(self) -> int | None:
        return int(self.rng.integers(2**31)) if self.cfg.temperature > 0 else None

    def step(self) -> dict[str, Any]:
        """One step of the town with every persona's cognition; returns the step's record.

        The step's LLM calls share one deadline (``llm.step_deadline_s``): calls still running then
        fall back, and the record says which persona's requests fell back and why.
        """
        self.llm.begin_step()
        try:
            return self._step()
        finally:
            self.llm.end_step()

    def _step(self) -> dict[str, Any]:
        if self._obs is None:
            self.reset()
        assert self._obs is not None
        env, cfg = self.env, self.cfg
        now = env.now
        n = len(self.agents)
        self._step_fallbacks = [[] for _ in range(n)]
        xy = np.stack([env.pos_flat % env.town_map.width, env.pos_flat // env.town_map.width], axis=1)
        places = env.current_places
        for a in self.agents:
            a.scratch.chat_buffer = {k: v - 1 for k, v in a.scratch.chat_buffer.items() if v > 1}
            a.scratch.talk_rest = max(a.scratch.talk_rest - 1, 0)
            a.scratch.chatting_with, a.scratch.chat = None, []  # a conversation lasts one step
            a.scratch.perceived = str(self._infos.get(env.possible_agents[self.agents.index(a)], {}).get("text", ""))

        # -- 1. perceive: new events, rated for poignancy in one batch -----------------------------
        for i, a in enumerate(self.agents):
            a.spatial.learn(env.address_of(i))
        pending = perceive.perceive(
            env,
            [a.memory for a in self.agents],
            xy=xy,
            vision_radius=self.vision_radius,
            bandwidth=self.att_bandwidth,
            retention=self.retention,
            objects=self._object_events(xy),
        )
        pending = [(i, ev) for i, ev in pending if not self._asleep(i, now)]  # a sleeper perceives nothing
        # Persona events are rated by the model (one request per persona); someone idle is 1 without asking (as the
        # original's generate_poig_score); an object's state ("the easel is being used by Isabel Ortiz: painting")
        # by the rule from its words (simplified for speed: said in the README).
        people = [(i, ev) for i, ev in pending if not _is_object_event(ev) and not _is_idle(ev)]
        for i, rated in self._rate([(i, ev.description) for i, ev in people], now).items():
            for (j, ev), poignancy in zip([(j, ev) for j, ev in people if j == i], rated, strict=True):
                self.agents[j].memory.add("event", ev.description, when=now, poignancy=poignancy, spo=ev.spo)
        for i, ev in pending:
            if _is_object_event(ev):
                poignancy = float(perceive.poignancy_rule(self.agents[i].profile, ev.description))
                self.agents[i].memory.add("event", ev.description, when=now, poignancy=poignancy, spo=ev.spo)
            elif _is_idle(ev):
                self.agents[i].memory.add("event", ev.description, when=now, poignancy=1.0, spo=ev.spo)

        # -- 2. plan: a new day (wake-up → plan → hourly schedule), a new hour (decomposition) -----------
        today = now.date().isoformat()
        starting = [i for i, a in enumerate(self.agents) if a.scratch.plan_date != today]
        if starting:
            wake = self._ask([plan.wake_up_request(self.agents[i].profile, self.agents[i].system, now.date(), cfg.lang)
                              for i in starting])  # fmt: skip
            for i, ans in zip(starting, wake, strict=True):
                hour = (ans.data or {}).get("hour")
                self.agents[i].scratch.wake_hour = hour if isinstance(hour, int) and 3 <= hour <= 12 else 7
            days = self._ask([
                plan.plan_day_request(
                    self.agents[i].profile, self.agents[i].system, now.date(), self.agents[i].scratch.wake_hour,
                    self._plan_memories(i, now), cfg.lang,
                ) for i in starting
            ])  # fmt: skip
            known = {i: self._known_places(i) for i in starting}
            items: dict[int, list[dict[str, Any]]] = {}
            for i, ans in zip(starting, days, strict=True):
                a = self.agents[i]
                items[i] = plan.plan_items(ans.data, a.profile, a.scratch.wake_hour)
            # Where: a scored choice for each activity the persona chose; waking up, lunch and winding down happen
            # where their words say (home, a social place, home).
            free = {i: [it for it in items[i] if not plan.is_fixed(str(it["activity"]))] for i in starting}
            asking = [i for i in starting if free[i]]
            wheres = self._ask([
                plan.plan_places_request(
                    self.agents[i].profile, self.agents[i].system, free[i], known[i], cfg.lang
                ) for i in asking
            ])  # fmt: skip
            answers = {i: ans.data or {} for i, ans in zip(asking, wheres, strict=True)}
            for i in starting:
                a, s = self.agents[i], self.agents[i].scratch
                for it in items[i]:
                    it["place"] = plan.place_rule(a.profile, str(it["activity"]))
                for k, it in enumerate(free[i]):
                    place = answers[i].get(str(k + 1))
                    if place in known[i]:
                        it["place"] = place
                s.daily_plan = [f"{it['hour']}:00 {it['activity']} at {it['place']}" for it in items[i]]
                s.hourly = plan.schedule_from_plan(a.profile, s.wake_hour, items[i])
                s.plan_date, s.block_hour, s.run = today, -1, []
                a.memory.add(
                    "thought", f"This is {a.name}'s plan for {now:%A %B %d}: " + "; ".join(s.daily_plan),
                    when=now, poignancy=5,
                )  # fmt: skip
        replanned = self._replan(now, fresh=set(starting)) if cfg.replan else []
        # A new hour continues its plan item (same activity and place until the same end) or starts one, which is
        # decomposed once for all its hours; a night's hour is sleep: nothing to decompose.
        new_run: list[tuple[int, int, int]] = []  # (persona, from hour, end hour)
        for i, a in enumerate(self.agents):
            s = a.scratch
            if s.block_hour == now.hour:
                continue
            block = a.block(now.hour)
            hourly = s.hourly or plan.hourly_schedule_rule(a.profile, s.wake_hour)
            _, end = plan.block_run(hourly, now.hour)
            s.block_hour = now.hour
            if s.run and s.run[1:] == [end, block["activity"], block["place"]] and s.steps:
                continue  # the same plan item goes on
            if block["activity"] == "sleeping":
                s.run, s.steps = (
                    [now.hour, end, "sleeping", block["place"]],
                    [{"minutes": 60 * (end - now.hour), "activity": "sleeping"}],
                )
                continue
            new_run.append((i, now.hour, end))
        decomposed = self._ask([
            plan.decompose_request(
                self.agents[i].profile, self.agents[i].system, now, self.agents[i].block(h), cfg.lang, end=end
            ) for i, h, end in new_run
        ])  # fmt: skip
        for (i, h, end), ans in zip(new_run, decomposed, strict=True):
            a = self.agents[i]
            block = a.block(h)
            minutes = 60 * (end - h)
            raw = (ans.data or {}).get("steps") or []
            steps = plan.clean_steps(raw, minutes, self._known_places(i))
            self._semantic("steps", ans, len(raw), len(steps))
            a.scratch.steps = steps or plan.decompose_rule(block["activity"], minutes)
            a.scratch.run = [h, end, block["activity"], block["place"]]
        for a in self.agents:
            block = a.block(now.hour)
            a.scratch.activity = plan.current_step(a.scratch.steps, self._run_minute(a, now)) or block["activity"]
            a.scratch.target = block["place"]

        # -- 3. reflect: focal questions, then insights with evidence ---------------------------------
        reflecting = [i for i, a in enumerate(self.agents) if reflect.should_reflect(a.memory, cfg.reflect_threshold)]
        if reflecting:
            self._reflect(reflecting, now)

        # -- 4. react, then execute: the action choice (one batch) -------------------------------------------
        obs = self._obs
        masks = np.stack([np.asarray(obs[a]["action_mask"]) for a in env.possible_agents])  # (N, 4)
        reach = self._reach(xy, places)
        partners = [self._pick_partner(i, reach) for i in range(n)]
        reactions = self._react(partners, masks, places, now) if cfg.react else {}
        # The model chooses what to do at the planned place: when the persona is there and its activity (or place) is
        # new to the choice; the choice holds until then. On the way there, it walks (the plan says where to be).
        requests, asked, rules = [], [], []
        actions = ["move"] * n
        decided: dict[int, dict[str, Any]] = {}
        for i, a in enumerate(self.agents):
            target_idx = env.places.index(a.scratch.target)
            at_target = int(places[i]) == target_idx
            social = a.scratch.target in a.profile.social_places or "chat" in a.scratch.activity
            at_research = a.scratch.target in a.profile.research_places
            rule = execute.decide_rule(
                at_target=at_target,
                mask=masks[i],
                social=social,
                partner_ok=partners[i] >= 0,
                at_research=at_research,
            )
            rules.append(rule)
            if i in reactions:
                continue  # talking or waiting: the reaction decided this step's action
            choices = execute.listing_order(
                execute.options_here(masks[i], partner_ok=partners[i] >= 0), f"{a.name}|{now.isoformat()}"
            )
            key = f"{a.scratch.activity} @ {a.scratch.target}"
            if not at_target or not choices:
                actions[i] = rule
                continue
            if a.scratch.decided_for == key and a.scratch.decided in choices:
                actions[i] = a.scratch.decided  # the same activity goes on
                continue
            if len(choices) == 1:  # nothing to choose (the mask leaves one thing to do here): no model call
                actions[i] = choices[0]
                a.scratch.decided, a.scratch.decided_for = actions[i], key
                decided[i] = {"choice": actions[i], "options": list(choices), "fallback": False}
                continue
            focal = [a.scratch.activity] + [m.description for m in a.memory.latest(1, ("event",))]
            _, mem_text = retrieve_lines(a.memory, focal, now, task=a.persona.task, k=cfg.memories_in_prompt)
            asked.append(i)
            requests.append(
                execute.decide_request(
                    system=a.system,
                    perceived=a.scratch.perceived,
                    place=env.places[int(places[i])],
                    activity=a.scratch.activity,
                    target=a.scratch.target,
                    memories=mem_text,
                    mask=masks[i],
                    lang=cfg.lang,
                    fallback=functools.partial(str, rule if rule in choices else choices[0]),
                    seed=self._seed(),
                    temperature=cfg.temperature,
                    choices=choices,
                )
            )
        for i, d, req in zip(asked, self._ask(requests), requests, strict=True):
            a = self.agents[i]
            actions[i] = d.choice if d.choice in req.choices else rules[i]
            a.scratch.decided, a.scratch.decided_for = actions[i], f"{a.scratch.activity} @ {a.scratch.target}"
            decided[i] = {"choice": actions[i], "options": list(req.choices), "fallback": d.fallback}
        waiting: set[int] = set()
        for i, how in reactions.items():
            if how == "talk":
                actions[i] = "chat"
            else:  # wait: stay here for a step; the hour's remaining steps shift later
                waiting.add(i)
                actions[i] = "move"

        # -- 5. converse: pairs talk turn by turn (each turn one batch), both remember -----------------
        conversations = self._converse(actions, partners, now, places)
        in_conv = {self._index(name) for c in conversations for name in c["participants"]}
        for i, how in reactions.items():
            if how == "talk" and i not in in_conv:  # the partner was taken by another pair: no chat with nobody
                actions[i] = rules[i] if rules[i] != "chat" else "move"
        stride = int(env.stride)
        for i in sorted(waiting - in_conv):
            a = self.agents[i]
            other = a.scratch.reaction.split(":", 1)[1]
            a.scratch.steps = react.insert_step(
                a.scratch.steps, self._run_minute(a, now), stride, f"waiting for {other}", self._run_minutes(a)
            )
            a.scratch.activity = f"waiting for {other}"
        waiting -= in_conv
        if cfg.replan and conversations:
            self._after_conversations(conversations, now)
        final = ["chat" if i in in_conv else act for i, act in enumerate(actions)]
        self._emoji(final, places)

        # -- 6. act in the town -------------------------------------------------------------------------
        rich: dict[str, Any] = {}
        record_agents: dict[str, Any] = {}
        talked = {c["participants"][0]: c for c in conversations} | {c["participants"][1]: c for c in conversations}
        for i, a in enumerate(self.agents):
            conv = talked.get(a.name)
            partner = self._index(conv["participants"][1 if conv["participants"][0] == a.name else 0]) if conv else n
            utterance = next((t for s, t in conv["turns"] if s == a.name), None) if conv else None
            action = "chat" if conv else actions[i]
            a.scratch.action = action
            target = int(places[i]) if i in waiting and not conv else env.places.index(a.scratch.target)
            rich[env.possible_agents[i]] = execute.rich_action(action, target, partner, utterance)
            x, y = env.position(i)
            record_agents[a.name] = {
                "position": [x, y],
                "action": action,
                "emoji": a.scratch.emoji,
                "description": a.scratch.activity,
                "target": a.scratch.target,
                "utterance": utterance,
                "fallback": bool(self._step_fallbacks[i]),
                "fallbacks": list(self._step_fallbacks[i]),
                "reaction": a.scratch.reaction or None,
                "replanned": i in replanned,
                "decided": decided.get(i),
            }
        self._use_objects(places, talked)
        for i, a in enumerate(self.agents):
            m = int(self.acts_on[i])
            record_agents[a.name]["object"] = self.objects.addresses[m] if m >= 0 else None
        record = {
            "step": self.step_count,
            "time": now.isoformat(timespec="minutes"),
            "agents": record_agents,
            "conversations": conversations,
            "objects": self.object_states(),
        }
        self._obs, rewards, _, _, self._infos = env.step(rich)
        for i, a in enumerate(self.agents):
            record_agents[a.name]["reward"] = float(rewards.get(env.possible_agents[i], 0.0))
        self.step_count += 1
        self.records.append(record)
        if cfg.memory_capacity is not None:
            for a in self.agents:
                a.memory.forget(now)
        if not env.agents:  # the episode ended: a new day of the same lives
            self.reset(self.seed + self.step_count)
        return record

    # -- helpers of step() --------------------------------------------------------------------------
    def _rate(self, events: list[tuple[int, str]], now: dt.datetime) -> dict[int, list[float]]:
        """Poignancy of each persona's new events, in order: ONE request per persona for all of them.

        An event the persona has already rated (the same description among its latest memories) keeps
        that rating without a new request (the same thing seen again matters as much as it did).
        """
        by_persona: dict[int, list[str]] = {}
        for i, text in events:
            by_persona.setdefault(i, []).append(text)
        out: dict[int, list[float]] = {}
        ask: list[tuple[int, list[str]]] = []
        for i, texts in by_persona.items():
            known = {
                m.description: m.poignancy for m in self.agents[i].memory.latest(RATED_LOOKBACK, ("event", "chat"))
            }
            out[i] = [known.get(t, -1.0) for t in texts]
            new = list(dict.fromkeys(t for t in texts if t not in known))
            if new:
                ask.append((i, new))
        answers = self._ask([
            perceive.poignancy_request(self.agents[i].profile, self.agents[i].system, new, self.cfg.lang)
            for i, new in ask
        ])  # fmt: skip
        for (i, new), ans in zip(ask, answers, strict=True):
            got = dict(zip(new, perceive.ratings(ans.data, len(new)), strict=True))
            out[i] = [got[t] if r < 0 else r for t, r in zip(by_persona[i], out[i], strict=True)]
        return out

    def _semantic(self, what: str, answer: LLMResponse, given: int, kept: int) -> None:
        """Count the items of a model's answer (``what``: ``plan_items``, ``steps``) and those dropped as meaningless
        (copied placeholders, place names, repeats): each dropped one is a ``semantic`` fault of the usage meter."""
        if answer.fallback:
            return
        self.stats[what] += given
        self.stats[f"{what}_dropped"] += given - kept
        usage = getattr(self.llm, "usage", None)
        for _ in range(max(given - kept, 0)):
            if usage is not None:
                usage.add_fault("semantic", called=False)

    def _run_minute(self, a: GenerativeAgent, now: dt.datetime) -> int:
        """Minutes since the start of the persona's current plan item's decomposition."""
        start = int(a.scratch.run[0]) if a.scratch.run else now.hour
        return (now.hour - start) * 60 + now.minute

    def _run_minutes(self, a: GenerativeAgent) -> int:
        """Length in minutes of the persona's current plan item's decomposition."""
        return 60 * (int(a.scratch.run[1]) - int(a.scratch.run[0])) if a.scratch.run else 60

    def _object_events(self, xy: np.ndarray) -> perceive.ObjectEvents:
        """The objects in use (as the last step left them) as events to perceive; a user does not perceive its own."""
        used = np.array(sorted(self.object_state), dtype=np.int64)  # (M,)
        distance = self.objects.distance(xy)[:, used]  # (N, M)
        distance[self.acts_on[:, None] == used[None, :]] = -1
        return perceive.ObjectEvents(
            addresses=tuple(self.objects.addresses[m] for m in used.tolist()),
            states=tuple(self.object_state[m] for m in used.tolist()),
            distance=distance,
        )

    def _use_objects(self, places: np.ndarray, talked: dict[str, Any]) -> None:
        """Set the objects acted on this step (the original's ``act_obj_event``); every other object is idle.

        A persona acts on an object of its current arena when it works or researches at its target place,
        rests at home (a task at home) or chats at one of its social sites; the state names it and its activity.
        """
        env = self.env
        n = len(self.agents)
        action = np.array([ACTION_NAMES.index(a.scratch.action) for a in self.agents])  # (N,)
        target = np.array([env.places.index(a.scratch.target) for a in self.agents])  # (N,)
        chatted = np.array([a.name in talked for a in self.agents], dtype=bool)  # (N,)
        here = np.asarray(places, dtype=np.int64)  # (N,) where the action happens
        social = np.asarray(env.is_social_site)[np.arange(n), here]  # (N,)
        working = (action == execute.TASK) | (action == execute.RESEARCH)
        acting = (working & (here == target)) | ((action == execute.TASK) & (here == np.asarray(env.home)))
        acting |= (action == execute.CHAT) & chatted & social
        chosen = self.objects.choose(here, [a.scratch.activity for a in self.agents])  # (N,)
        self.acts_on = np.where(acting, chosen, -1).astype(np.int64)
        self.object_state = {}
        for m in np.unique(self.acts_on[self.acts_on >= 0]).tolist():
            users = np.flatnonzero(self.acts_on == m).tolist()
            self.object_state[m] = "being used by " + "; ".join(
                f"{self.agents[i].name}: {' '.join(self.agents[i].scratch.activity.split())[:120]}" for i in users
            )

    def _plan_memories(self, i: int, now: dt.datetime) -> list[str]:
        """What the persona retrieves when it plans its day (recency, importance, relevance, task resonance)."""
        a = self.agents[i]
        focal = [f"{a.name}'s plans for {now:%A}", a.persona.task]
        nodes, _ = retrieve_lines(a.memory, focal, now, task=a.persona.task, k=PLAN_MEMORIES)
        return [x.description[:MEMORY_CHARS] for x in nodes]

    def _known_places(self, i: int) -> list[str]:
        """The env places persona ``i`` may plan to go to: its own, and every place in its spatial memory."""
        a = self.agents[i]
        known = [p for p in a.profile.places]
        for sector, arenas in a.spatial.tree.items():
            for arena in arenas:
                place = f"{sector}:{arena}"
                if place in self._place_set and place not in known:
                    known.append(place)
        return known

    @functools.cached_property
    def _place_set(self) -> frozenset[str]:
        return frozenset(self.env.places)

    def _replan(self, now: dt.datetime, fresh: set[int]) -> list[int]:
        """Re-plan the rest of today for the personas whose scratch asks for it (one batch); returns them.

        Not for a persona that planned a new day this step (its plan already retrieved the trigger),
        nor when no waking hour of today is left to change; the trigger is dropped either way.
        """
        cfg = self.cfg
        who, hours = [], {}
        for i, a in enumerate(self.agents):
            if not a.scratch.replan or not a.scratch.hourly or i in fresh:
                continue
            hours[i] = react.open_hours(a.scratch.hourly, now, a.scratch.wake_hour, a.scratch.block_hour != now.hour)
            if hours[i]:
                who.append(i)
        requests, known = [], {i: self._known_places(i) for i in who}
        for i in who:
            a = self.agents[i]
            _, mem_text = retrieve_lines(a.memory, [a.scratch.replan], now, task=a.persona.task, k=REPLAN_MEMORIES)
            requests.append(
                react.replan_request(
                    a.profile, a.system, now=now, hourly=a.scratch.hourly, hours=hours[i], trigger=a.scratch.replan,
                    memories=mem_text, places=known[i], lang=cfg.lang,
                )
            )  # fmt: skip
        for i, ans in zip(who, self._ask(requests), strict=True):
            a = self.agents[i]
            before = [dict(b) for b in a.scratch.hourly]
            a.scratch.hourly = react.merge_replan(
                a.scratch.hourly,
                react.replan_hours(hours[i], a.scratch.replan),
                ans.data or {},
                known[i],
                a.scratch.replan,
            )
            changed = [b for b, old in zip(a.scratch.hourly, before, strict=True) if b != old]
            if changed:
                summary = "; ".join(f"{b['hour']}:00 {b['activity']} at {b['place']}" for b in changed[:4])
                a.memory.add("thought", f"{a.name} changed the plan for today: {summary}", when=now, poignancy=5)
        for a in self.agents:
            a.scratch.replan = ""
        return who

    def _react(self, partners: list[int], masks: np.ndarray, places: np.ndarray, now: dt.datetime) -> dict[int, str]:
        """Decide to talk, wait or continue for each persona that has another within reach (one batch).

        Returns ``{persona: "talk" | "wait"}`` for those whose reaction sets this step's action.
        """
        cfg, env = self.cfg, self.env
        for a in self.agents:
            a.scratch.reaction = ""
            a.scratch.reacted = {k: v - 1 for k, v in a.scratch.reacted.items() if v > 1}
        if now.hour >= plan.SLEEP_HOUR:
            return {}  # the original never reacts at 23:00
        who = []
        for i, a in enumerate(self.agents):
            j = partners[i]
            if j < 0 or self.agents[j].name in a.scratch.reacted or self._asleep(i, now) or self._asleep(j, now):
                continue
            who.append((i, j))
        if not who:
            return {}
        requests = []
        for i, j in who:
            a, b = self.agents[i], self.agents[j]
            _, mem_text = retrieve_lines(a.memory, [b.name], now, task=a.persona.task, k=cfg.memories_in_prompt)
            social = a.scratch.target in a.profile.social_places or "chat" in a.scratch.activity
            rule = react.react_rule(
                social=social and bool(masks[i][1]),
                other_busy=b.scratch.action in ("task", "research"),
                # arriving (last step a walk) where the other already works: wait for it, as for a used object
                same_target=b.scratch.target == a.scratch.target
                and int(places[i]) == env.places.index(a.scratch.target)
                and a.scratch.action == "move",
            )
            requests.append(
                react.react_request(
                    a.profile, a.system, other=b.name, other_doing=b.scratch.activity, now=now,
                    place=env.places[int(places[i])], activity=a.scratch.activity, memories=mem_text, rule=rule,
                    lang=cfg.lang,
                )
            )  # fmt: skip
        out: dict[int, str] = {}
        for (i, j), ans in zip(who, self._ask(requests), strict=True):
            a, b = self.agents[i], self.agents[j]
            how = ans.choice if ans.choice in react.REACTIONS else "continue"
            a.scratch.reacted[b.name] = cfg.react_cooldown
            a.scratch.reaction = f"{how}:{b.name}"
            if how == "talk" and masks[i][1]:
                out[i] = "talk"
            elif how == "wait":
                out[i] = "wait"  # the hour's steps shift after the conversations (a waiter may be talked to)
        return out

    def _asleep(self, i: int, now: dt.datetime) -> bool:
        """Whether persona ``i`` is in its sleeping hours or its activity is sleep (never reacts or is reacted to)."""
        s = self.agents[i].scratch
        return now.hour < s.wake_hour or now.hour >= plan.SLEEP_HOUR or "sleep" in s.activity.lower()

    def _after_conversations(self, conversations: list[dict[str, Any]], now: dt.datetime) -> None:
        """Conversations take time out of the hour, leave a memo and a planning thought, and call for a re-plan."""
        cfg, stride = self.cfg, int(self.env.stride)
        jobs: list[tuple[int, str, list[tuple[str, str]]]] = []
        for conv in conversations:
            names = conv["participants"]
            turns = [(str(t[0]), str(t[1])) for t in conv["turns"]]
            for me, other in ((names[0], names[1]), (names[1], names[0])):
                i = self._index(me)
                a = self.agents[i]
                a.scratch.steps = react.insert_step(
                    a.scratch.steps, self._run_minute(a, now), stride, f"chatting with {other}", self._run_minutes(a)
                )
                a.scratch.activity = f"chatting with {other}"
                jobs.append((i, other, turns))
        answers = self._ask([react.conversation_thoughts_request(self.agents[i].profile, self.agents[i].system, o, t,
                                                                 cfg.lang) for i, o, t in jobs])  # fmt: skip
        for (i, other, turns), ans in zip(jobs, answers, strict=True):
            a = self.agents[i]
            memo_text = str((ans.data or {}).get("memo", "")).strip()[:300]
            plan_text = str((ans.data or {}).get("thought", "")).strip()[:300]
            for text in (memo_text, plan_text):
                if text:
                    a.memory.add("thought", text, when=now, poignancy=perceive.poignancy_rule(a.profile, text),
                                 spo=(a.name, "thinks about", other))  # fmt: skip
            said = " ".join(t for s, t in turns if s == other)[:200]
            a.scratch.replan = f"conversation with {other}: {said} {plan_text}".strip()

    def _emoji(self, actions: list[str], places: np.ndarray) -> None:
        """The emoji of each persona's activity: the model's for a new activity (one batch), else the rule's."""
        env, cfg = self.env, self.cfg
        rules = [execute.emoji_for(actions[i], int(places[i]) == int(env.home[i])) for i in range(len(self.agents))]
        if not cfg.model_emoji:
            for a, rule in zip(self.agents, rules, strict=True):
                a.scratch.emoji = rule
            return
        new = []
        for i, a in enumerate(self.agents):
            if a.scratch.emoji_activity == a.scratch.activity:
                continue
            known = self.emoji_cache.get(a.scratch.activity)
            if known is None:
                new.append(i)
            else:  # an activity seen before (e.g. "sleeping"): the model's emoji for it, no call
                a.scratch.emoji, a.scratch.emoji_activity = known, a.scratch.activity
        answers = self._ask(
            [
                react.emoji_request(self.agents[i].system, self.agents[i].scratch.activity, rules[i], cfg.lang)
                for i in new
            ]
        )
        for i, ans in zip(new, answers, strict=True):
            a = self.agents[i]
            got = (ans.data or {}).get("emoji")
            a.scratch.emoji = str(got) if react.valid_emoji(got) else rules[i]
            a.scratch.emoji_activity = a.scratch.activity
            if react.valid_emoji(got) and not ans.fallback:
                self.emoji_cache[a.scratch.activity] = str(got)
                while len(self.emoji_cache) > EMOJI_CACHE:
                    del self.emoji_cache[next(iter(self.emoji_cache))]

    def _reach(self, xy: np.ndarray, places: np.ndarray) -> np.ndarray:
        cheb = np.abs(xy[:, None, :] - xy[None, :, :]).max(2)  # (N, N)
        reach = (cheb <= self.env.dynamics.chat_radius) & (places[:, None] == places[None, :])
        np.fill_diagonal(reach, False)
        return np.where(reach, cheb, -1)

    def _pick_partner(self, i: int, reach: np.ndarray) -> int:
        """Nearest reachable persona not in the chat cooldown buffer, or -1."""
        buffer = self.agents[i].scratch.chat_buffer
        if self.agents[i].scratch.talk_rest:
            return -1  # just talked: not again for a while
        best, best_d = -1, 1 << 30
        for j in np.flatnonzero(reach[i] >= 0):
            if self.agents[int(j)].name in buffer or self.agents[int(j)].scratch.talk_rest:
                continue
            if reach[i, j] < best_d:
                best, best_d = int(j), int(reach[i, j])
        return best

    def _reflect(self, who: list[int], now: dt.datetime) -> None:
        cfg = self.cfg
        self.stats["reflections"] += len(who)
        latest = {i: self.agents[i].memory.latest(FOCAL_MEMORIES, ("event", "thought", "chat")) for i in who}
        focal = self._ask(
            [reflect.focal_request(self.agents[i].system, latest[i], cfg.focal_points, cfg.lang) for i in who]
        )
        jobs: list[tuple[int, str, list[MemoryNode]]] = []
        for i, ans in zip(who, focal, strict=True):
            questions = [str(q)[:200] for q in (ans.data or {}).get("questions", [])][: cfg.focal_points]
            questions = questions or reflect.focal_rule(latest[i], cfg.focal_points)
            found = self.agents[i].memory.retrieve(
                questions, now, task=self.agents[i].persona.task, top_k=INSIGHT_MEMORIES
            )
            jobs.extend((i, q, found[q]) for q in questions)
        insights = self._ask(
            [reflect.insight_request(self.agents[i].system, q, nodes, cfg.insights, cfg.lang) for i, q, nodes in jobs]
        )
        for (i, _, nodes), ans in zip(jobs, insights, strict=True):
            mem = self.agents[i].memory
            allowed = {x.id: x for x in nodes}
            known = {x.description for x in mem.latest(50, ("thought",))}
            for item in (ans.data or {}).get("insights", [])[: cfg.insights]:
                evidence = [e for e in item.get("evidence", []) if isinstance(e, int) and e in allowed]
                text = str(item.get("text", "")).strip()[:300]
                if not text or text in known:
                    continue
                known.add(text)
                poignancy = max((allowed[e].poignancy for e in evidence), default=5.0)
                mem.add("thought", text, when=now, poignancy=poignancy, evidence=evidence)
        for i in who:
            self.agents[i].memory.poignancy_since_reflection = 0.0

    def _converse(
        self, actions: list[str], partners: list[int], now: dt.datetime, places: np.ndarray
    ) -> list[dict[str, Any]]:
        cfg, env = self.cfg, self.env
        busy: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for i, act in enumerate(actions):
            j = partners[i]
            if act == "chat" and j >= 0 and i not in busy and j not in busy:
                pairs.append((i, j))
                busy.update((i, j))
        if not pairs:
            return []
        transcripts: list[list[tuple[str, str]]] = [[] for _ in pairs]
        ended = [False] * len(pairs)
        memories = {}
        for i, j in pairs:
            for a, b in ((i, j), (j, i)):
                _, memories[(a, b)] = retrieve_lines(
                    self.agents[a].memory, [self.agents[b].name], now, task=self.agents[a].persona.task,
                    k=cfg.memories_in_prompt,
                )  # fmt: skip
        for turn in range(cfg.chat_turns):
            live = [k for k in range(len(pairs)) if not ended[k]]
            if not live:
                break
            requests = []
            for k in live:
                speaker, listener = pairs[k] if turn % 2 == 0 else pairs[k][::-1]
                requests.append(
                    converse.converse_request(
                        self.agents[speaker].profile,
                        self.agents[speaker].system,
                        partner=self.agents[listener].name,
                        now=now,
                        place=env.places[int(places[speaker])],
                        memories=memories[(speaker, listener)],
                        transcript=transcripts[k],
                        turn=turn,
                        last_turn=turn == cfg.chat_turns - 1,
                        lang=cfg.lang,
                        seed=self._seed(),
                    )
                )
            for k, ans in zip(live, self._ask(requests), strict=True):
                speaker = pairs[k][turn % 2]
                data = ans.data or {}
                text = str(data.get("utterance", "")).strip()[: converse.UTTERANCE_CHARS] or "..."
                transcripts[k].append((self.agents[speaker].name, text))
                ended[k] = bool(data.get("end", False)) and turn >= 1
        out = []
        stored: list[tuple[int, str, list[tuple[str, str]]]] = []
        for (i, j), turns in zip(pairs, transcripts, strict=True):
            out.append({"participants": [self.agents[i].name, self.agents[j].name], "turns": [list(t) for t in turns]})
            for a, b in ((i, j), (j, i)):
                desc = f"conversation with {self.agents[b].name} about {turns[0][1][:80]}"
                self.agents[a].scratch.chatting_with = self.agents[b].name
                self.agents[a].scratch.chat = list(turns)
                self.agents[a].scratch.chat_buffer[self.agents[b].name] = cfg.chat_cooldown
                self.agents[a].scratch.talk_rest = cfg.talk_rest
                stored.append((a, desc, list(turns)))
        rated = self._rate([(a, desc) for a, desc, _ in stored], now)
        for a, desc, turns in stored:
            poignancy = rated[a].pop(0)
            other = (
                next(name for name in (t[0] for t in turns) if name != self.agents[a].name) if len(turns) > 1 else ""
            )
            self.agents[a].memory.add(
                "chat",
                desc,
                when=now,
                poignancy=poignancy,
                spo=(self.agents[a].name, "chat with", other),
                chat=turns,
            )
        return out

    # -- interviews, history ------------------------------------------------------------------------
    def analysis_chat(self, name: str, message: str) -> str:
        """Interview a persona (``call -- analysis NAME``): it answers in character; nothing is stored."""
        return self.llm.complete(self.analysis_request(name, message)).text

    def analysis_request(self, name: str, message: str) -> LLMRequest:
        """The request of :meth:`analysis_chat` (memories retrieved without touching them; nothing is stored), for
        answering many questions in one batch (``ga-eval --interview``)."""
        a = self.agent(name)
        now = self.env.now
        nodes = a.memory.retrieve([message], now, task=a.persona.task, top_k=self.cfg.memories_in_prompt, touch=False)
        mem_text = numbered([x.description for x in nodes[message]])
        place = a.scratch.target or a.profile.home
        fallback = f"I'm {a.name}. Right now: {a.scratch.activity}, at {place}. Lately I've been {a.persona.currently}"
        return LLMRequest(
            kind="analysis",
            system=a.system,
            user=render(
                self.cfg.lang,
                "analysis",
                time=f"{now:%A %H:%M}",
                place=place,
                activity=a.scratch.activity,
                memories=mem_text,
                message=quote(message, 1000),
            ),
            max_tokens=200,
            fallback=lambda: fallback,
        )

    def whisper(self, name: str, text: str) -> None:
        """The persona's inner voice (``call -- whisper NAME: TEXT``): a high-poignancy thought, then a re-plan.

        Raises:
            KeyError: an unknown persona, listing the personas.
            ValueError: an empty text.
        """
        a = self.agent(name)
        text = " ".join(str(text).split())[:300]
        if not text:
            raise ValueError("whisper: TEXT: is empty. Fix: call -- whisper NAME: what the persona should think")
        a.memory.add("thought", text, when=self.env.now, poignancy=WHISPER_POIGNANCY, spo=(a.name, "thinks", "whisper"))
        a.scratch.replan = f"{a.persona.first_name} thinks: {text}"

    def plant(self, name: str, text: str) -> None:
        """A memory planted in the persona's stream: an event it observed now, poignancy by rule (an experiment's
        intervention; no re-plan, unlike :meth:`whisper`).

        Raises:
            KeyError: an unknown persona, listing the personas.
            ValueError: an empty text.
        """
        a = self.agent(name)
        text = " ".join(str(text).split())[:300]
        if not text:
            raise ValueError("memory: text: is empty. Fix: give what the persona should remember")
        a.memory.add("event", text, when=self.env.now, poignancy=perceive.poignancy_rule(a.profile, text))

    def event(self, place: str, text: str) -> list[str]:
        """An event at ``place`` (a place of the town's map) that every persona there perceives now; returns who.

        Raises:
            KeyError: an unknown place, listing the places.
            ValueError: an empty text.
        """
        places = list(self.env.places)
        if place not in places:
            raise KeyError(f"event: place {place!r} is not on the map; the places are: {', '.join(places)}")
        text = " ".join(str(text).split())[:300]
        if not text:
            raise ValueError("event: text: is empty. Fix: describe what happens at the place")
        here = np.flatnonzero(self.env.current_places == places.index(place))
        for i in here.tolist():
            a = self.agents[i]
            a.memory.add("event", text, when=self.env.now, poignancy=perceive.poignancy_rule(a.profile, text))
        return [self.agents[i].name for i in here.tolist()]

    def load_history(self, csv_path: str | Path) -> int:
        """Seed memories from a CSV with columns ``name`` and ``whisper`` (the original's agent history).

        Returns:
            The number of memories added.

        Raises:
            ValueError: a missing file or column, or an unknown persona, naming the file, row and fix.
        """
        path = Path(csv_path)
        if not path.is_file():
            raise ValueError(f"{path}: file: not found. Fix: give a CSV with columns name,whisper")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            if not {"name", "whisper"} <= cols:
                raise ValueError(
                    f"{path}: columns: {sorted(cols)} lack name/whisper. Fix: write a header 'name,whisper'"
                )
            rows = list(reader)
        now = self.env.now
        added = 0
        for k, row in enumerate(rows, start=2):
            try:
                a = self.agent(row["name"] or "")
            except KeyError as e:
                raise ValueError(f"{path}: row {k}: name: {e.args[0]}. Fix: use a persona's name") from None
            for whisper in (row["whisper"] or "").split(";"):
                text = whisper.strip()
                if text:
                    rule = perceive.poignancy_rule(a.profile, text)
                    a.memory.add("thought", text, when=now, poignancy=rule)
                    added += 1
        return added

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything of the minds to resume exactly (the env's state is saved by the caller)."""
        acts_on = [(a.name, int(m)) for a, m in zip(self.agents, self.acts_on.tolist(), strict=True) if m >= 0]
        return {
            "step_count": self.step_count,
            "seed": self.seed,
            "rng": json.loads(json.dumps(self.rng.bit_generator.state)),
            "config": json.loads(json.dumps(dataclasses.asdict(self.cfg), default=str)),
            "agents": {a.name: a.state_dict() for a in self.agents},
            "obs": self._obs,
            "infos": self._infos,
            "objects": {"state": self.object_states(), "acts_on": {n: self.objects.addresses[m] for n, m in acts_on}},
            "emoji_cache": dict(self.emoji_cache),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (same town and personas)."""
        missing = {a.name for a in self.agents} - set(state["agents"])
        if missing:
            raise ValueError(f"checkpoint: agents: no state for {sorted(missing)}. Fix: resume with the same personas")
        self.step_count, self.seed = int(state["step_count"]), int(state["seed"])
        self.rng.bit_generator.state = state["rng"]
        for a in self.agents:
            a.load_state_dict(state["agents"][a.name])
        self._obs, self._infos = state["obs"], state["infos"]
        objects = state.get("objects") or {"state": {}, "acts_on": {}}  # a checkpoint from before objects: all idle
        self.object_state = {self.objects.index(k): str(v) for k, v in objects["state"].items()}
        acts_on = objects["acts_on"]
        self.acts_on = np.array([self.objects.index(acts_on[a.name]) if a.name in acts_on else -1
                                 for a in self.agents], dtype=np.int64)  # fmt: skip
        self.emoji_cache = dict(state.get("emoji_cache") or {})


def _is_idle(ev: perceive.Event) -> bool:
    """Someone idle ("Theo Ortiz is idle at ..."): poignancy 1 by rule, as the original rates it."""
    return ev.spo[1] == "idle" and " is idle" in ev.description


def _is_object_event(ev: perceive.Event) -> bool:
    """An object's state (its subject is an address ``Town:Sector:arena:object``), not a persona's doing."""
    return ev.spo[1] == "is" and ev.spo[0].count(":") >= 3
