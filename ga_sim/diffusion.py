"""Who told whom about which cause, and when: the conversation graph and the information cascades of a run.

Built from a compressed run (:func:`ga_sim.compress.compress_run`: its conversations, per-step group figures and
personas), written by ``ga-compress`` into ``<results>/compressed/NAME/diffusion/``:

* ``conversations.graphml``: the conversation graph, one node per persona (``group``), one edge per pair that
  talked, with ``weight`` (steps they talked), ``first_step``, ``last_step`` and ``steps`` (comma-separated);
* ``cascade_<group>.graphml``: per group with a cause, the tree of first exposures: an edge ``u -> v`` when ``v``
  first heard of the cause from ``u`` (``step``, ``time``), the group's members as roots (``member=1``,
  ``depth=0``); every node has ``depth`` and, once exposed, ``step``;
* ``diffusion.json``: the figures below and the graphs as NetworkX node-link data (``networkx.node_link_graph``
  reads them back);
* ``awareness.png`` (awareness of each cause among non-members over time), ``cascades.png`` (the cascade trees),
  ``degree.png`` (the conversation graph's degree distribution).

**Exposure.** A persona is exposed to a cause when it talks with someone already exposed (the cause's group's
members are exposed from the start). A conversation at step ``t`` exposes a persona from the start of step
``t`` on: an exposure reached within a step passes on from the next step, so that one step is one hop (a
conversation of three people at one step exposes the unexposed from the exposed, not in a chain). This is the
cascade of contacts, the standard first-exposure tree (Goel, Watts and Goldstein 2012, "The structure of online
diffusion networks"), measured from the transcript; the town's own awareness (continuous, with persuasion and
decay) is the ``awareness`` curve, from the step records.

**Told** (``told`` in each cause's figures): the same cascade counting only conversations whose turns name the cause
(two of its content words, :func:`mentions`): who heard of it in words, from whom. The two differ when people meet
without talking about it (a numeric policy's template says the cause only from a member to a non-member).

**Figures** per cause: ``exposed`` (non-members exposed), ``cascade_size`` (the tree's nodes reached from the
members, members excluded), ``depth`` (longest chain of hops from a member), ``by_nonmembers`` (share of the
exposures passed on by a non-member: word of mouth beyond the group), ``steps_to_half`` (the first step at which
the cause's awareness among non-members is at least 0.5, None if never) and ``final_awareness``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ga_env.checkpoint import atomic_write_bytes

__all__ = ["analyse", "cascade", "conversation_graph", "write"]


def _pairs(participants: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in combinations(participants, 2) if a != b]


def conversation_graph(doc: dict[str, Any]) -> nx.Graph:
    """Personas as nodes (``group``), an edge per pair that talked (``weight``, ``first_step``, ``last_step``,
    ``steps``: the steps, comma-separated: GraphML has no lists)."""
    g = nx.Graph()
    for p in doc["meta"]["personas"]:
        g.add_node(p["name"], group=p["group"])
    steps: dict[tuple[str, str], list[int]] = {}
    for c in doc["conversations"]:
        for a, b in _pairs(c["participants"]):
            key = (a, b) if a < b else (b, a)
            steps.setdefault(key, []).append(int(c["step"]))
    for (a, b), s in steps.items():
        s = sorted(set(s))
        g.add_edge(a, b, weight=len(s), first_step=s[0], last_step=s[-1], steps=",".join(map(str, s)))
    return g


STOPWORDS = frozenset(
    "the a an and or of to in on at for with from by about into over after before this that these those their its "
    "our your his her them they we you it is are was were be been being has have had do does did not no so as".split()
)


def cause_words(cause: str) -> set[str]:
    """The cause's content words (lower case, 4+ letters, no stop words): what a mention must contain."""
    return {w for w in re.findall(r"[a-z0-9']+", cause.lower()) if len(w) >= 4 and w not in STOPWORDS}


def mentions(conversation: dict[str, Any], words: set[str]) -> bool:
    """Whether a conversation's turns name the cause: at least two of its content words (one if it has one)."""
    said = set(
        re.findall(r"[a-z0-9']+", " ".join(str(t[1]) for t in conversation.get("turns", []) if len(t) > 1).lower())
    )
    return len(words & said) >= min(2, len(words)) if words else False


def cascade(doc: dict[str, Any], group: str, *, by: str = "contact") -> nx.DiGraph:
    """The tree of first exposures to ``group``'s cause (see the module's docstring).

    ``by="contact"``: any conversation with someone exposed exposes; ``by="mention"``: only one whose turns name
    the cause (:func:`mentions`), i.e. who *told* whom.
    """
    if by not in ("contact", "mention"):
        raise ValueError(f"cascade: by: {by!r} is unknown. Fix: use 'contact' or 'mention'")
    cause = next((g.get("cause") or "" for g in doc["meta"]["groups"] if g["name"] == group), "")
    words = cause_words(cause)
    members = {p["name"] for p in doc["meta"]["personas"] if p["group"] == group}
    tree = nx.DiGraph(group=group)
    for p in doc["meta"]["personas"]:
        member = p["name"] in members
        tree.add_node(p["name"], group=p["group"], member=int(member), **({"depth": 0, "step": 0} if member else {}))
    exposed = set(members)
    by_step: dict[int, list[dict[str, Any]]] = {}
    for c in doc["conversations"]:
        by_step.setdefault(int(c["step"]), []).append(c)
    for step in sorted(by_step):
        before = set(exposed)  # exposures of this step pass on from the next one
        for c in by_step[step]:
            if by == "mention" and not mentions(c, words):
                continue
            for a, b in _pairs(c["participants"]):
                for u, v in ((a, b), (b, a)):
                    if u in before and v not in exposed:
                        exposed.add(v)
                        depth = tree.nodes[u]["depth"] + 1
                        tree.nodes[v].update(depth=depth, step=step)
                        tree.add_edge(u, v, step=step, time=c["time"])
    return tree


