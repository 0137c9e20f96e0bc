"""The memory stream of a generative persona (Park et al. 2023, section 4.1), vectorised in NumPy.

Every observation, thought and conversation is a :class:`MemoryNode` (kind ``event``,
``thought`` or ``chat``; created, last accessed, poignancy 1-10, embedding, keywords, a natural
language description, and for thoughts the ids of the memories they rest on). Besides the node
list, the stream keeps one row per node in NumPy arrays (embeddings ``(M, E)``, creation and
last-access times ``(M,)`` in game minutes, poignancy ``(M,)``, kind ``(M,)``), so that
:meth:`MemoryStream.retrieve` scores every memory for several focal points with a few array ops:

``score = w_rec·recency + w_rel·relevance + w_imp·importance + w_task·task_resonance``

each term min-max normalised over the candidates (as in the original code), where recency is
``decay ** hours since last access`` (0.995 per game hour), importance the poignancy, relevance
the cosine similarity of the memory to the focal point and **task resonance** its cosine
similarity to the persona's group task. The defaults are the original's (recency 0.5,
relevance 3, importance 2; top 30) plus task resonance 1. Retrieved memories are marked accessed.

:class:`SpatialMemory` is the persona's map knowledge (world, then sector → arena → objects),
grown as it perceives places; every place reads ``world:sector:arena[:object]``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.embeddings import Embedder

__all__ = ["KINDS", "MemoryNode", "MemoryStream", "RetrievalWeights", "SpatialMemory", "game_minutes"]

KINDS: tuple[str, ...] = ("event", "thought", "chat")
EPOCH = dt.datetime(2000, 1, 1)
KEEP_NEWEST = 32
"""Newest memories a bounded stream never forgets (the persona's short-term context)."""
_STOP = frozenset(
    "a an the and or of to in on at for with by is are was were be been it its this that as from "
    "i you he she they we his her their my your our me him them is idle".split()
)
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


def game_minutes(when: dt.datetime) -> float:
    """A game time as minutes since 2000-01-01 (the unit of the stream's time arrays)."""
    return (when - EPOCH).total_seconds() / 60.0


def keywords_of(text: str, limit: int = 6) -> tuple[str, ...]:
    """Content words of ``text`` (lower-cased, stop words dropped, first occurrences, at most ``limit``)."""
    out = [w for w in dict.fromkeys(_WORD.findall(text.lower())) if w not in _STOP]
    return tuple(out[:limit])


@dataclass(frozen=True, kw_only=True)
class RetrievalWeights:
    """Weights and constants of retrieval (defaults: Park et al.'s code, plus task resonance)."""

    recency: float = 0.5
    relevance: float = 3.0
    importance: float = 2.0
    task: float = 1.0
    """Weight of task resonance (similarity of a memory to the persona's group task)."""
    decay: float = 0.995
    """Recency decay per game hour since the memory was last accessed."""
    top_k: int = 30

    def __post_init__(self) -> None:
        for name in ("recency", "relevance", "importance", "task"):
            if getattr(self, name) < 0:
                raise ValueError(f"retrieval: {name}: {getattr(self, name)} is negative. Fix: use a weight >= 0")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"retrieval: decay: {self.decay} is not in (0, 1]. Fix: use e.g. 0.995")
        if self.top_k < 1:
            raise ValueError(f"retrieval: top_k: {self.top_k} must be >= 1. Fix: use e.g. 30")


