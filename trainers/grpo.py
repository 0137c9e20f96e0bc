"""GRPO for the town in pure NumPy: ``python -m trainers.grpo +experiment=artists``.

One iteration (cleanrl style, top to bottom):

1. **Rollout**: G episodes from the same env seed (the GRPO group), the policy acting on all
   agents of all G episodes at once; record observations, masks, actions, log-probs, rewards.
   :mod:`trainers.rollout` steps them as one batched NumPy program (or G envs), in this process
   or on Ray workers (``trainer.rollout.backend=ray``); rollout ``g`` of iteration ``it`` samples
   from its own generator ``(seed, it, g)``, so every backend trains the same parameters.
2. **Advantages**: each agent's discounted reward-to-go ``R[g, t, n]`` (per-step credit: an
   episode is 144 steps, and a single episode return per agent gives too little signal), made
   group-relative by :func:`group_advantages` (baseline = the same agent at the same step in the
   other rollouts of the group, and/or its teammates), scaled by the group std (GRPO) or not
   (Dr. GRPO).
3. **Loss / update**: clipped surrogate + beta * k3 KL to the frozen initial policy, several
   epochs of minibatches, analytic gradients, global-norm clipping, Adam.
4. **Lessons**: each group's trajectories, ranked by group-relative advantage, become plain-language
   lessons for its policies (:mod:`trainers.lessons`), kept in the checkpoint (``lessons``,
   ``lessons_iteration``), TensorBoard (``lessons/<group>``) and ``lessons.md``.
5. **Log**: TensorBoard, ``metrics.jsonl``, atomic checkpoints; a final evaluation of the
   trained policy against every baseline on the same fresh seeds (:func:`final_evaluation`,
   ``eval.json``).
"""

from __future__ import annotations

import os

# Small matrices: BLAS threads only oversubscribe the cores (measured 3-4x slower on 2 cores).
# Set before NumPy is imported; an explicit OMP_NUM_THREADS in the environment still wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from tqdm import tqdm

from agents import Policy, RandomPolicy, ScriptedPolicy
from agents.factory import load_params, make_policy, shared_llm_usage
from agents.heuristic import ChatPolicy, HeuristicPolicy, load_tuned_params, load_upper_params
from agents.llm.usage import combine_reports, report_scalars, report_summary
from conf.compose import hydra_app
from conf.schema import Config
from ga_env import ACTION_NAMES, TownEnv
from ga_env.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from ga_env.world import IDLE, N_ACTIONS
from trainers.evaluate import Evaluation, run_episodes, summarise
from trainers.grpo_math import Adam, clip_grad_norm, discounted_returns, group_advantages, grpo_loss
from trainers.heuristic_search import upper_reference
from trainers.lessons import lessons_markdown, make_lessons, place_kinds, step_blocks
from trainers.rollout import InProcessRollouts, RayRollouts
from trainers.tblog import summary_writer

EVAL_SEED_BASE = 1_000_000  # evaluation seeds never overlap training seeds (drawn below this)


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop rows after ``iteration`` (logged by a run killed before its next checkpoint)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    keep = []
    for line in rows:
        try:
            if json.loads(line).get("iteration", 0) <= iteration:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
    atomic_write_bytes(path, ("".join(line + "\n" for line in keep)).encode())


