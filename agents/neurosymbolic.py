"""The neuro-symbolic policy: ``π(a|s) = softmax(f_θ(obs) + λ·ℓ_LLM(a|s, lessons) + mask)``.

``f_θ`` is the per-group NumPy MLP of :class:`agents.softmax.SoftmaxPolicy` (what GRPO trains).
``ℓ_LLM`` is the persona's language model's log-preference over the four actions, asked with the
persona's system prompt (identity, group task and the **lessons** the trainer injected) and its
text observation (quoted: it may hold other personas' words). It comes from the backend's choice
log-probabilities where it gives them (``local``, ``openai`` with logprobs), else from a smoothed
one-hot of its structured choice (``(1 - smoothing)`` on the choice). A persona's ``ℓ_LLM`` is
refreshed every ``decide_every`` steps, or earlier on an event (someone talked to it; its target
place changed, i.e. a plan block ended; a new episode); all refreshes of a step go to the LLM as
one concurrent batch (``complete_many``).

**Exact log-probabilities for GRPO.** The LLM term is part of the observation: before acting, the
rollout calls :meth:`NeuroSymbolicPolicy.augment_obs`, which appends the 4 columns ``λ·ℓ_LLM`` to
each observation, and records the augmented observations. :meth:`forward` on them is then a pure
function of ``θ`` (the recorded LLM term is a constant), so the log-probabilities, the ratio and
the KL of GRPO are exact, and :meth:`backward` is the MLP's (the gradient of a log-softmax of
``logits + c`` w.r.t. ``logits`` is that of the shifted logits). With ``λ = 0`` the policy is the
softmax policy exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import FloatArray, masked_log_softmax
from agents.cognition import execute
from agents.cognition.prompts import PersonaProfile, system_prompt
from agents.cognition.retrieve import retrieve_lines
from agents.llm.base import LLMBackend, LLMRequest, LLMResponse
from agents.memory import MemoryStream
from agents.scripted import ScriptedPolicy
from agents.softmax import N_ACTIONS, SoftmaxCache, SoftmaxPolicy
from ga_env import ACTION_NAMES, OBS, TownEnv

__all__ = ["LLM_COLUMNS", "NeuroSymbolicPolicy", "llm_log_preferences"]

LLM_COLUMNS = N_ACTIONS
"""Columns appended to the observation by :meth:`NeuroSymbolicPolicy.augment_obs` (``λ·ℓ_LLM``)."""


def llm_log_preferences(response: LLMResponse, choices: Sequence[str], smoothing: float) -> npt.NDArray[np.float64]:
    """``(4,)`` log-preferences over ``ACTION_NAMES`` from one decision.

    The backend's choice log-probabilities where present (renormalised over ``choices``), else
    the log of a smoothed one-hot of the chosen word. Actions outside ``choices`` (masked when the
    question was asked) get the lowest of the others' values, so that an action that becomes
    possible before the next refresh is not favoured.
    """
    out = np.zeros(N_ACTIONS)
    idx = [ACTION_NAMES.index(c) for c in choices]
    lp = response.choice_logprobs
    if lp and all(c in lp and np.isfinite(lp[c]) for c in choices):
        vals = np.array([lp[c] for c in choices], dtype=np.float64)
        vals -= np.logaddexp.reduce(vals)
    else:
        chosen = response.choice if response.choice is not None and response.choice in choices else choices[0]
        vals = np.array(list(execute.smoothed_onehot(choices, chosen, smoothing).values()))
    out[:] = vals.min()
    out[idx] = vals
    return out


@dataclass
class _EnvState:
    """Per-env bookkeeping of the LLM term (one per env the policy is used with)."""

    ell: FloatArray  # (N, 4) current λ·ℓ_LLM of each agent
    since: npt.NDArray[np.int64]  # (N,) steps since the agent's last refresh
    target: npt.NDArray[np.int64]  # (N,) target place at the last refresh
    rule: ScriptedPolicy  # the rule-based fallback's routine (keeps its own chat streaks)
    env: TownEnv  # held so that its id() cannot be reused by another env while this entry lives
    profiles: list[PersonaProfile] = field(default_factory=list)
    memories: list[MemoryStream] = field(default_factory=list)  # what each persona perceived at its decisions


MEMORY_CAPACITY = 64
"""Memories a persona of the neuro-symbolic policy keeps (its perceptions at its LLM decisions)."""
MEMORIES_IN_PROMPT = 3
"""Retrieved memories in its decision prompt."""


def _memories(n: int) -> list[MemoryStream]:
    from agents.embeddings import HashingEmbedder

    embedder = HashingEmbedder(256)  # no cache: every perception text is new (timestamped)
    return [MemoryStream(embedder, capacity=MEMORY_CAPACITY) for _ in range(n)]


def _profiles(env: TownEnv) -> list[PersonaProfile]:
    from agents.generative import persona_profiles  # lazily: the generative mind is heavy to import

    return persona_profiles(env)


def mask_from_obs(obs: npt.NDArray[np.floating]) -> npt.NDArray[np.int8]:
    """``(N, 4)`` action mask read from ``(N, D)`` observations (the env's rule, ``ga_env.town``).

    Move is always possible; Chat when a partner is available; Task at home or a task site;
    Research at a research site.
    """
    m = np.ones((len(obs), N_ACTIONS), dtype=np.int8)
    m[:, 1] = obs[:, OBS["partner_available"]] > 0.5
    m[:, 2] = (obs[:, OBS["at_home"]] > 0.5) | (obs[:, OBS["at_task_site"]] > 0.5)
    m[:, 3] = obs[:, OBS["at_research_site"]] > 0.5
    return m


class NeuroSymbolicPolicy(SoftmaxPolicy):
    """``softmax(f_θ(obs) + λ·ℓ_LLM + mask)``; see the module docstring.

    Args:
        obs_dim: the env's observation size ``D`` (the policy acts on ``D + 4`` columns).
        n_groups: groups in the env.
        llm: the personas' LLM backend; None = built on first use by ``make_llm`` (so that a
            reference copy that never acts never loads a model).
        make_llm: builds the backend lazily (e.g. ``lambda: make_backend(cfg.llm)``).
        lam: λ, the weight of the LLM term.
        decide_every: steps between a persona's LLM decisions.
        smoothing: mass spread over the other actions for a choice without log-probabilities.
        lang: prompt language.
        hidden, init_scale, rng, greedy: as :class:`SoftmaxPolicy`.
    """

    def __init__(
        self,
        obs_dim: int,
        n_groups: int,
        *,
        llm: LLMBackend | None = None,
        make_llm: Any = None,
        lam: float = 1.0,
        decide_every: int = 4,
        smoothing: float = 0.1,
        lang: str = "en",
        hidden: int = 32,
        init_scale: float = 0.01,
        rng: np.random.Generator,
        greedy: bool = False,
    ) -> None:
        super().__init__(obs_dim, n_groups, hidden=hidden, init_scale=init_scale, rng=rng, greedy=greedy)
        if lam < 0:
            raise ValueError(f"agent.lam: {lam} is negative. Fix: use λ >= 0")
        if decide_every < 1:
            raise ValueError(f"agent.decide_every: {decide_every} must be >= 1. Fix: e.g. 4")
        self.lam, self.decide_every, self.smoothing, self.lang = lam, decide_every, smoothing, lang
        self._llm, self._make_llm = llm, make_llm
        self._envs: dict[int, _EnvState] = {}
        self._systems: dict[tuple[str, int], str] = {}
        self.llm_calls = 0

    @property
    def llm(self) -> LLMBackend:
        if self._llm is None:
            if self._make_llm is None:
                raise ValueError("NeuroSymbolicPolicy: llm: no backend. Fix: pass llm= or make_llm=")
            self._llm = self._make_llm()
        assert self._llm is not None
        return self._llm

    def set_lessons(self, group: str, lessons: Sequence[str]) -> None:
        super().set_lessons(group, lessons)
        self._systems.clear()

    # -- the LLM term -------------------------------------------------------------------------------
    def _system(self, profile: PersonaProfile) -> str:
        key = (profile.persona.name, id(self.lessons.get(profile.group.name)))
        text = self._systems.get(key)
        if text is None:
            text = system_prompt(profile, self.lessons.get(profile.group.name, []), self.lang)
            self._systems[key] = text
        return text

    def augment_obs(self, envs: Sequence[TownEnv], obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(G, N, D)`` observations of ``envs`` → ``(G, N, D + 4)`` with ``λ·ℓ_LLM`` appended.

        Refreshes the LLM term of the agents that are due (every ``decide_every`` steps, or on an
        event), all of them in one ``complete_many`` batch; the others keep their last value.
        """
        g_size, n, d = obs.shape
        if d != self.obs_dim:
            raise ValueError(f"NeuroSymbolicPolicy: obs has {d} columns, expected the env's {self.obs_dim}")
        jobs: list[tuple[_EnvState, int, LLMRequest, tuple[str, ...]]] = []
        for g, env in enumerate(envs):
            st = self._envs.get(id(env))
            fresh = obs[g, 0, OBS["episode_progress"]] == 0.0
            if st is None or len(st.ell) != n:
                st = _EnvState(
                    ell=np.zeros((n, N_ACTIONS)),
                    since=np.zeros(n, dtype=np.int64),
                    target=np.full(n, -1, dtype=np.int64),
                    rule=ScriptedPolicy(env.groups),
                    env=env,
                    profiles=_profiles(env),
                    memories=_memories(n),
                )
                self._envs[id(env)] = st
                fresh = True
            masks = mask_from_obs(obs[g])  # (N, 4)
            rule = st.rule.act(obs[g], masks, np.random.default_rng(0))  # (N,) deterministic routine
            targets = env.current_targets
            talked_to = np.zeros(n, dtype=bool)
            partners = np.asarray(env.last_partner)
            talked_to[partners[partners >= 0]] = True
            due = (st.since >= self.decide_every - 1) | (targets != st.target) | talked_to
            if fresh:
                due[:] = True
                st.since[:] = self.decide_every
                if any(len(m) for m in st.memories):
                    st.memories = _memories(n)  # a new episode: the clock went back, so do the memories
            st.since = np.where(due, 0, st.since + 1)
            st.target = targets.copy()
            if self.lam == 0.0:
                continue  # the LLM term is zero: no calls
            now = env.now
            for i in map(int, np.flatnonzero(due)):
                prof = st.profiles[i]
                place = env.places[int(env.current_places[i])]
                perceived = env.perceive(i)
                memory = st.memories[i]
                _, remembered = retrieve_lines(memory, [prof.persona.task, place], now, task=prof.persona.task,
                                               k=MEMORIES_IN_PROMPT)  # fmt: skip
                memory.add("event", f"{now:%a %H:%M} at {place}: {perceived[:240]}", when=now, poignancy=3.0)
                memory.forget(now)
                req = execute.decide_request(
                    system=self._system(prof),
                    perceived=perceived,
                    place=place,
                    activity=prof.persona.task,
                    target=env.places[int(targets[i])],
                    memories=remembered,
                    mask=masks[i],
                    lang=self.lang,
                    fallback=functools.partial(str, ACTION_NAMES[int(rule[i])]),
                )
                jobs.append((st, i, req, req.choices))
        if jobs:
            answers = self.llm.complete_many([j[2] for j in jobs])
            self.llm_calls += len(jobs)
            for (st, i, _, choices), ans in zip(jobs, answers, strict=True):
                st.ell[i] = self.lam * llm_log_preferences(ans, choices, self.smoothing)
        out = np.empty((g_size, n, d + LLM_COLUMNS), dtype=np.float32)
        out[:, :, :d] = obs
        for g, env in enumerate(envs):
            out[g, :, d:] = self._envs[id(env)].ell
        return out

    # -- save / restore (a simulation's exact resume) ---------------------------------------------------
    def env_state(self, env: TownEnv) -> dict[str, Any]:
        """The LLM term's bookkeeping for ``env`` as plain data (empty before the first step)."""
        st = self._envs.get(id(env))
        if st is None:
            return {}
        return {
            "ell": st.ell.copy(),
            "since": st.since.copy(),
            "target": st.target.copy(),
            "streak": st.rule.streak.copy(),
            "llm_calls": self.llm_calls,
            "memories": [m.state_dict() for m in st.memories],
        }

    def load_env_state(self, env: TownEnv, state: dict[str, Any]) -> None:
        """Inverse of :meth:`env_state`: ``env`` continues exactly (no fresh refresh of every persona)."""
        if not state:
            self._envs.pop(id(env), None)
            return
        rule = ScriptedPolicy(env.groups)
        rule.streak = np.asarray(state["streak"]).copy()
        memories = _memories(len(state["ell"]))
        for m, saved in zip(memories, state.get("memories") or [], strict=False):  # older runs: no memories
            m.load_state_dict(saved)
        self._envs[id(env)] = _EnvState(
            ell=np.asarray(state["ell"], dtype=np.float64).copy(),
            since=np.asarray(state["since"], dtype=np.int64).copy(),
            target=np.asarray(state["target"], dtype=np.int64).copy(),
            rule=rule,
            env=env,
            profiles=_profiles(env),
            memories=memories,
        )
        self.llm_calls = int(state["llm_calls"])

    # -- exact log-probabilities on augmented observations ----------------------------------------------
    def forward(self, obs: npt.NDArray[np.floating], mask: npt.NDArray[np.integer]) -> tuple[FloatArray, SoftmaxCache]:
        """``(B, 4)`` masked log-probabilities of ``softmax(f_θ(obs[:, :D]) + obs[:, D:])`` and the cache."""
        x = np.asarray(obs)
        if x.shape[1] != self.obs_dim + LLM_COLUMNS:
            raise ValueError(
                f"NeuroSymbolicPolicy: obs has {x.shape[1]} columns, expected {self.obs_dim + LLM_COLUMNS}. "
                "Fix: call augment_obs(envs, obs) first (the rollout and evaluate do)"
            )
        base_logp, cache = super().forward(x[:, : self.obs_dim], mask)
        # log_softmax(logits - logZ + ℓ) == log_softmax(logits + ℓ): the base's normaliser cancels.
        logp = masked_log_softmax(base_logp + x[:, self.obs_dim :].astype(np.float64), mask)
        cache.logp = logp  # dlogits_from_dlogp uses the combined distribution
        return logp, cache