@dataclass(kw_only=True)
class MemoryNode:
    """One memory (plain data; its embedding row lives in the stream's arrays)."""

    id: int
    kind: str
    created: str
    """ISO game time of creation."""
    last_accessed: str
    poignancy: float
    description: str
    keywords: tuple[str, ...] = ()
    subject: str = ""
    predicate: str = ""
    object: str = ""
    evidence: tuple[int, ...] = ()
    """Ids of the memories a thought rests on (reflections), empty otherwise."""
    chat: tuple[tuple[str, str], ...] = ()
    """For ``chat`` nodes: the conversation as ``(speaker, utterance)`` turns."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keywords"], d["evidence"] = list(self.keywords), list(self.evidence)
        d["chat"] = [list(turn) for turn in self.chat]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemoryNode:
        d = dict(d)
        d["keywords"] = tuple(d.get("keywords", ()))
        d["evidence"] = tuple(int(e) for e in d.get("evidence", ()))
        d["chat"] = tuple((str(s), str(u)) for s, u in d.get("chat", ()))
        return cls(**d)


class MemoryStream:
    """A persona's associative memory: nodes plus parallel NumPy arrays for vectorised retrieval.

    Args:
        embedder: turns descriptions into vectors (shared by all personas; it caches by text).
        weights: retrieval weights.
    """

    def __init__(
        self, embedder: Embedder, weights: RetrievalWeights | None = None, capacity: int | None = None
    ) -> None:
        if capacity is not None and capacity < 2 * KEEP_NEWEST:
            raise ValueError(
                f"memory: capacity: {capacity} is too small. Fix: use at least {2 * KEEP_NEWEST} (or null: never forget)"
            )
        self.embedder = embedder
        self.weights = weights or RetrievalWeights()
        self.capacity = capacity
        self.forgotten = 0
        self.nodes: list[MemoryNode] = []
        cap = 64
        self._emb = np.zeros((cap, embedder.dim), dtype=np.float32)  # (cap, E)
        self._created = np.zeros(cap)  # (cap,) game minutes
        self._accessed = np.zeros(cap)  # (cap,) game minutes
        self._poignancy = np.zeros(cap)  # (cap,)
        self._kind = np.zeros(cap, dtype=np.int8)  # (cap,) index into KINDS
        self.keyword_index: dict[str, list[int]] = {}
        self.poignancy_since_reflection = 0.0
        self._node_json: list[bytes] = []  # serialised nodes (without last_accessed), for checkpoints
        self._task_cache: tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]] | None = None

    def __len__(self) -> int:
        return len(self.nodes)

    # -- writing -------------------------------------------------------------------------------
    def _grow(self) -> None:
        cap = 2 * len(self._created)
        self._emb = np.concatenate([self._emb, np.zeros_like(self._emb)])[:cap]
        for name in ("_created", "_accessed", "_poignancy", "_kind"):
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, np.zeros_like(arr)]))

    def add(
        self,
        kind: str,
        description: str,
        *,
        when: dt.datetime,
        poignancy: float,
        embedding: npt.NDArray[np.float32] | None = None,
        keywords: Iterable[str] | None = None,
        spo: tuple[str, str, str] = ("", "", ""),
        evidence: Sequence[int] = (),
        chat: Sequence[tuple[str, str]] = (),
    ) -> MemoryNode:
        """Append a memory and return it.

        Args:
            kind: ``event``, ``thought`` or ``chat``.
            description: the memory in one sentence.
            when: game time (creation and first access).
            poignancy: 1 (mundane) to 10 (life-changing); clipped to that range.
            embedding: precomputed vector (else the embedder is called).
            keywords: index words (else the description's content words).
            spo: (subject, predicate, object) as in the original's event triples.
            evidence: ids of the memories a thought rests on.
            chat: the conversation's ``(speaker, utterance)`` turns for ``chat`` nodes.
        """
        if kind not in KINDS:
            raise ValueError(f"memory: kind: {kind!r} is unknown. Fix: use one of {', '.join(KINDS)}")
        bad = [e for e in evidence if not 0 <= e < len(self.nodes)]
        if bad:
            raise ValueError(f"memory: evidence: ids {bad} do not exist. Fix: cite ids of existing memories")
        i = len(self.nodes)
        if i == len(self._created):
            self._grow()
        vec = self.embedder.embed([description])[0] if embedding is None else embedding
        iso = when.isoformat(timespec="minutes")
        node = MemoryNode(
            id=i,
            kind=kind,
            created=iso,
            last_accessed=iso,
            poignancy=float(np.clip(poignancy, 1.0, 10.0)),
            description=description,
            keywords=tuple(keywords) if keywords is not None else keywords_of(description),
            subject=spo[0],
            predicate=spo[1],
            object=spo[2],
            evidence=tuple(int(e) for e in evidence),
            chat=tuple((str(s), str(u)) for s, u in chat),
        )
        self.nodes.append(node)
        t = game_minutes(when)
        self._emb[i], self._created[i], self._accessed[i] = vec, t, t
        self._poignancy[i], self._kind[i] = node.poignancy, KINDS.index(kind)
        for kw in node.keywords:
            self.keyword_index.setdefault(kw, []).append(i)
        self.poignancy_since_reflection += node.poignancy
        return node

    # -- forgetting ------------------------------------------------------------------------------
    def forget(self, now: dt.datetime) -> int:
        """Bound the stream to ``capacity`` memories (no-op when ``capacity`` is None); returns how many went.

        Runs when the stream exceeds ``capacity`` by a quarter (so its cost is amortised), and
        keeps the :data:`KEEP_NEWEST` newest memories plus the most *retrievable* others: the
        query-independent part of retrieval, ``importance + recency`` (weights and min-max
        normalisation as :meth:`scores`; ties keep the newer). Survivors are renumbered in order
        (ids stay indices); a thought's evidence keeps the ids of the survivors it cites. The
        arrays are rebuilt as new arrays, never overwritten (checkpoint views stay valid).
        """
        m = len(self.nodes)
        if self.capacity is None or m <= self.capacity + max(KEEP_NEWEST, self.capacity // 4):
            return 0
        w = self.weights
        hours = np.maximum(game_minutes(now) - self._accessed[:m], 0.0) / 60.0
        score = w.importance * _minmax(self._poignancy[:m]) + w.recency * _minmax(w.decay**hours)
        score[m - KEEP_NEWEST :] = np.inf
        keep = np.sort(top_k_newest_first(score[None, :], self.capacity)[0])  # (capacity,) old ids, in order
        new_id = np.full(m, -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        nodes: list[MemoryNode] = []
        for old in keep.tolist():
            node = self.nodes[old]
            evidence = tuple(int(new_id[e]) for e in node.evidence if new_id[e] >= 0)
            nodes.append(replace(node, id=len(nodes), evidence=evidence))
        cap = len(self._created)
        for name in ("_emb", "_created", "_accessed", "_poignancy", "_kind"):
            arr = getattr(self, name)
            fresh = np.zeros_like(arr[:cap])
            fresh[: len(keep)] = arr[keep]
            setattr(self, name, fresh)
        self.nodes = nodes
        self._index_keywords()
        self._node_json = []
        self._task_cache = None
        self.forgotten += m - len(keep)
        return m - len(keep)

    # -- reading -------------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[MemoryNode]:
        """All memories of one kind, newest first (``print persona associative memory``)."""
        if kind not in KINDS:
            raise ValueError(f"memory: kind: {kind!r} is unknown. Fix: use one of {', '.join(KINDS)}")
        return [n for n in reversed(self.nodes) if n.kind == kind]

    def latest(self, k: int, kinds: Sequence[str] = KINDS) -> list[MemoryNode]:
        """The ``k`` most recent memories of the given kinds, newest first."""
        out: list[MemoryNode] = []
        for n in reversed(self.nodes):
            if n.kind in kinds:
                out.append(n)
                if len(out) == k:
                    break
        return out

    def by_keyword(self, keyword: str) -> list[MemoryNode]:
        return [self.nodes[i] for i in self.keyword_index.get(keyword.lower(), [])]

    def scores(
        self,
        focal_vectors: npt.NDArray[np.float32],
        task_vector: npt.NDArray[np.float32] | None,
        now: dt.datetime,
        kinds: Sequence[str] = KINDS,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Retrieval scores ``(F, C)`` of the ``C`` candidate memories for ``F`` focal vectors.

        Returns:
            ``(scores, candidate ids)``; each term is min-max normalised over the candidates.
        """
        m = len(self.nodes)
        every = set(kinds) >= set(KINDS)
        cand = np.arange(m) if every else np.flatnonzero(np.isin(self._kind[:m], [KINDS.index(k) for k in kinds]))
        w = self.weights
        f = len(focal_vectors)
        if not len(cand):
            return np.zeros((f, 0)), cand
        pick = slice(None) if every else cand  # a view when every memory is a candidate (no copies)
        hours = np.maximum(game_minutes(now) - self._accessed[:m][pick], 0.0) / 60.0
        recency = _minmax(w.decay**hours)  # (C,)
        importance = _minmax(self._poignancy[:m][pick])  # (C,)
        # Similarities over all m memories (a matrix product on a view), then the candidates' columns.
        sims = np.asarray(focal_vectors, dtype=np.float32) @ self._emb[:m].T  # (F, m)
        relevance = _minmax(sims[:, pick])  # (F, C), per focal row
        total = w.recency * recency + w.importance * importance + w.relevance * relevance
        if task_vector is not None and w.task:
            total = total + w.task * _minmax(self._task_similarity(task_vector)[pick])
        return total, cand

    def _task_similarity(self, task_vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """``(m,)`` similarity of every memory to the task, computed once per memory (the task is fixed).

        The cache grows by the memories added since the last call, and is rebuilt in one pass after
        a restore or a compaction: :func:`row_dots` gives every row the same bits either way, so a
        resumed run ranks (and breaks ties) exactly as an uninterrupted one.
        """
        vec = np.asarray(task_vector, dtype=np.float32)
        m = len(self.nodes)
        cache = self._task_cache
        if cache is None or not np.array_equal(cache[0], vec):
            cache = (vec.copy(), np.zeros(0, dtype=np.float64))
        done = len(cache[1])
        if done < m:
            cache = (cache[0], np.concatenate([cache[1], row_dots(self._emb[done:m], cache[0])]))
        self._task_cache = cache
        return cache[1][:m]

    def retrieve(
        self,
        focal_points: Sequence[str],
        now: dt.datetime,
        *,
        task: str | None = None,
        kinds: Sequence[str] = KINDS,
        top_k: int | None = None,
        touch: bool = True,
    ) -> dict[str, list[MemoryNode]]:
        """The top memories for each focal point, best first (Park et al.'s ``new_retrieve``); equal
        scores go to the newer memory (the higher id), by a stable sort (:func:`top_k_newest_first`).

        Args:
            focal_points: queries (e.g. an event description, a question).
            now: game time (recency; new last-access time of the retrieved memories).
            task: the persona's group task (task resonance); None switches the term off.
            kinds: memory kinds eligible.
            top_k: memories per focal point (default ``weights.top_k``).
            touch: mark retrieved memories as accessed now.
        """
        if not focal_points or not self.nodes:
            return {fp: [] for fp in focal_points}
        vecs = self.embedder.embed(list(focal_points) + ([task] if task else []))
        total, cand = self.scores(vecs[: len(focal_points)], vecs[-1] if task else None, now, kinds)
        k = min(top_k or self.weights.top_k, len(cand))
        order = top_k_newest_first(total, k)  # (F, k) column indices into cand
        out: dict[str, list[MemoryNode]] = {}
        touched: set[int] = set()
        for row, fp in enumerate(focal_points):
            ids = [int(cand[j]) for j in order[row]]
            out[fp] = [self.nodes[i] for i in ids]
            touched.update(ids)
        if touch and touched:
            t, iso = game_minutes(now), now.isoformat(timespec="minutes")
            idx = np.fromiter(touched, dtype=np.int64)
            self._accessed[idx] = t
            for i in touched:
                self.nodes[i].last_accessed = iso
        return out

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything to restore the stream exactly: JSON-able nodes plus the embedding matrix."""
        m = len(self.nodes)
        if len(self._node_json) < m:  # nodes never change but for last_accessed (kept in `accessed`)
            for n in self.nodes[len(self._node_json) :]:
                d = n.to_dict()
                del d["last_accessed"]
                self._node_json.append(json.dumps(d, ensure_ascii=False).encode() + b"\n")
        return {
            "embedder": self.embedder.name,
            # JSON lines as bytes: append-only, so a checkpoint shares all but its newest blocks.
            "nodes_jsonl": np.frombuffer(b"".join(self._node_json[:m]), dtype=np.uint8),
            "embeddings": _frozen(self._emb[:m]),  # rows < m never change (new rows go after them)
            "accessed": self._accessed[:m].copy(),
            "poignancy_since_reflection": self.poignancy_since_reflection,
            "forgotten": self.forgotten,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the embedder must be the same model)."""
        if state["embedder"] != self.embedder.name:
            raise ValueError(
                f"memory: embedder: the checkpoint was embedded with {state['embedder']!r}, this run uses "
                f"{self.embedder.name!r}. Fix: resume with the same agent.embedder"
            )
        lines = np.asarray(state["nodes_jsonl"], dtype=np.uint8).tobytes().split(b"\n")[:-1]
        accessed = np.asarray(state["accessed"], dtype=np.float64)
        nodes = []
        for line, minutes in zip(lines, accessed, strict=True):
            d = json.loads(line)
            d["last_accessed"] = (EPOCH + dt.timedelta(minutes=float(minutes))).isoformat(timespec="minutes")
            nodes.append(MemoryNode.from_dict(d))
        emb = np.asarray(state["embeddings"], dtype=np.float32).reshape(len(nodes), self.embedder.dim)
        self.__init__(self.embedder, self.weights, self.capacity)  # type: ignore[misc]
        self.forgotten = int(state.get("forgotten", 0))
        cap = max(64, 1 << max(len(nodes) - 1, 1).bit_length())
        while len(self._created) < cap:
            self._grow()
        m = len(nodes)
        self.nodes = nodes
        self._emb[:m] = emb
        self._created[:m] = [game_minutes(dt.datetime.fromisoformat(n.created)) for n in nodes]
        self._accessed[:m] = accessed
        self._node_json = [line + b"\n" for line in lines]
        self._poignancy[:m] = [n.poignancy for n in nodes]
        self._kind[:m] = [KINDS.index(n.kind) for n in nodes]
        self._index_keywords()
        self.poignancy_since_reflection = float(state["poignancy_since_reflection"])

    def _index_keywords(self) -> None:
        """Rebuild ``keyword_index`` from the nodes (after a restore or a compaction)."""
        self.keyword_index = {}
        for n in self.nodes:
            for kw in n.keywords:
                self.keyword_index.setdefault(kw, []).append(n.id)


def _frozen(view: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A read-only view: its rows never change while its base lives (checkpoints may cache their digests)."""
    view = view.view()
    view.flags.writeable = False
    return view


def row_dots(rows: npt.NDArray[np.float32], vec: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """``(n,)`` dot product of each row with ``vec``, bit-identical whatever the number of rows.

    A BLAS matrix-vector product (``rows @ vec``) sums each row in an order that depends on the
    matrix's shape (a single row goes another way than a block), so a cache filled a few rows at a
    time and one rebuilt in one pass differ in the last bits. Here each float32 product is exact in
    float64 and each row is summed alone (NumPy's pairwise sum along the contiguous last axis): the
    result depends on the row's values only.
    """
    vec = np.asarray(vec, dtype=np.float32)
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), 4096):  # blocks bound the float64 temporary (rows are independent)
        block = rows[start : start + 4096]
        out[start : start + len(block)] = np.multiply(block, vec, dtype=np.float64).sum(axis=-1)
    return out


def top_k_newest_first(total: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """``(F, k)`` column indices of each row's ``k`` highest scores, best first; ties go to the
    higher index (the newer memory), exactly as a stable sort of the reversed row would.

    A partial selection first (``np.partition``: the k-th highest score of each row), then a
    stable sort of only the columns at or above it, so the cost grows with the stream's length
    only through a linear-time selection.
    """
    f, c = total.shape
    rev = -total[:, ::-1]  # (F, C): ascending order = best first; newer memories first among ties
    if k >= c:
        return c - 1 - np.argsort(rev, axis=1, kind="stable")[:, :k]
    kth = np.partition(rev, k - 1, axis=1)[:, k - 1 : k]  # (F, 1)
    out = np.empty((f, k), dtype=np.int64)
    for row in range(f):
        cols = np.flatnonzero(rev[row] <= kth[row, 0])  # the top k plus any ties at the k-th score
        best = cols[np.argsort(rev[row, cols], kind="stable")[:k]]
        out[row] = c - 1 - best
    return out


def _minmax(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Min-max normalise along the last axis to [0, 1] (a constant row becomes 0.5, as in the original)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    span = hi - lo
    return np.where(span > 1e-12, (x - lo) / np.where(span > 1e-12, span, 1.0), 0.5)


@dataclass
class SpatialMemory:
    """What a persona knows of the map: ``{sector: {arena: [objects]}}`` in the world ``world``.

    The original's tree is ``world → sector → arena → objects``; one persona lives in one world, so
    the world is kept once (``world``, learnt from the first full address) and every place reads
    ``world:sector:arena[:object]`` (:meth:`addresses`), as ``TownMap.address`` writes it.
    """

    tree: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    world: str = ""
    _legacy: bool = field(default=False, repr=False, compare=False)  # loaded from a checkpoint without "world"

    def learn(self, address: str) -> None:
        """Add a full address ``world:sector:arena[:object]`` or a place ``sector:arena`` to the tree.

        Three parts are ``world:sector:arena`` (the town map's address of a tile without an
        object), never ``sector:arena:object``: the world is never taken for a sector.
        """
        parts = [part.strip() for part in address.split(":")]
        if len(parts) >= 3:
            if not self.world:
                self.world = parts[0]
                if self._legacy:
                    self._fold_world_sector()
            parts = parts[1:]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            return
        arenas = self.tree.setdefault(parts[0], {})
        objects = arenas.setdefault(parts[1], [])
        if len(parts) > 2 and parts[2] and parts[2] not in objects:
            objects.append(parts[2])

    def _fold_world_sector(self) -> None:
        """Repair a tree of an earlier version, which stored ``world:sector:arena`` as sector ``world``."""
        branch = self.tree.pop(self.world, None)
        for sector, arenas in (branch or {}).items():
            for arena in arenas:
                self.tree.setdefault(sector, {}).setdefault(arena, [])

    def addresses(self) -> list[str]:
        """Every known place as ``world:sector:arena`` in the order learnt (``sector:arena`` while the world is
        unknown)."""
        prefix = f"{self.world}:" if self.world else ""
        return [f"{prefix}{sector}:{arena}" for sector, arenas in self.tree.items() for arena in arenas]

    def knows(self, place: str) -> bool:
        """Whether ``sector:arena`` is known."""
        sector, _, arena = place.partition(":")
        return arena in self.tree.get(sector, {})

    def describe(self) -> str:
        """One line per known place, ``world:sector:arena``, with the objects seen there in brackets."""
        objects = [o for arenas in self.tree.values() for o in arenas.values()]
        return "\n".join(
            address + (f"  [{', '.join(objs)}]" if objs else "")
            for address, objs in zip(self.addresses(), objects, strict=True)
        )

    def state_dict(self) -> dict[str, Any]:
        """The tree, and the order in which its places were learnt (``order``: checkpoints store dict
        keys sorted, and :meth:`describe` lists the places in the order learnt)."""
        return {
            "tree": {s: {a: list(o) for a, o in arenas.items()} for s, arenas in self.tree.items()},
            "order": [[s, list(arenas)] for s, arenas in self.tree.items()],
            "world": self.world,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tree = state["tree"]
        order = state.get("order") or [[s, list(arenas)] for s, arenas in tree.items()]  # older checkpoints
        self.tree = {s: {a: list(tree[s][a]) for a in arenas} for s, arenas in order}
        # Older checkpoints have no world: it is learnt again at the next step, and the tree repaired then.
        self.world = str(state.get("world") or "")
        self._legacy = "world" not in state
