"""Reward-to-prompt: turn each group's rollouts into plain-language lessons.

After every iteration the trainer hands :func:`make_lessons` one group's rollouts; the lessons
go to every policy of that group through ``policy.set_lessons(group, lessons)`` (the LLM
personas put them into their system prompt), to TensorBoard as text, to the checkpoint and to
``lessons.md`` in the run folder (:func:`lessons_markdown`).

Trajectories (one agent's episode in one rollout) are ranked by their **group-relative
advantage**, the GRPO advantage the trainer uses (:func:`trainers.grpo_math.group_advantages`,
same baseline and scaling, of the undiscounted episode return: the agent relative to itself in
the G rollouts of the iteration), not by raw return: a raw ranking rewards where a persona lives (some earn more
on any day), an advantage ranking what it did on that day. The lessons are:

* **per persona** (at most one each, for the ``top_k`` personas whose best day has the largest
  positive advantage): what that day had more or less of than the persona's other days. It is
  one day, so it is labelled a hint;
* **per group**: the top and bottom quartiles of the group's G x n trajectories by advantage
  compared on action shares by time-of-day block (:data:`ga_env.world.DAY_BLOCKS`) and by place
  kind (:data:`KIND_NAMES`), with the counts of each quartile. A difference is stated only when
  it exceeds twice its standard error (Welch, trajectories treated as independent, which they are
  not quite: they share rollouts and personas, and some 40 shares are compared, so the bar is if
  anything too low) and 3 percentage points; otherwise the lesson says there is no clear difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ga_env.personas import Group
from ga_env.world import DAY_BLOCKS, N_ACTIONS

KIND_NAMES: tuple[str, ...] = ("home", "task site", "research site", "social site", "street")
"""Place kinds of the contrast, per persona: its home, its task, research and social sites (its
group's, ``ga_env.world.World.kind_table``; a place of several kinds counts as the first), and
``street``: every other place (streets and other groups' sites)."""
STREET = len(KIND_NAMES) - 1
SE_FACTOR = 2.0
"""A quartile difference is stated only when larger than ``SE_FACTOR`` standard errors ..."""
MIN_DIFF = 0.03
"""... and at least this large (3 percentage points: smaller ones are no guidance)."""
MAX_CONTRASTS = 2
"""Clear quartile differences stated per group (the largest by difference / standard error)."""
VERBS: tuple[str, ...] = ("walking", "chatting", "task work", "research")
OBJECTIVE_AIMS: Mapping[str, str] = {
    "awareness": "raise awareness of {cause}",
    "supporters": "win supporters for {cause}",
    "knowledge": "produce knowledge",
    "task_progress": "make progress on the group's tasks",
    "relationships": "build relationships",
    "conversations": "hold more conversations",
    "rest": "stay rested",
}


def place_kinds(kind_table: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """``(N, P)`` kind of each place for each agent (index into :data:`KIND_NAMES`).

    Args:
        kind_table: ``(N, P, 4)`` ``World.kind_table`` (home / task / research / social site).
    """
    is_kind = np.asarray(kind_table) > 0  # (N, P, 4)
    return np.where(is_kind.any(2), is_kind.argmax(2), STREET).astype(np.int64)


def step_blocks(
    start_minute: int, stride: int, steps: int, block_by_minute: npt.NDArray[np.integer]
) -> npt.NDArray[np.int64]:
    """``(T,)`` time-of-day block (index into ``DAY_BLOCKS``) of each step of an episode."""
    minutes = (start_minute + stride * np.arange(steps)) % 1440
    return np.asarray(block_by_minute, dtype=np.int64)[minutes]


def objective_aim(group: Group) -> str:
    """The group's aim in words, from its largest objective weight (``"raise awareness of ..."``)."""
    if not group.objective:
        return "earn more reward"
    term = max(group.objective, key=lambda k: group.objective[k])
    return OBJECTIVE_AIMS.get(term, term.replace("_", " ")).format(cause=group.cause or "the cause")


def _objective_terms(group: Group) -> str:
    return ", ".join(f"{k.replace('_', ' ')} x{w:g}" for k, w in sorted(group.objective.items(), key=lambda kv: -kv[1]))


def _features(
    actions: npt.NDArray[np.integer],
    kinds: npt.NDArray[np.integer],
    place_idx: npt.NDArray[np.integer],
    blocks: npt.NDArray[np.integer],
) -> tuple[npt.NDArray[np.float64], list[tuple[str, str]]]:
    """``(G, n, F)`` behaviour shares of each trajectory and each feature's (what, of which steps)."""
    g, t, n = actions.shape
    n_blocks, n_kinds, a5 = len(DAY_BLOCKS), len(KIND_NAMES), N_ACTIONS + 1
    traj = (np.arange(g)[:, None, None] * n + np.arange(n)[None, None, :]).repeat(t, 1)  # (G, T, n)
    acts = np.clip(actions, 0, N_ACTIONS)  # 4 = no-op
    kind = kinds[np.arange(n)[None, None, :], place_idx]  # (G, T, n)
    by_block = np.bincount(
        ((traj * n_blocks + blocks[None, :, None]) * a5 + acts).ravel(), minlength=g * n * n_blocks * a5
    ).reshape(g, n, n_blocks, a5)
    by_kind = np.bincount(((traj * n_kinds + kind) * a5 + acts).ravel(), minlength=g * n * n_kinds * a5).reshape(
        g, n, n_kinds, a5
    )
    block_steps = np.bincount(blocks, minlength=n_blocks)  # (B,)
    cols, names = [], []
    for b, (block, _, _) in enumerate(DAY_BLOCKS):
        if block_steps[b]:
            for a in range(N_ACTIONS):
                cols.append(by_block[:, :, b, a] / block_steps[b])
                names.append((f"{VERBS[a]} in the {block}", f"{block} steps"))
    for k in range(len(KIND_NAMES)):
        cols.append(by_kind[:, :, k].sum(-1) / t)
        names.append((f"time at {_kind_phrase(k)}", "steps"))
        for a in range(N_ACTIONS):
            cols.append(by_kind[:, :, k, a] / t)
            what = "rest at home" if (k == 0 and a == 2) else f"{VERBS[a]} at {_kind_phrase(k)}"
            names.append((what, "steps"))
    return np.stack(cols, axis=-1), names


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.1 or x == 0 else f"{x:.1%}"


def _kind_phrase(k: int) -> str:
    return {0: "home", STREET: "streets and other places"}.get(k, f"{KIND_NAMES[k]}s")


def _persona_lesson(
    name: str,
    r: int,
    i: int,
    feats: npt.NDArray[np.float64],
    names: Sequence[tuple[str, str]],
    returns: npt.NDArray[np.float64],
    advantages: npt.NDArray[np.float64],
    aim: str,
    best_place: str,
) -> str:
    g = feats.shape[0]
    others = np.delete(np.arange(g), r)
    diff = feats[r, i] - feats[others, i].mean(0)  # (F,)
    f = int(np.argmax(np.abs(diff)))
    what, of = names[f]
    more = "more" if diff[f] > 0 else "less"
    return (
        f"{name}, to {aim}: your best of {g} days (advantage {advantages[r, i]:+.2f}, return {returns[r, i]:.1f} "
        f"vs {returns[others, i].mean():.1f} on the others) had {more} {what} ({feats[r, i, f]:.0%} vs "
        f"{feats[others, i, f].mean():.0%} of {of}); most of its reward came at {best_place}. "
        "One day only: a hint, not a rule."
    )


def _contrast_lesson(
    feats: npt.NDArray[np.float64],
    names: Sequence[tuple[str, str]],
    advantages: npt.NDArray[np.float64],
    group: Group,
) -> str:
    g, n, n_feat = feats.shape
    total = g * n
    flat_adv, flat = advantages.ravel(), feats.reshape(total, n_feat)
    q = max(1, total // 4)
    order = np.argsort(-flat_adv, kind="stable")  # best first
    top, bottom = order[:q], order[-q:]
    ranked = (
        f"the {group.name} group's {total} trajectories ranked by advantage ({g} rollouts x {n} personas; "
        f"objective {_objective_terms(group)})"
    )
    if total < 2 or flat_adv[top].mean() <= flat_adv[bottom].mean():
        return f"In {ranked}, every trajectory has the same advantage: no contrast to draw."
    mean_t, mean_b = flat[top].mean(0), flat[bottom].mean(0)
    diff = mean_t - mean_b  # (F,)
    if q >= 2:
        se = np.sqrt(flat[top].var(0, ddof=1) / q + flat[bottom].var(0, ddof=1) / q)
    else:
        se = np.full(n_feat, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(se > 0, np.abs(diff) / se, np.where(diff != 0, np.inf, 0.0))
    clear = np.flatnonzero((score > SE_FACTOR) & (np.abs(diff) >= MIN_DIFF))
    if clear.size == 0:
        f = int(np.argmax(np.abs(diff)))
        what, of = names[f]
        if q < 2:
            why = "too few trajectories for a standard error"
        elif score[f] > SE_FACTOR:
            why = f"under {MIN_DIFF:.0%} points"
        else:
            why = f"within {SE_FACTOR:g} standard errors"
        return (
            f"In {ranked}, the top and bottom quarters ({q} vs {q} trajectories) show no clear difference in what they "
            f"did by time of day or place (the largest, {what}, {_pct(mean_t[f])} vs {_pct(mean_b[f])} of {of}, "
            f"is {why})."
        )
    # The clearest differences, skipping near-copies of one already stated (e.g. walking on the
    # streets and time on the streets).
    both = flat[np.concatenate([top, bottom])]  # (2q, F)
    centred = both - both.mean(0)
    norm = np.sqrt((centred**2).sum(0))
    best: list[int] = []
    for f in clear[np.argsort(-score[clear], kind="stable")]:
        if len(best) == MAX_CONTRASTS:
            break
        corr = np.abs(centred[:, best].T @ centred[:, f]) / np.maximum(norm[best] * norm[f], 1e-12)
        if not (corr > 0.8).any():
            best.append(int(f))
    parts = []
    for f in best:
        what, of = names[f]
        parts.append(
            f"{'more' if diff[f] > 0 else 'less'} {what} ({_pct(mean_t[f])} vs {_pct(mean_b[f])} of {of}, "
            f"difference {100 * diff[f]:+.1f} ± {100 * se[f]:.1f} points, 1 s.e.)"
        )
    return (
        f"To {objective_aim(group)}: in {ranked}, the top quarter ({q} trajectories) had "
        + " and ".join(parts)
        + f" compared with the bottom quarter ({q} trajectories)."
    )


def make_lessons(
    *,
    names: Sequence[str],
    group: Group,
    places: Sequence[str],
    actions: npt.NDArray[np.integer],
    place_idx: npt.NDArray[np.integer],
    rewards: npt.NDArray[np.floating],
    advantages: npt.NDArray[np.floating],
    kinds: npt.NDArray[np.integer],
    blocks: npt.NDArray[np.integer],
    top_k: int,
) -> list[str]:
    """Lessons from one group's rollouts: at most one per persona, then the quartile contrast.

    Args:
        names: ``(n,)`` persona names of the group's agents.
        group: the group (its objective and cause phrase the lessons).
        places: place names (``env.places``).
        actions: ``(G, T, n)`` effective actions (4 = no-op).
        place_idx: ``(G, T, n)`` place of each agent when it acted.
        rewards: ``(G, T, n)`` per-step rewards.
        advantages: ``(G, n)`` group-relative advantage of each agent's episode return
            (:func:`trainers.grpo_math.group_advantages` of the ``(G, N)`` returns with the
            trainer's baseline and scaling: the agent against itself in the G rollouts).
        kinds: ``(n, P)`` kind of each place for each agent (:func:`place_kinds`).
        blocks: ``(T,)`` time-of-day block of each step (:func:`step_blocks`).
        top_k: personas given a lesson of their own (those whose best day has the largest
            positive advantage; 0 = only the group's contrast).

    Returns:
        Distinct plain-language lessons: up to ``top_k`` persona lessons, then the group's contrast.
    """
    g, _, n = actions.shape
    adv = np.asarray(advantages, dtype=np.float64).reshape(g, n)
    returns = np.asarray(rewards, dtype=np.float64).sum(1)  # (G, n)
    feats, feat_names = _features(np.asarray(actions), np.asarray(kinds), np.asarray(place_idx), np.asarray(blocks))
    aim = objective_aim(group)
    lessons: list[str] = []
    if g >= 2 and top_k > 0:
        best_r = adv.argmax(0)  # (n,) each persona's best rollout
        best_adv = adv[best_r, np.arange(n)]
        chosen = [i for i in np.argsort(-best_adv, kind="stable") if best_adv[i] > 0]
        seen: set[str] = set()
        for i in chosen:
            if len(seen) >= top_k or names[i] in seen:
                continue
            seen.add(names[i])
            r = int(best_r[i])
            by_place = np.bincount(place_idx[r, :, i], weights=rewards[r, :, i], minlength=len(places))
            lessons.append(
                _persona_lesson(
                    names[i], r, int(i), feats, feat_names, returns, adv, aim, places[int(np.argmax(by_place))]
                )
            )
    lessons.append(_contrast_lesson(feats, feat_names, adv, group))
    return list(dict.fromkeys(lessons))


def lessons_markdown(lessons_by_group: Mapping[str, Sequence[str]], iteration: int) -> str:
    """A readable ``lessons.md``: the lessons of each group made after ``iteration``."""
    out = [
        f"# Lessons after iteration {iteration}",
        "",
        "Made from the iteration's rollouts ranked by group-relative advantage (trainers/lessons.py); "
        "they are in the personas' system prompts from the next iteration on.",
    ]
    for group, lessons in lessons_by_group.items():
        out += ["", f"## {group}", ""]
        out += [f"- {lesson}" for lesson in lessons]
    return "\n".join(out) + "\n"
