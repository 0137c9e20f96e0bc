"""The :class:`Society` protocol: what steps the town for the simulation workflow.

A *society* owns the town env and whatever decides the personas' actions. The simulation
(:mod:`ga_sim.simulation`) and the console (:mod:`ga_sim.console`) only use the
:class:`Society` protocol:

* ``step() -> dict``: advance one step and return the step record (see :func:`step_record`);
* ``state_dict()`` / ``load_state_dict(state)``: everything needed to continue exactly (the env's
  part is :meth:`ga_env.TownEnv.state_dict`);
* ``llm``: the language model behind the minds, or None;
* ``lessons()``: the trained lessons in the minds' system prompts, by group (console: ``print lessons``);
* the console's accessors (``schedule``, ``hourly_schedule``, ``current_tile``,
  ``chatting_with_buffer``, ``associative_memory``, ``spatial_memory``, ``analysis_chat``,
  ``load_history``).

:class:`PolicySociety` drives the town with a numeric policy (``ScriptedPolicy``, ``RandomPolicy``
or a trained GRPO ``SoftmaxPolicy``), or with a trained ``NeuroSymbolicPolicy`` (MLP + λ·LLM, whose
backend is then the society's ``llm``). Its personas do not talk through the LLM: utterances in its transcript are
templates built from the persona's group cause, and its "memory" is a bounded log of what the
persona did and heard, labelled as such. The generative personas (``agents.generative``) are
driven by :class:`GenerativeDriver`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from collections import Counter, deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents import Policy, ScriptedPolicy
from agents.llm import LLMBackend
from agents.neurosymbolic import NeuroSymbolicPolicy
from ga_env import ACTION_NAMES, OBJECTIVE_TERMS, TownEnv

StepRecord = dict[str, Any]
"""One step of a run as plain data (``step``, ``time``, ``personas``, ``groups``...; :func:`step_record`)."""


@runtime_checkable
class Society(Protocol):
    """The town and the minds that decide its personas' actions, as the simulation and the console use them.

    Attributes:
        env: the town.
        t: steps simulated since the run began.
        mind: ``"policy"`` (a numeric policy) or ``"generative"`` (LLM personas).
        llm: the language model behind the minds (its usage is reported), or None.
    """

    env: TownEnv
    t: int
    mind: str

    @property
    def llm(self) -> LLMBackend | None:
        """The language model behind the minds (its usage is reported), or None."""
        ...

    def step(self) -> StepRecord:
        """Advance one step; returns its record."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (plain data and arrays)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of a society built from the same run meta."""
        ...

    def schedule(self, name: str) -> str:
        """The persona's plan for the day (console: ``print persona schedule NAME``)."""
        ...

    def hourly_schedule(self, name: str) -> str:
        """The hour-by-hour schedule."""
        ...

    def current_tile(self, name: str) -> str:
        """Tile and address of the persona."""
        ...

    def chatting_with_buffer(self, name: str) -> str:
        """Whom the persona will not chat with again soon."""
        ...

    def associative_memory(self, name: str, kind: str) -> str:
        """The persona's memories of one kind (``event``, ``thought`` or ``chat``)."""
        ...

    def spatial_memory(self, name: str) -> str:
        """The places the persona knows."""
        ...

    def analysis_chat(self, name: str, message: str) -> str:
        """The persona's answer to an interviewer (not stored in its memory)."""
        ...

    def load_history(self, path: str | Path) -> str:
        """Seed memories from a CSV file (``name,whisper``); returns a summary."""
        ...

    def whisper(self, name: str, text: str) -> str:
        """The persona's inner voice (``call -- whisper NAME: TEXT``); returns what happened.

        Raises:
            KeyError: an unknown persona. ValueError: the mind cannot hear it, or an empty text.
        """
        ...

    def lessons(self) -> dict[str, list[str]]:
        """The lessons in the minds' system prompts, by group (empty: none, or no prompts)."""
        ...

    def reseed(self, seed: int) -> None:
        """New random streams from ``seed`` for the town and the minds (an experiment's branch seed)."""
        ...

    def plant(self, name: str, text: str) -> str:
        """A memory planted in the persona's memory stream (poignancy by rule); returns what happened.

        Raises:
            KeyError: an unknown persona. ValueError: the mind has no memory, or an empty text.
        """
        ...

    def event(self, place: str, text: str) -> str:
        """An event every persona at ``place`` perceives now (a memory each); returns who.

        Raises:
            KeyError: an unknown place. ValueError: the mind has no memory, or an empty text.
        """
        ...