def _depth_or_none(tree: nx.DiGraph, node: str) -> int | None:
    value = tree.nodes[node].get("depth")
    return None if value is None else int(value)


def _told(doc: dict[str, Any], group: str, members: set[str]) -> dict[str, Any]:
    """The cascade of mentions: who heard of the cause in words, from whom (figures and its edges)."""
    tree = cascade(doc, group, by="mention")
    reached = [n for n in tree.nodes if n not in members and tree.nodes[n].get("depth") is not None]
    edges = list(tree.edges(data="step"))
    return {
        "exposed": len(reached),
        "depth": max((int(tree.nodes[n]["depth"]) for n in reached), default=0),
        "by_nonmembers": (sum(u not in members for u, _, _ in edges) / len(edges)) if edges else 0.0,
        "edges": [[u, v, int(st)] for u, v, st in edges],
    }


def analyse(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures per cause, the graphs as node-link data and the awareness curves (see the module)."""
    graph = conversation_graph(doc)
    causes = [g["name"] for g in doc["meta"]["groups"] if g.get("cause")]
    curves = {name: [float(step.get(name, {}).get("awareness", 0.0)) for step in doc["groups"]] for name in causes}
    figures: dict[str, Any] = {}
    trees: dict[str, nx.DiGraph] = {}
    for name in causes:
        tree = cascade(doc, name)
        trees[name] = tree
        members = {n for n, d in tree.nodes(data=True) if d["member"]}
        reached = [n for n in tree.nodes if n not in members and _depth_or_none(tree, n) is not None]
        edges = list(tree.edges)
        curve = np.asarray(curves[name])
        half = np.flatnonzero(curve >= 0.5)
        steps = doc["movement"]
        figures[name] = {
            "members": len(members),
            "nonmembers": tree.number_of_nodes() - len(members),
            "exposed": len(reached),
            "cascade_size": len(reached),
            "depth": max((int(tree.nodes[n]["depth"]) for n in reached), default=0),
            "by_nonmembers": (sum(u not in members for u, _ in edges) / len(edges)) if edges else 0.0,
            "steps_to_half": int(steps[int(half[0])]["step"]) if len(half) else None,
            "final_awareness": float(curve[-1]) if len(curve) else 0.0,
            "told": _told(doc, name, members),
        }
    degrees = [d for _, d in graph.degree()]
    return {
        "name": doc["meta"]["name"],
        "steps": doc["meta"]["steps"],
        "conversations": len(doc["conversations"]),
        "causes": figures,
        "degree": {"mean": float(np.mean(degrees)) if degrees else 0.0, "max": max(degrees, default=0)},
        "awareness": curves,
        "graphs": {
            "conversations": nx.node_link_data(graph, edges="edges"),
            "cascades": {name: nx.node_link_data(t, edges="edges") for name, t in trees.items()},
        },
        "_trees": trees,
        "_graph": graph,
    }


def plot(result: dict[str, Any], out: Path) -> list[Path]:
    """``awareness.png``, ``cascades.png`` and ``degree.png`` into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for name, curve in result["awareness"].items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("awareness among non-members")
    ax.set_ylim(0, 1)
    ax.set_title(f"{result['name']}: awareness of each cause")
    if result["awareness"]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "awareness.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    trees = result["_trees"]
    fig, axes = plt.subplots(1, max(len(trees), 1), figsize=(6.4 * max(len(trees), 1), 4.8), dpi=110, squeeze=False)
    for ax, (name, tree) in zip(axes[0], trees.items(), strict=False):
        reached = [n for n, d in tree.nodes(data=True) if d.get("depth") is not None]
        sub = tree.subgraph(reached)
        layers: dict[int, list[str]] = {}
        for n in sorted(sub.nodes, key=lambda n: (sub.nodes[n].get("step", 0), n)):
            layers.setdefault(int(sub.nodes[n]["depth"]), []).append(n)
        pos = {n: (x - (len(ns) - 1) / 2, -d) for d, ns in layers.items() for x, n in enumerate(ns)}
        colors = ["tab:orange" if sub.nodes[n]["member"] else "tab:blue" for n in sub.nodes]
        nx.draw_networkx(sub, pos, ax=ax, node_color=colors, node_size=120, font_size=6, arrows=True, width=0.8)
        ax.set_title(f"{name}: {result['causes'][name]['exposed']} exposed, depth {result['causes'][name]['depth']}")
        ax.set_axis_off()
    if not trees:
        axes[0][0].set_axis_off()
        axes[0][0].set_title("no group has a cause")
    fig.tight_layout()
    paths.append(out / "cascades.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    degrees = [d for _, d in result["_graph"].degree()]
    ax.hist(degrees, bins=[k - 0.5 for k in range(max(degrees, default=0) + 2)], color="tab:green")
    ax.set_xlabel("conversation partners (degree)")
    ax.set_ylabel("personas")
    ax.set_title(f"{result['name']}: degree distribution of the conversation graph")
    fig.tight_layout()
    paths.append(out / "degree.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def write(doc: dict[str, Any], out: Path) -> dict[str, Any]:
    """Analyse a compressed run and write ``out/`` (GraphML, ``diffusion.json``, PNGs); returns the figures."""
    out.mkdir(parents=True, exist_ok=True)
    result = analyse(doc)
    nx.write_graphml(result["_graph"], out / "conversations.graphml")
    for name, tree in result["_trees"].items():
        nx.write_graphml(tree, out / f"cascade_{name}.graphml")
    plot(result, out)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic_write_bytes(out / "diffusion.json", json.dumps(public, indent=1).encode())
    return public