def _llm_usage(
    cfg: Config, worker_reports: list[dict[str, Any]], before: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The run's LLM usage report: this process's backend plus the Ray workers' backends, minus
    this process's counts ``before`` the run began (a process may train several times); None
    without an LLM in the policy."""
    if cfg.agent.kind != "neurosymbolic":
        return None
    here = shared_llm_usage(cfg.agent, cfg.llm)
    reports = ([here] if here is not None else []) + worker_reports
    return combine_reports(reports, [before] if before else [])


def train(cfg: Config, out_dir: Path, config_yaml: str = "") -> dict[str, Any]:
    """Train, evaluate and write every artefact into ``out_dir``; returns the final evaluation.

    ``config_yaml`` is what ``config.yaml`` and the checkpoint record (the Hydra app passes its
    resolved config); empty: the YAML of ``cfg`` itself, so that a checkpoint always says what it
    is (e.g. ``agent.kind``, which ``ga-simulate --mind trained`` reads).
    """
    if not config_yaml:
        from omegaconf import OmegaConf

        config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    tc = cfg.trainer
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(tc.seed)
    env = cfg.env.make()
    group_names = [g.name for g in env.groups]
    policy = make_policy(cfg.agent, cfg.llm, env, rng)
    ref = make_policy(cfg.agent, cfg.llm, env, np.random.default_rng(0))
    ref.params = policy.copy_params()  # frozen reference = the initial policy
    adam = Adam(policy.params, lr=tc.lr)
    start = 0
    lessons_by_group: dict[str, list[str]] = {}
    lessons_iteration = 0  # the iteration whose rollouts made the current lessons
    if tc.resume:
        ckpt, ckpt_path = load_checkpoint(tc.resume)
        print(f"resuming from {ckpt_path} (iteration {int(ckpt['iteration'])})")
        load_params(policy, ckpt_path, ckpt)
        load_params(ref, ckpt_path, ckpt, prefix="ref/")
        for k in policy.params:
            adam.m[k], adam.v[k] = ckpt[f"adam_m/{k}"].copy(), ckpt[f"adam_v/{k}"].copy()
        adam.t, start = int(ckpt["adam_t"]), int(ckpt["iteration"])
        rng.bit_generator.state = json.loads(str(ckpt["rng_state"]))
        if "lessons" in ckpt:
            lessons_by_group = json.loads(str(ckpt["lessons"]))
            lessons_iteration = int(ckpt["lessons_iteration"]) if "lessons_iteration" in ckpt else start
            for name, lessons in lessons_by_group.items():
                policy.set_lessons(name, lessons)
        _truncate_metrics(out_dir / "metrics.jsonl", start)

    # Resumed: TensorBoard drops the killed run's points after the checkpoint (steps > start).
    writer = summary_writer(out_dir / "tb", purge_step=start + 1 if tc.resume else None)
    flat_cfg = {
        f"{sec}.{k}": v
        for sec in ("env", "agent", "llm", "trainer")
        for k, v in dataclasses.asdict(getattr(cfg, sec)).items()
    }
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in flat_cfg.items()), start
    )
    # A fresh run starts the file over (appending would mix in the rows of an earlier run in the same folder).
    metrics_file = (out_dir / "metrics.jsonl").open("a" if tc.resume else "w")
    teams = env.group_of  # (N,)
    g_size = tc.group_size
    rollouts = (RayRollouts if tc.rollout.backend == "ray" else InProcessRollouts)(cfg, policy)
    usage_before = shared_llm_usage(cfg.agent, cfg.llm)
    kinds = place_kinds(env.world.kind_table)  # (N, P) home / task / research / social site / street
    start_minute = env.start_time.hour * 60 + env.start_time.minute

    def checkpoint(iteration: int) -> Path:
        arrays: dict[str, Any] = {"iteration": np.array(iteration), "adam_t": np.array(adam.t)}
        arrays["rng_state"] = np.array(json.dumps(rng.bit_generator.state))
        arrays["lessons"] = np.array(json.dumps(lessons_by_group))
        arrays["lessons_iteration"] = np.array(lessons_iteration)
        for k in policy.params:
            arrays[f"param/{k}"], arrays[f"ref/{k}"] = policy.params[k], ref.params[k]
            arrays[f"adam_m/{k}"], arrays[f"adam_v/{k}"] = adam.m[k], adam.v[k]
        path = out_dir / "checkpoint.npz"
        save_checkpoint(path, arrays, config_yaml)
        atomic_write_bytes(out_dir / "config.yaml", config_yaml.encode())
        return path

    def eval_trained(seeds: list[int]) -> Evaluation:
        greedy = make_policy(cfg.agent, cfg.llm, env, np.random.default_rng(0), greedy=cfg.agent.eval_greedy)
        greedy.params = policy.params
        for name, lessons in lessons_by_group.items():
            greedy.set_lessons(name, lessons)
        return run_episodes(env, greedy, seeds, np.random.default_rng(tc.seed + 1))

    def log_goals(ev: Evaluation, step: int, row: dict[str, Any] | None = None) -> None:
        for group, metrics in ev.mean_goals().items():
            for key, v in metrics.items():
                writer.add_scalar(f"goals/{group}/{key}", v, step)
                if row is not None:
                    row[f"goals/{group}/{key}"] = v

    for it in tqdm(
        range(start, tc.iterations), desc=f"grpo {cfg.experiment}", initial=start, total=tc.iterations, file=sys.stdout
    ):
        t0 = time.perf_counter()
        # -- 1. rollout: G episodes from one seed, all agents of all episodes in one batch ------------
        seed = int(rng.integers(EVAL_SEED_BASE))
        ro = rollouts.run(policy, it, seed, lessons_by_group)
        obs_buf, mask_buf, act_buf, eff_buf = ro.obs, ro.mask, ro.actions, ro.effective  # (G, T, N, ...)
        rew_buf, place_buf = ro.rewards, ro.places
        rollout_time = time.perf_counter() - t0

        # -- 2. group-relative advantages on each agent's reward-to-go ---------------------------------
        returns = discounted_returns(rew_buf, tc.gamma)  # (G, T, N)
        adv, frac_zero_std = group_advantages(
            returns, g_size, tc.scale, group_by=tc.group_by, teams=teams, eps=tc.adv_eps
        )

        # -- 3. clipped surrogate + KL to the reference: epochs of minibatches, Adam ------------------
        flat_obs = obs_buf.reshape(-1, obs_buf.shape[-1])  # (S, D), S = G*T*N
        flat_mask = mask_buf.reshape(-1, N_ACTIONS)
        flat_act, flat_adv = act_buf.ravel(), adv.ravel()
        # Old log-probs recomputed here in one batch rather than taken from the rollouts (ro.logp,
        # equal up to rounding): the update then does not depend on how the rollouts were batched.
        flat_old = policy.forward(flat_obs, flat_mask)[0][np.arange(len(flat_act)), flat_act]
        # Only decisions with a real choice carry gradient (a single valid action has logp = 0).
        choice = (flat_mask.sum(1) > 1).astype(np.float64)  # (S,)
        ref_logp_all, _ = ref.forward(flat_obs, flat_mask)
        flat_ref = ref_logp_all[np.arange(len(flat_act)), flat_act]
        stats: dict[str, list[float]] = {"policy": [], "kl": [], "clipfrac": [], "grad_norm": []}
        for _ in range(tc.epochs):
            perm = rng.permutation(len(flat_act))
            for mb in np.array_split(perm, tc.minibatches):
                logp_all, cache = policy.forward(flat_obs[mb], flat_mask[mb])
                logp = logp_all[np.arange(len(mb)), flat_act[mb]]
                _, dlogp, s = grpo_loss(logp, flat_old[mb], flat_ref[mb], flat_adv[mb], choice[mb], tc.epsilon, tc.beta)
                grads = policy.backward(cache, policy.dlogits_from_dlogp(cache, flat_act[mb], dlogp))
                grads, norm = clip_grad_norm(grads, tc.max_grad_norm)
                adam.step(policy.params, grads)
                for stat, v in (*s.items(), ("grad_norm", norm)):
                    stats[stat].append(v)

        # -- 4. reward-to-prompt lessons per group, from the trajectories ranked by advantage ----------
        blocks = step_blocks(start_minute, env.stride, rew_buf.shape[1], env.world.block_by_minute)  # (T,)
        # The trainer's group-relative advantage (same baseline and scaling) of each agent's
        # undiscounted episode return: (G, N).
        ep_adv, _ = group_advantages(
            rew_buf.sum(1), g_size, tc.scale, group_by=tc.group_by, teams=teams, eps=tc.adv_eps
        )
        before = dict(lessons_by_group)
        for gi, name in enumerate(group_names):
            members = np.flatnonzero(teams == gi)
            lessons = make_lessons(
                names=[env.personas[i].name for i in members],
                group=env.groups[gi],
                places=env.places,
                actions=eff_buf[:, :, members],
                place_idx=place_buf[:, :, members],
                rewards=rew_buf[:, :, members],
                advantages=ep_adv[:, members],
                kinds=kinds[members],
                blocks=blocks,
                top_k=tc.top_k,
            )
            policy.set_lessons(name, lessons)
            lessons_by_group[name] = lessons
            writer.add_text(f"lessons/{name}", "\n\n".join(f"- {x}" for x in lessons), it + 1)
        lessons_iteration = it + 1
        if lessons_by_group != before:
            atomic_write_bytes(out_dir / "lessons.md", lessons_markdown(lessons_by_group, it + 1).encode())

        # -- 5. log -----------------------------------------------------------------------------------------
        ep_returns = rew_buf.sum(1)  # (G, N)
        entropy = policy.entropy(policy.forward(flat_obs, flat_mask)[0])[choice > 0]
        row: dict[str, Any] = {
            "iteration": it + 1,
            "env_seed": seed,
            "charts/episodic_return": float(ep_returns.mean()),
            "charts/rollout_seconds": rollout_time,
            "charts/iteration_seconds": time.perf_counter() - t0,
            "losses/policy": float(np.mean(stats["policy"])),
            "losses/kl": float(np.mean(stats["kl"])),
            "losses/clipfrac": float(np.mean(stats["clipfrac"])),
            "losses/grad_norm": float(np.mean(stats["grad_norm"])),
            "policy/entropy": float(entropy.mean()) if entropy.size else 0.0,
            "grpo/frac_reward_zero_std": frac_zero_std,
            "grpo/advantage_std": float(adv.std()),
        }
        for gi, name in enumerate(group_names):
            row[f"rewards/{name}/mean"] = float(ep_returns[:, teams == gi].mean())
            eff = eff_buf[:, :, teams == gi]
            for a, a_name in enumerate(ACTION_NAMES):
                row[f"actions/{name}/{a_name}"] = float((eff == a).mean())
            row[f"actions/{name}/noop"] = float((eff == IDLE).mean())
        if tc.eval_every and (it + 1) % tc.eval_every == 0 and it + 1 < tc.iterations:
            ev = eval_trained([EVAL_SEED_BASE + 1000 + i for i in range(tc.eval_episodes)])
            for name, v in ev.mean_returns().items():
                row[f"eval/{name}/trained"] = v
            log_goals(ev, it + 1, row)
        usage = _llm_usage(cfg, rollouts.llm_usage_reports(), usage_before)
        if usage is not None:  # LLM calls, tokens, cost, retries, fallbacks and faults by kind
            row.update(report_scalars(usage))
        for key, v in row.items():
            if key not in ("iteration", "env_seed"):
                writer.add_scalar(key, v, it + 1)
        writer.add_histogram("grpo/advantages", adv.ravel()[:: max(1, adv.size // 10_000)], it + 1)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        if tc.checkpoint_every and (it + 1) % tc.checkpoint_every == 0:
            checkpoint(it + 1)

    worker_usage = rollouts.llm_usage_reports()  # the workers' counts, before they go
    rollouts.close()
    checkpoint(tc.iterations)

    # -- final evaluation: trained vs the baselines on the same fresh seeds ------------------------------
    evals, report = final_evaluation(cfg, env, eval_trained)
    seeds, results = report["eval_seeds"], report["returns"]
    for kind, per_group in results.items():
        for name, v in per_group.items():
            writer.add_scalar(f"eval/{name}/{kind}", v, tc.iterations)
    log_goals(evals["trained"], tc.iterations)
    usage = _llm_usage(cfg, worker_usage, usage_before)  # the final evaluation's calls included
    if usage is not None:
        report["llm_usage"] = usage
        for key, v in report_scalars(usage).items():
            writer.add_scalar(key, v, tc.iterations)
        atomic_write_bytes(out_dir / "llm_usage.json", json.dumps(usage, indent=2).encode())
        print(f"LLM usage: {report_summary(usage)}")
    atomic_write_bytes(out_dir / "eval.json", json.dumps(report, indent=2).encode())
    print(f"\nEvaluation ({cfg.experiment}, trainer.seed={tc.seed}, {len(seeds)} fresh seeds): mean return per agent")
    print(f"{'group':<20}" + "".join(f"{k:>10}" for k in results))
    for name in group_names:
        print(f"{name:<20}" + "".join(f"{results[k][name]:>10.2f}" for k in results))
    writer.close()
    metrics_file.close()
    return report


def final_evaluation(
    cfg: Config, env: TownEnv, eval_trained: Callable[[list[int]], Evaluation]
) -> tuple[dict[str, Evaluation], dict[str, Any]]:
    """The trained policy (``eval_trained(seeds) -> Evaluation``) and every baseline on the same
    ``trainer.eval_episodes`` fresh seeds; returns the evaluations and the ``eval.json`` report."""
    tc = cfg.trainer
    seeds = [EVAL_SEED_BASE + 100 * tc.seed + i for i in range(tc.eval_episodes)]
    baselines: dict[str, Policy] = {
        "random": RandomPolicy(),
        "scripted": ScriptedPolicy(env.groups),
        "chat": ChatPolicy(),  # chat whenever a partner is near (the best 3-line rule on Town-v0)
        "heuristic": HeuristicPolicy(env.groups, load_tuned_params(cfg.experiment, env.groups)),
    }
    evals = {"trained": eval_trained(seeds)}
    for k, (kind, baseline) in enumerate(baselines.items()):
        evals[kind] = run_episodes(env, baseline, seeds, np.random.default_rng(tc.seed + 2 + k))
    # Upper reference: each group under the heuristic candidate that a CEM search found best for it.
    upper = load_upper_params(cfg.experiment, env.groups)
    evals["upper"] = upper_reference(env, upper, seeds, np.random.default_rng(tc.seed + 7))
    report = {
        "experiment": cfg.experiment,
        "seed": tc.seed,
        "env_version": cfg.env.version,
        "eval_seeds": seeds,
        "returns": {kind: ev.mean_returns() for kind, ev in evals.items()},
        "goals": {kind: ev.mean_goals() for kind, ev in evals.items()},
        "ci95": summarise(evals),
    }
    return evals, report


def evaluate_checkpoint(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Re-run the final evaluation of a finished run (e.g. after the baselines were re-tuned)."""
    env = cfg.env.make()
    ckpt, ckpt_path = load_checkpoint(run_dir)
    lessons = json.loads(str(ckpt["lessons"])) if "lessons" in ckpt else {}

    def eval_trained(seeds: list[int]) -> Evaluation:
        policy = make_policy(cfg.agent, cfg.llm, env, np.random.default_rng(0), greedy=cfg.agent.eval_greedy)
        load_params(policy, ckpt_path, ckpt)
        for name, text in lessons.items():
            policy.set_lessons(name, text)
        return run_episodes(env, policy, seeds, np.random.default_rng(cfg.trainer.seed + 1))

    _, report = final_evaluation(cfg, env, eval_trained)
    return report


@hydra_app
def main(config: Config, config_yaml: str) -> None:
    """``python -m trainers.grpo +experiment=artists``: train into the run's output folder (Hydra's)."""
    train(config, Path(HydraConfig.get().runtime.output_dir), config_yaml)


if __name__ == "__main__":
    main()