EMOJI = {"move": "🚶", "chat": "💬", "task": "🛠️", "rest": "😴", "research": "🔬", "idle": "⏸️"}
"""Emoji shown above a persona in the replay, by action."""
LOG_LIMIT = 200
"""Events kept per persona by :class:`PolicySociety` (a bounded log, not a memory stream)."""


# -- generators as plain data -----------------------------------------------------------------------------
def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A JSON-able snapshot of a NumPy generator."""
    return {"bit_generator": type(rng.bit_generator).__name__, "state": rng.bit_generator.state}


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """Inverse of :func:`generator_state`."""
    bit_gen = getattr(np.random, state["bit_generator"])()
    bit_gen.state = state["state"]
    return np.random.Generator(bit_gen)


# -- LLM usage as plain data ---------------------------------------------------------------------------
def usage_dict(llm: LLMBackend) -> dict[str, Any]:
    """The backend's usage meter as plain data (calls, tokens, faults by kind...)."""
    u = llm.usage
    out: dict[str, Any] = {}
    for f in dataclasses.fields(u):
        if f.name.startswith("_") or f.metadata.get("state") is False:
            continue  # private, or a measurement of this process (seconds_by_kind)
        v = getattr(u, f.name)
        out[f.name] = dict(v) if isinstance(v, Counter) else v
    return out


def restore_usage(llm: LLMBackend, state: Mapping[str, Any]) -> None:
    """Put a saved usage meter back (so a resumed run's counts continue)."""
    u = llm.usage
    for key, value in state.items():
        current = getattr(u, key)
        setattr(u, key, Counter(value) if isinstance(current, Counter) else value)


