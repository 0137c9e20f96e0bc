"""A small real HTTP server speaking the OpenAI protocol on loopback, with latency and fault injection.

It serves ``POST /v1/chat/completions`` (``response_format`` ``json_schema`` or ``json_object``
with a ``schema`` as llama.cpp's server accepts, ``logprobs``/``top_logprobs``, ``max_tokens``),
``POST /v1/embeddings`` and ``GET /v1/models``. Answers are deterministic, derived from a hash of
the model and the messages, and respect the requested schema: an ``enum`` gets one of its values
(the argmax of hashed logits, which ``top_logprobs`` then report), strings get words, numbers stay
in their bounds. It is therefore a real server for the real ``openai`` client, not a mock of it;
it is no language model either: its answers carry no meaning.

Faults are injected into chat completions at ``fault_rate``, drawn by ``fault_weights`` among the
kinds that apply to the request (:data:`FAULTS`): ``timeout`` (sleep ``hang_s``, past the client's
timeout), ``http_500``/``http_429``/``http_503``, ``malformed_json`` (a cut JSON answer, or a cut
HTTP body for free-text requests), ``empty`` content, ``bad_choice`` (a value outside the schema's
``enum``), ``too_long`` (far past ``max_tokens``, cut by the length limit) and ``drop`` (the
connection closes without an answer). :meth:`LoopbackServer.stats` counts what was served and
injected.

The server is threaded (one thread per connection, a deep listen backlog), so concurrent requests
are served concurrently. It binds 127.0.0.1 by default; port 0 picks a free port.

Use it as a context manager in tests::

    with LoopbackServer(latency_s=0.05, fault_rate=0.3) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")

or from the shell: ``python -m agents.testing.loopback --port 8000 --latency 0.2 --fault-rate 0.3``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("agents.testing.loopback")

FAULTS: tuple[str, ...] = (
    "timeout",
    "http_500",
    "http_429",
    "http_503",
    "malformed_json",
    "empty",
    "bad_choice",
    "too_long",
    "drop",
)
"""Fault kinds the server can inject."""

_WORDS = (
    "the town square hums with neighbours trading news about the gallery while the lab lights stay on "
    "late and the cafe smells of bread someone plans a walk to the park to talk about the exhibition"
).split()


def _digest(*parts: Any) -> bytes:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).digest()


def _logit(seed: bytes, value: str) -> float:
    """A deterministic pseudo-logit in about [-3, 3] for one enum value."""
    return (int.from_bytes(_digest(seed.hex(), value)[:4], "big") / 2**32) * 6.0 - 3.0


class _Answer:
    """Builds a deterministic answer that matches a JSON schema."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.enum_path: str | None = None  # the first enum value produced (its logprobs are reported)
        self.enum_logits: dict[str, float] = {}
        self.enum_json = ""  # that value as it appears in the answer's JSON (``3`` or ``"chat"``)

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(max(1, n)))

    def instance(self, schema: Mapping[str, Any], path: str = "") -> Any:
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            values = [str(v) for v in schema["enum"]]
            logits = {v: _logit(self.seed, f"{path}:{v}") for v in values}
            choice = max(values, key=lambda v: logits[v])
            value = next(v for v in schema["enum"] if str(v) == choice)
            if self.enum_path is None:
                self.enum_path, self.enum_logits, self.enum_json = path, logits, json.dumps(value)
            return value
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind == "object":
            props = schema.get("properties", {})
            return {k: self.instance(props[k] if k in props else {}, f"{path}/{k}") for k in props}
        if kind == "array":
            low = int(schema.get("minItems", 1))
            high = max(low, int(schema.get("maxItems", low + 2)))
            return [self.instance(schema.get("items", {}), f"{path}/{i}") for i in range(self.rng.randint(low, high))]
        if kind == "integer":
            low = math.ceil(schema.get("minimum", 0))
            return self.rng.randint(low, max(low, math.floor(schema.get("maximum", low + 9))))
        if kind == "number":
            lo = float(schema.get("minimum", 0.0))
            return round(self.rng.uniform(lo, float(schema.get("maximum", lo + 1.0))), 3)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        text = self.words(self.rng.randint(2, 6))
        return text[: int(schema["maxLength"])] if "maxLength" in schema else text


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() must not wait for handler threads: one may sit on a client's keep-alive
    # connection until the client closes it (seen in CI: a Ctrl-C'd server hung for 10 s+).
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True
    owner: LoopbackServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms Nagle stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
            self.close_connection = True

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        headers = {"Retry-After": "0"} if status == 429 else None
        self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error(400, "the request body is not JSON")
            return None
        if not isinstance(body, dict):
            self._error(400, "the request body is not a JSON object")
            return None
        return body

    def _authorised(self) -> bool:
        key = self.server.owner.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "invalid API key", "authentication_error")
        return False

    # --- routes -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            if self._authorised():
                owner._count("models")
                models = [owner.model, owner.embed_model]
                self._send(
                    200,
                    {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "loopback"} for m in models]},
                )
            return
        self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._error(404, f"no route {self.path}")
            return
        body = self._body()
        if body is None or not self._authorised():
            return
        owner = self.server.owner
        owner._enter()
        try:
            if path.endswith("embeddings"):
                self._embeddings(body)
            else:
                self._chat(body)
        finally:
            owner._leave()

    def _embeddings(self, body: dict[str, Any]) -> None:
        owner = self.server.owner
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self._error(400, "input must be a string or a list of strings")
            return
        owner._sleep(owner.latency_s)
        owner._count("embeddings")
        data = []
        for i, text in enumerate(texts):
            rng = random.Random(_digest("embed", text))
            vec = [rng.gauss(0.0, 1.0) for _ in range(owner.embed_dim)]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            data.append({"object": "embedding", "index": i, "embedding": [v / norm for v in vec]})
        tokens = sum(len(t.split()) for t in texts)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", owner.embed_model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _chat(self, body: dict[str, Any]) -> None:
        owner = self.server.owner
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "messages must be a non-empty list")
            return
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
        rf = body.get("response_format") or {}
        schema: Mapping[str, Any] | None = None
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema") or {"type": "object"}
        elif rf.get("type") == "json_object":
            schema = rf.get("schema") or {"type": "object", "properties": {"answer": {"type": "string"}}}
        seed = _digest(body.get("model"), messages, body.get("seed"))
        answer = _Answer(seed)
        if schema is None:
            content = f"Loopback answer: {answer.words(min(12, max_tokens))}."
        else:
            content = json.dumps(answer.instance(schema))
        finish = "stop"
        fault = owner._draw_fault(has_enum=answer.enum_path is not None)
        owner._sleep(owner.latency_s)
        if fault == "timeout":
            owner._sleep(owner.hang_s)
        elif fault in ("http_500", "http_429", "http_503"):
            status = int(fault[-3:])
            self._error(status, f"injected {fault}", "rate_limit_error" if status == 429 else "server_error")
            return
        elif fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        elif fault == "malformed_json":
            if schema is None:  # the HTTP body itself is cut
                self._send(200, b'{"id": "chatcmpl-loopback", "object": "chat.completion", "choices": [{"ind')
                return
            content = content[: max(1, len(content) // 2)]
        elif fault == "empty":
            content = ""
        elif fault == "bad_choice":
            # the first enum value (an object's field ``: 3`` or an array's item ``[3``) becomes one outside the enum
            content = re.sub(
                r"(: |\[)" + re.escape(answer.enum_json), lambda m: m.group(1) + '"Dance"', content, count=1
            )
            answer.enum_logits = {"Dance": 0.0}
        elif fault == "too_long":
            content = content + " " + " ".join(["filler"] * (3 * max_tokens + 30))
            finish = "length"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": _token_logprobs(content, answer, int(body.get("top_logprobs") or 0))}
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
        completion_tokens = len(content) // 4 + 1
        self._send(
            200,
            {
                "id": "chatcmpl-" + seed.hex()[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", owner.model),
                "system_fingerprint": "loopback",
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def _token_logprobs(content: str, answer: _Answer, top: int) -> list[dict[str, Any]]:
    """Token logprobs in OpenAI's shape: the first enum value is one token whose alternatives are the enum."""

    def entry(token: str, logprob: float, alts: list[tuple[str, float]]) -> dict[str, Any]:
        return {
            "token": token,
            "logprob": logprob,
            "bytes": list(token.encode("utf-8")),
            "top_logprobs": [
                {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in alts[: max(top, 0)]
            ],
        }

    if not content:
        return []
    if answer.enum_logits:
        logits = answer.enum_logits
        m = max(logits.values())
        lse = m + math.log(sum(math.exp(v - m) for v in logits.values()))
        ranked = sorted(((v, lg - lse) for v, lg in logits.items()), key=lambda x: -x[1])
        chosen = ranked[0][0]
        at = content.find(json.dumps(chosen))
        if at >= 0:
            start, end = at + 1, at + 1 + len(chosen)
            return [
                entry(content[:start], 0.0, [(content[:start], 0.0)]),
                entry(chosen, ranked[0][1], ranked),
                entry(content[end:], 0.0, [(content[end:], 0.0)]),
            ]
    return [entry(tok, -0.1, [(tok, -0.1)]) for tok in content.split(" ")]


class LoopbackServer:
    """The server (see the module docstring).

    Args:
        host: interface to bind (127.0.0.1 by default: never exposed).
        port: TCP port, 0 = a free one (read it back from ``port`` / ``base_url``).
        model: the chat model's name it reports.
        latency_s: delay of every answer, in seconds.
        fault_rate: probability that a chat completion gets a fault.
        fault_weights: relative weight of each kind in :data:`FAULTS` (missing kinds weigh 0;
            None = all equal).
        hang_s: how long a ``timeout`` fault sleeps (set it past the client's timeout).
        seed: seed of the fault draws.
        embed_dim: size of the embeddings.
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = "loopback",
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        fault_weights: Mapping[str, float] | None = None,
        hang_s: float = 30.0,
        seed: int = 0,
        embed_dim: int = 64,
        api_key: str | None = None,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"loopback: fault_rate: {fault_rate} is not in [0, 1]. Fix: e.g. 0.3")
        weights = dict.fromkeys(FAULTS, 1.0) if fault_weights is None else dict(fault_weights)
        unknown = set(weights) - set(FAULTS)
        if unknown:
            raise ValueError(f"loopback: fault_weights: unknown kinds {sorted(unknown)}. Fix: use {', '.join(FAULTS)}")
        if latency_s < 0 or hang_s < 0 or any(w < 0 for w in weights.values()):
            raise ValueError("loopback: latency_s, hang_s and fault weights must be >= 0")
        self.host, self.model, self.embed_model = host, model, f"{model}-embed"
        self.latency_s, self.fault_rate, self.hang_s = latency_s, fault_rate, hang_s
        self.fault_weights = weights
        self.embed_dim, self.api_key = embed_dim, api_key
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.served: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LoopbackServer({self.base_url!r}, latency_s={self.latency_s}, fault_rate={self.fault_rate})"

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LoopbackServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close the socket."""
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """Requests received (by endpoint), faults injected (by kind), and the most handled at once."""
        with self._lock:
            return {
                "served": dict(self.served),
                "injected": dict(self.injected),
                "faults": sum(self.injected.values()),
                "max_in_flight": self.max_in_flight,
            }

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # --- used by the handler ----------------------------------------------------------------
    def _count(self, endpoint: str) -> None:
        with self._lock:
            self.served[endpoint] += 1

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _draw_fault(self, *, has_enum: bool) -> str | None:
        with self._lock:
            self.served["chat"] += 1
            if self.fault_rate <= 0 or self._rng.random() >= self.fault_rate:
                return None
            kinds = [k for k, w in self.fault_weights.items() if w > 0 and (has_enum or k != "bad_choice")]
            if not kinds:
                return None
            kind = self._rng.choices(kinds, weights=[self.fault_weights[k] for k in kinds])[0]
            self.injected[kind] += 1
            return kind


def _parse_weights(text: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        weights[name.strip()] = float(value or 1.0)
    return weights


def main(argv: list[str] | None = None) -> None:
    """``python -m agents.testing.loopback``: serve until Ctrl-C, then print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    parser.add_argument("--model", default="loopback")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault per chat completion")
    parser.add_argument("--faults", default="", help=f"weights, e.g. timeout=1,http_500=2 (kinds: {', '.join(FAULTS)})")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a timeout fault sleeps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (else 401)")
    args = parser.parse_args(argv)
    server = LoopbackServer(
        args.host,
        args.port,
        model=args.model,
        latency_s=args.latency,
        fault_rate=args.fault_rate,
        fault_weights=_parse_weights(args.faults) or None,
        hang_s=args.hang,
        seed=args.seed,
        api_key=args.api_key,
    )
    print(f"serving the OpenAI protocol on {server.base_url} (model {server.model!r}); Ctrl-C to stop", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._stop.set()
        server._httpd.server_close()
        print(json.dumps(server.stats()))


if __name__ == "__main__":
    main()
