"""The neuro-symbolic policy: exact log-probs and gradients, λ = 0 is the softmax policy, the LLM term."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import ga_env
from agents.llm.base import LLMRequest, LLMResponse
from agents.llm.factory import make_backend
from agents.neurosymbolic import NeuroSymbolicPolicy, llm_log_preferences
from agents.softmax import SoftmaxPolicy
from conf.schema import LLMConfig
from ga_env.checkpoint import CheckpointError


class Recorder:
    """The real scripted backend, recording every batch of requests."""

    def __init__(self) -> None:
        self.inner = make_backend(LLMConfig(backend="scripted"))
        self.batches: list[list[LLMRequest]] = []

    def complete_many(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        self.batches.append(list(requests))
        return self.inner.complete_many(requests)


def env() -> ga_env.TownEnv:
    return ga_env.parallel_env(groups=["artist_collective", "residents"], max_agents=6, obs_mode="box")


def policy(e: ga_env.TownEnv, llm: object, lam: float = 1.0, hidden: int = 8, **kw: object) -> NeuroSymbolicPolicy:
    return NeuroSymbolicPolicy(
        e.obs_dim, len(e.groups), llm=llm, lam=lam, hidden=hidden, init_scale=0.5, rng=np.random.default_rng(1), **kw
    )  # type: ignore[arg-type]


def rollout_obs(pol: NeuroSymbolicPolicy, envs: list[ga_env.TownEnv], steps: int) -> tuple[np.ndarray, np.ndarray]:
    states = [e.reset_arrays(5) for e in envs]
    rng = np.random.default_rng(0)
    obs_l, mask_l = [], []
    for _ in range(steps):
        obs = np.stack([s[0] for s in states])
        mask = np.stack([s[1] for s in states])
        aug = pol.augment_obs(envs, obs)
        obs_l.append(aug.reshape(-1, aug.shape[-1]))
        mask_l.append(mask.reshape(-1, 4))
        acts = pol.act(aug.reshape(-1, aug.shape[-1]), mask.reshape(-1, 4), rng).reshape(len(envs), -1)
        states = [(o, m) for o, m, _, _ in (e.step_arrays(a) for e, a in zip(envs, acts, strict=True))]
    return np.concatenate(obs_l), np.concatenate(mask_l)


def test_lambda_zero_is_the_softmax_policy_and_calls_nothing() -> None:
    e = env()
    rec = Recorder()
    ns = policy(e, rec, lam=0.0)
    sm = SoftmaxPolicy(e.obs_dim, len(e.groups), hidden=8, init_scale=0.5, rng=np.random.default_rng(1))
    for k in sm.params:
        np.testing.assert_array_equal(ns.params[k], sm.params[k])
    obs, mask = rollout_obs(ns, [e], 20)
    assert not rec.batches
    np.testing.assert_allclose(ns.forward(obs, mask)[0], sm.forward(obs[:, : e.obs_dim], mask)[0])


def test_llm_term_shifts_the_logits_exactly() -> None:
    e = env()
    ns = policy(e, Recorder(), lam=2.0)
    obs, mask = rollout_obs(ns, [e], 10)
    sm = SoftmaxPolicy(e.obs_dim, len(e.groups), hidden=8, init_scale=0.5, rng=np.random.default_rng(1))
    base, _ = sm.forward(obs[:, : e.obs_dim], mask)
    valid = mask.astype(bool)
    z = np.where(valid, base + obs[:, e.obs_dim :], -np.inf)
    expected = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    np.testing.assert_allclose(ns.forward(obs, mask)[0], expected, atol=1e-12)
    assert np.abs(obs[:, e.obs_dim :]).max() > 0.0


def test_gradients_match_finite_differences() -> None:
    e = env()
    ns = policy(e, Recorder(), lam=1.5)
    obs, mask = rollout_obs(ns, [e], 6)
    rng = np.random.default_rng(2)
    probs = np.exp(ns.forward(obs, mask)[0])
    actions = np.array([rng.choice(4, p=p) for p in probs])
    weights = rng.normal(size=len(actions))

    def loss() -> float:
        logp = ns.forward(obs, mask)[0][np.arange(len(actions)), actions]
        return float((weights * logp).sum())

    _, cache = ns.forward(obs, mask)
    grads = ns.backward(cache, ns.dlogits_from_dlogp(cache, actions, weights))
    for k, p in ns.params.items():
        flat = p.reshape(-1)
        for idx in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            old = flat[idx]
            flat[idx] = old + 1e-6
            up = loss()
            flat[idx] = old - 1e-6
            down = loss()
            flat[idx] = old
            assert grads[k].reshape(-1)[idx] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-6), k


def test_log_preferences_from_logprobs_or_smoothed_choice() -> None:
    lp = llm_log_preferences(
        LLMResponse(
            text="chat", choice="chat", choice_logprobs={"move": np.log(0.2), "chat": np.log(0.6), "task": np.log(0.2)}
        ),
        ("move", "chat", "task"),
        0.1,
    )
    np.testing.assert_allclose(np.exp(lp[:3]), [0.2, 0.6, 0.2])
    assert lp[3] == pytest.approx(np.log(0.2))  # masked when asked: the lowest of the others
    sm = llm_log_preferences(LLMResponse(text="task", choice="task"), ("move", "task"), 0.1)
    np.testing.assert_allclose(sm, np.log([0.1, 0.1, 0.9, 0.1]))


def test_llm_term_is_the_rule_choice_with_scripted_and_refreshes_on_schedule() -> None:
    e = env()
    rec = Recorder()
    ns = policy(e, rec, lam=1.0, decide_every=4)
    obs, mask = rollout_obs(ns, [e], 12)
    n = len(e.possible_agents)
    assert len(rec.batches[0]) == n  # the first step asks every persona, in one batch
    assert all(1 <= len(b) <= n for b in rec.batches)
    assert sum(len(b) for b in rec.batches) < 12 * n  # not every agent every step
    ell = obs[:, e.obs_dim :]
    best = ell.argmax(1)
    assert np.all(mask[np.arange(len(best)), best] == 1)  # the LLM's favourite is a possible action
    single = (ell == 0.0).all(1)  # asked when only one action was possible: no preference
    np.testing.assert_allclose(np.exp(ell[~single]).max(1), 0.9, rtol=1e-6)  # smoothed one-hot (smoothing 0.1)
    assert (~single).sum() > len(ell) // 2


def test_lessons_reach_the_prompts() -> None:
    e = env()
    rec = Recorder()
    ns = policy(e, rec)
    ns.set_lessons("residents", ["Residents who chatted at the cafe earned most."])
    rollout_obs(ns, [e], 1)
    for r in rec.batches[0]:
        resident = any(f"\nYou are {p.name}," in r.system for p in e.personas if p.group == "residents")
        assert ("Residents who chatted at the cafe earned most." in r.system) == resident


def test_several_envs_in_one_batch() -> None:
    envs = [env(), env()]
    rec = Recorder()
    ns = policy(envs[0], rec)
    obs, _ = rollout_obs(ns, envs, 3)
    assert obs.shape == (3 * 2 * 6, envs[0].obs_dim + 4)
    assert len(rec.batches[0]) == 12  # both envs' personas in one concurrent batch


def test_trains_end_to_end(tmp_path: Path) -> None:
    from conf.schema import AgentConfig, Config, EnvConfig, GRPOConfig
    from trainers.grpo import train

    cfg = Config(
        experiment="ns",
        env=EnvConfig(groups=["artist_collective", "residents"], max_agents=4, max_cycles=12),
        agent=AgentConfig(kind="neurosymbolic", hidden=8, decide_every=2),
        trainer=GRPOConfig(iterations=2, group_size=2, eval_episodes=1, eval_every=0, epochs=1, minibatches=1),
    )
    report = train(cfg, tmp_path)
    assert set(report["returns"]) >= {"trained", "random", "scripted"}
    ckpt = tmp_path / "checkpoint.npz"
    # agent.checkpoint starts a policy (e.g. a simulation's) from the trained parameters.
    from agents.factory import make_policy

    cfg.agent = AgentConfig(kind="neurosymbolic", hidden=8, checkpoint=str(ckpt))
    loaded = make_policy(cfg.agent, cfg.llm, cfg.env.make(), np.random.default_rng(7))
    saved = np.load(ckpt)
    for k, v in loaded.params.items():
        np.testing.assert_array_equal(v, saved[f"param/{k}"])
    cfg.agent = AgentConfig(kind="neurosymbolic", hidden=16, checkpoint=str(ckpt))
    with pytest.raises(CheckpointError, match=r"agent\.hidden"):
        make_policy(cfg.agent, cfg.llm, cfg.env.make(), np.random.default_rng(7))


def test_decisions_see_retrieved_memories_and_they_survive_a_resume() -> None:
    e = env()
    rec = Recorder()
    ns = policy(e, rec, decide_every=2)
    rollout_obs(ns, [e], 1)
    assert all("What you remember (quoted):\n(none)" in r.user for r in rec.batches[0])  # nothing remembered yet
    assert len(ns.env_state(e)["memories"]) == len(e.possible_agents)
    rec.batches.clear()
    obs, mask = e.reset_arrays(5)
    for _ in range(4):
        aug = ns.augment_obs([e], obs[None])[0]
        obs, mask, _, _ = e.step_arrays(ns.act(aug, mask, np.random.default_rng(0)))

    def remembered(r: LLMRequest) -> str:
        return r.user.split("What you remember (quoted):")[1].split("Possible actions")[0].strip()

    # a new episode starts with no memories (the clock went back); later decisions quote earlier perceptions
    assert all(remembered(r) == "(none)" for r in rec.batches[0])
    later = [r for b in rec.batches[1:] for r in b]
    assert later and all(remembered(r) != "(none)" for r in later)
    saved = ns.env_state(e)
    other = policy(e, Recorder(), decide_every=2)
    other.load_env_state(e, saved)
    assert repr(other.env_state(e)["memories"]) == repr(saved["memories"])