# -- step records ------------------------------------------------------------------------------------
def town_summary(env: TownEnv, rewards: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-group figures of one step: reward, awareness of its cause among non-members, totals."""
    out: dict[str, dict[str, float]] = {}
    nonmember = 1.0 - env.members  # (G, N)
    community = (env.aware * nonmember).sum(1) / np.maximum(nonmember.sum(1), 1.0)  # (G,)
    reward = np.bincount(env.group_of, weights=rewards, minlength=len(env.groups))  # (G,)
    for k, grp in enumerate(env.groups):
        out[grp.name] = {
            "reward": round(float(reward[k]), 6),
            "awareness": round(float(community[k]), 6) if grp.cause is not None else 0.0,
            "supporters": int(env.supporter[k].sum()),
            "knowledge": round(float(env.group_knowledge[k]), 6),
            "task_progress": round(float(env.group_progress[k]), 6),
            "conversations": round(float(env.episode_terms[OBJECTIVE_TERMS.index("conversations"), k]), 6),
        }
    return out


def action_label(env: TownEnv, i: int) -> str:
    """The name of agent ``i``'s last effective action (``rest`` for a Task step at home)."""
    a = int(env.last_action[i])
    if a >= len(ACTION_NAMES):
        return "idle"
    if ACTION_NAMES[a] == "task" and env.current_places[i] == env.home[i]:
        return "rest"
    return ACTION_NAMES[a]


def step_record(
    env: TownEnv,
    step: int,
    time: dt.datetime,
    rewards: np.ndarray,
    utterances: Mapping[int, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record of one simulated step (after ``env`` stepped).

    Args:
        env: the env after the step.
        step: 1-based number of this step in the run.
        time: the town's time at which the step's actions were taken.
        rewards: ``(N,)`` rewards of the step.
        utterances: what each agent said this step (by agent index).
        extra: more top-level fields (e.g. LLM usage).
    """
    utterances = utterances or {}
    personas: dict[str, Any] = {}
    for i, p in enumerate(env.personas):
        x, y = env.position(i)
        label = action_label(env, i)
        partner = int(env.last_partner[i])
        personas[p.name] = {
            "tile": [x, y],
            "place": env.places[int(env.current_places[i])],
            "action": label,
            "emoji": EMOJI[label],
            "description": env.describe(i),
            "utterance": utterances.get(i),
            "partner": env.personas[partner].name if partner >= 0 else None,
            "reward": round(float(rewards[i]), 6),
        }
    record = {"step": step, "time": time.isoformat(timespec="minutes"), "personas": personas}
    record["groups"] = town_summary(env, rewards)
    if extra:
        record.update(extra)
    return record


def persona_index(env: TownEnv, name: str) -> int:
    """Index of the persona called ``name`` (case-insensitive; a unique first name works too)."""
    names = [p.name for p in env.personas]
    lowered = name.strip().lower()
    exact = [i for i, n in enumerate(names) if n.lower() == lowered]
    if exact:
        return exact[0]
    first = [i for i, n in enumerate(names) if n.lower().split()[0] == lowered]
    if len(first) == 1:
        return first[0]
    raise KeyError(f"no persona named {name!r}; the personas are: {', '.join(names)}")


# -- numeric-policy driver ---------------------------------------------------------------------------------
class PolicySociety:
    """The town driven by a batched numeric policy.

    A :class:`~agents.neurosymbolic.NeuroSymbolicPolicy` is asked for its LLM term each step
    (``augment_obs``, as in training); its backend is then :attr:`llm` (usage reported and
    checkpointed). Other policies have no language model (``llm`` is None).

    Args:
        env: the town (``obs_mode="box"``), not yet reset.
        policy: a batched policy (``agents.Policy``).
        rng: generator for the policy's sampling.
        kind: a label for the transcript (``scripted``, ``random``, ``trained``).
    """

    mind = "policy"

    def __init__(self, env: TownEnv, policy: Policy, rng: np.random.Generator, kind: str) -> None:
        self.env, self.policy, self.rng, self.kind = env, policy, rng, kind
        self.llm: LLMBackend | None = policy.llm if isinstance(policy, NeuroSymbolicPolicy) else None
        self.t = 0
        self.log: list[deque[dict[str, str]]] = [deque(maxlen=LOG_LIMIT) for _ in env.personas]
        self.visited: list[dict[str, int]] = [{} for _ in env.personas]
        self.chats: list[dict[str, int]] = [{} for _ in env.personas]

    def reset(self, seed: int) -> None:
        """Start the town from ``seed``."""
        self.obs, self.mask = self.env.reset_arrays(seed)
        self._visit()

    # -- stepping --
    def step(self) -> dict[str, Any]:
        """Advance one step; returns its record."""
        env = self.env
        now = env.now
        obs = self.obs
        if isinstance(self.policy, NeuroSymbolicPolicy):
            obs = self.policy.augment_obs([env], obs[None])[0]  # λ·ℓ_LLM appended (LLM calls when due)
        actions = self.policy.act(obs, self.mask, self.rng)
        self.obs, self.mask, rewards, _ = env.step_arrays(actions)
        self.t += 1
        utterances = {}
        for k in np.flatnonzero(env.last_partner >= 0).tolist():
            utterances[k] = self._utterance(k, int(env.last_partner[k]))
        record = step_record(env, self.t, now, rewards, utterances, {"mind": f"policy:{self.kind}"})
        stamp = now.isoformat(timespec="minutes")
        for i, p in enumerate(env.personas):
            rec = record["personas"][p.name]
            self._remember(i, "event", stamp, f"{p.name} is {rec['description']}")
            if rec["utterance"]:
                j = persona_index(env, rec["partner"])
                self._remember(j, "chat", stamp, f'{p.name} said: "{rec["utterance"]}"')
                self._remember(i, "chat", stamp, f'I said to {rec["partner"]}: "{rec["utterance"]}"')
                self.chats[i][rec["partner"]] = self.chats[i].get(rec["partner"], 0) + 1
        self._visit()
        return record

    def _utterance(self, i: int, j: int) -> str:
        env = self.env
        me, other = env.personas[i], env.personas[j]
        cause = env.groups[int(env.group_of[i])].cause
        first = other.name.split()[0]
        if cause is not None and env.group_of[i] != env.group_of[j]:
            return f"Hi {first}! Have you heard about {cause}?"
        return f"Hi {first}, how is your day going? I am busy with: {me.task}."

    def _remember(self, i: int, kind: str, time: str, text: str) -> None:
        self.log[i].append({"kind": kind, "time": time, "text": text})

    def _visit(self) -> None:
        for i, place in enumerate(self.env.current_places):
            name = self.env.places[int(place)]
            self.visited[i][name] = self.visited[i].get(name, 0) + 1

    # -- save / restore --
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly."""
        policy_state: dict[str, Any] = {}
        if isinstance(self.policy, ScriptedPolicy):
            policy_state["streak"] = self.policy.streak.copy()
        if isinstance(self.policy, NeuroSymbolicPolicy):
            policy_state["llm_term"] = self.policy.env_state(self.env)
        state = {
            "t": self.t,
            "env": self.env.state_dict(),
            "obs": self.obs,
            "mask": self.mask,
            "rng": generator_state(self.rng),
            "policy": policy_state,
            "log": [list(d) for d in self.log],
            "visited": self.visited,
            "chats": self.chats,
        }
        if self.llm is not None:
            state["usage"] = usage_dict(self.llm)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.t = int(state["t"])
        self.env.load_state_dict(state["env"])
        self.obs, self.mask = np.asarray(state["obs"]).copy(), np.asarray(state["mask"]).copy()
        self.rng = generator_from_state(state["rng"])
        if isinstance(self.policy, ScriptedPolicy):  # absent when an experiment's branch switched minds
            saved = state["policy"].get("streak")
            self.policy.streak = np.zeros(0, dtype=np.int64) if saved is None else np.asarray(saved).copy()
        if isinstance(self.policy, NeuroSymbolicPolicy):
            self.policy.load_env_state(self.env, dict(state["policy"].get("llm_term", {})))
        if self.llm is not None and "usage" in state:
            restore_usage(self.llm, state["usage"])
        self.log = [deque(d, maxlen=LOG_LIMIT) for d in state["log"]]
        self.visited = [dict(v) for v in state["visited"]]
        self.chats = [dict(v) for v in state["chats"]]

    # -- console accessors --
    def lessons(self) -> dict[str, list[str]]:
        """The lessons in the neuro-symbolic policy's prompts (empty for a policy without an LLM)."""
        if not isinstance(self.policy, NeuroSymbolicPolicy):
            return {}
        return {g: list(v) for g, v in self.policy.lessons.items()}

    def schedule(self, name: str) -> str:
        """The persona's daily routine (a numeric policy follows the town's itinerary)."""
        i = persona_index(self.env, name)
        env = self.env
        places = [env.places[int(p)] for p in env.itinerary[i, : env.itinerary_len[i]]]
        d = env.dynamics
        return (
            f"{env.personas[i].name} ({self.kind} policy; routine from the town's itinerary):\n"
            f"  {d.night_end:02d}:00-{d.night_start:02d}:00  " + " -> ".join(places) + "\n"
            f"  {d.night_start:02d}:00-{d.night_end:02d}:00  home ({env.places[int(env.home[i])]})"
        )

    def hourly_schedule(self, name: str) -> str:
        """Where the persona actually was, hour by hour, in the last day of the run."""
        i = persona_index(self.env, name)
        by_hour: dict[str, dict[str, int]] = {}
        for e in self.log[i]:
            if e["kind"] == "event":
                by_hour.setdefault(e["time"][11:13] + ":00", {}).setdefault(e["text"], 0)
                by_hour[e["time"][11:13] + ":00"][e["text"]] += 1
        if not by_hour:
            return f"{self.env.personas[i].name}: nothing yet (run some steps)"
        lines = [f"{self.env.personas[i].name}, hour by hour (most frequent activity):"]
        for hour in sorted(by_hour):
            lines.append(f"  {hour}  {max(by_hour[hour].items(), key=lambda kv: kv[1])[0]}")
        return "\n".join(lines)

    def current_tile(self, name: str) -> str:
        """The persona's tile and its address."""
        i = persona_index(self.env, name)
        x, y = self.env.position(i)
        return f"({x}, {y}) {self.env.address_of(i)}"

    def chatting_with_buffer(self, name: str) -> str:
        """Who the persona has talked to, and how many times."""
        i = persona_index(self.env, name)
        if not self.chats[i]:
            return f"{self.env.personas[i].name} has not chatted with anyone yet"
        return "\n".join(f"  {who}: {n} step(s)" for who, n in sorted(self.chats[i].items()))

    def associative_memory(self, name: str, kind: str) -> str:
        """The persona's log entries of ``kind`` (``event``, ``thought``, ``chat``), newest first."""
        if kind not in ("event", "thought", "chat"):
            raise KeyError(f"unknown memory kind {kind!r}; use event, thought or chat")
        i = persona_index(self.env, name)
        if kind == "thought":
            return f"{self.env.personas[i].name}: no thoughts (a {self.kind} policy does not reflect; use the generative mind)"
        entries = [e for e in self.log[i] if e["kind"] == kind][-20:]
        if not entries:
            return f"{self.env.personas[i].name}: no {kind} entries yet"
        return "\n".join(f"  [{e['time']}] {e['text']}" for e in reversed(entries))

    def spatial_memory(self, name: str) -> str:
        """Places the persona has been to (steps spent there)."""
        i = persona_index(self.env, name)
        town = self.env.town_map.name  # every place reads world:sector:arena, as in 'print tile details'
        return "\n".join(f"  {town}:{place} ({n} steps)" for place, n in sorted(self.visited[i].items()))

    def analysis_chat(self, name: str, message: str) -> str:
        """A numeric policy cannot talk: say so (the generative mind answers)."""
        i = persona_index(self.env, name)
        return (
            f"{self.env.personas[i].name} is driven by a {self.kind} policy, which has no language model; "
            "run the simulation with the generative mind to talk with a persona"
        )

    def whisper(self, name: str, text: str) -> str:
        """A numeric policy has no thoughts to whisper to: a clear error naming the fix."""
        i = persona_index(self.env, name)
        raise ValueError(
            f"whisper: {self.env.personas[i].name} is driven by a {self.kind} policy, which has no memory or plan "
            "to change. Fix: run the simulation with --mind generative"
        )

    def reseed(self, seed: int) -> None:
        """New streams from ``seed``: the policy's sampling and the town's generator."""
        policy, town = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.default_rng(policy)
        self.env.np_random = np.random.default_rng(town)

    def plant(self, name: str, text: str) -> str:
        """A numeric policy has no memory: a clear error naming the fix."""
        i = persona_index(self.env, name)
        raise ValueError(
            f"memory: {self.env.personas[i].name} is driven by a {self.kind} policy, which has no memory. "
            "Fix: use a base run with --mind generative"
        )

    def event(self, place: str, text: str) -> str:
        """A numeric policy perceives no events: a clear error naming the fix."""
        raise ValueError(
            f"event: the personas are driven by a {self.kind} policy, which perceives no events. "
            "Fix: use a base run with --mind generative"
        )

    def load_history(self, path: str | Path) -> str:
        """Seed the personas' logs from a CSV with columns ``name, whisper``."""
        n = 0
        for name, whisper in read_history_csv(path):
            i = persona_index(self.env, name)
            self._remember(i, "event", self.env.now.isoformat(timespec="minutes"), f"(whisper) {whisper}")
            n += 1
        return f"loaded {n} memories from {path}"


def read_history_csv(path: str | Path) -> list[tuple[str, str]]:
    """Rows ``(name, whisper)`` of a history CSV (header ``name,whisper``), validated.

    Raises:
        ValueError: naming the file, the row and the fix.
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ValueError(f"{path}: file: cannot read it ({e.strerror}). Fix: give an existing CSV file") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["name", "whisper"]:
        raise ValueError(f"{path}: header: must start with 'name,whisper'. Fix: add that header line")
    out = []
    for k, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}: row {k}: needs a name and a whisper. Fix: write 'Name,what they remember'")
        out.append((row[0].strip(), row[1].strip()))
    return out
