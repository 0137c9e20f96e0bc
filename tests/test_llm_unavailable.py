"""A dead, silent or misconfigured LLM endpoint never hangs a run or silently degrades it (issue 14).

Preflight before the first step, a per-step deadline for the step's calls, a circuit breaker that
checkpoints and stops the run (resumable), and step records that say which requests fell back.
All against real sockets on 127.0.0.1 (the loopback OpenAI-protocol server, or a bare socket).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.llm import LLMRequest, LLMUnavailable, make_backend
from agents.testing.loopback import LoopbackServer
from conf.schema import LLMConfig
from ga_sim.simulation import Simulation

ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    srv.close()


def _backend(base_url: str, **kw: object) -> object:
    cfg = LLMConfig(backend="openai", preset="loopback", base_url=base_url, cache=False, **kw)  # type: ignore[arg-type]
    return make_backend(cfg)


@pytest.mark.parametrize(
    ("url", "failure"),
    [
        ("ftp://127.0.0.1:8000/v1", "scheme 'ftp'"),
        ("http://127.0.0.1:99999/v1", "port"),
        ("notaurl", "scheme"),
    ],
)
def test_preflight_rejects_bad_urls_at_once(url: str, failure: str) -> None:
    llm = _backend("http://127.0.0.1:8000/v1")
    llm.inner.base_url = url  # type: ignore[attr-defined]  # past the config's own URL check (tests/test_bad_input.py)
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable, match=rf"{url}: llm model 'loopback': .*{failure}.*Fix: set llm.base_url"):
        llm.preflight()  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 1.0
    llm.close()  # type: ignore[attr-defined]


def test_preflight_closed_port_and_silent_server_fail_fast(silent_port: int) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/v1"
    llm = _backend(closed)
    with pytest.raises(LLMUnavailable, match=r"cannot connect.*Fix: start the server"):
        llm.preflight()  # type: ignore[attr-defined]
    silent = _backend(f"http://127.0.0.1:{silent_port}/v1")
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable, match=r"no answer within 2 s"):
        silent.preflight(timeout_s=2.0)  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 10.0


def test_preflight_bad_key_and_missing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GA_TEST_KEY", "wrong")
    with LoopbackServer(api_key="right") as server:
        llm = _backend(server.base_url, api_key_env="GA_TEST_KEY")
        with pytest.raises(LLMUnavailable, match=r"401: the API key was refused.*Fix: export GA_TEST_KEY="):
            llm.preflight()  # type: ignore[attr-defined]
        monkeypatch.setenv("GA_TEST_KEY", "right")
        llm.preflight()  # type: ignore[attr-defined]  # the right key passes

    class Vllm(BaseHTTPRequestHandler):  # serves one model and 404s others, as vLLM and Ollama do
        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "served-model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(404, {"error": {"message": "The model `x` does not exist."}})

        def _send(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Vllm)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        llm = _backend(f"http://127.0.0.1:{httpd.server_address[1]}/v1", model="missing-model")
        with pytest.raises(LLMUnavailable, match=r"does not serve this model \(it lists: served-model\)"):
            llm.preflight()  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_step_deadline_cancels_hung_calls(silent_port: int) -> None:
    llm = _backend(f"http://127.0.0.1:{silent_port}/v1", timeout_s=30.0, step_deadline_s=1.0, max_retries=0)
    requests = [LLMRequest(kind="decide", system="s", user=f"q{i}", choices=("move", "chat")) for i in range(5)]
    llm.begin_step()  # type: ignore[attr-defined]
    t0 = time.monotonic()
    answers = llm.complete_many(requests)  # type: ignore[attr-defined]
    elapsed = time.monotonic() - t0
    llm.end_step()  # type: ignore[attr-defined]
    assert elapsed < 5.0, elapsed
    assert all(a.fallback and (a.error or "").startswith("deadline") for a in answers)
    assert llm.usage.faults["deadline"] == 5  # type: ignore[attr-defined]
    llm.close()  # type: ignore[attr-defined]


def test_breaker_opens_after_repeated_connection_failures() -> None:
    port = _free_port()
    llm = _backend(f"http://127.0.0.1:{port}/v1", max_retries=0, breaker_failures=3, backoff_s=0.0)
    requests = [LLMRequest(kind="decide", system="s", user=f"q{i}", choices=("move", "chat")) for i in range(6)]
    answers = [llm.complete(r) for r in requests]  # type: ignore[attr-defined]
    assert all(a.fallback for a in answers)
    report = llm.usage.report()  # type: ignore[attr-defined]
    assert report["faults"]["connection"] == 3 and report["faults"]["unavailable"] == 3  # no calls once open
    assert llm.unavailable is not None  # type: ignore[attr-defined]
    assert f"127.0.0.1:{port}" in str(llm.unavailable)  # type: ignore[attr-defined]
    assert "--resume" in str(llm.unavailable)  # type: ignore[attr-defined]
    fallback = _backend(f"http://127.0.0.1:{port}/v1", max_retries=0, breaker_failures=3, on_unavailable="fallback")
    for r in requests:
        fallback.complete(r)  # type: ignore[attr-defined]
    assert fallback.unavailable is None  # type: ignore[attr-defined]  # opted in: the run goes on
    llm.close()  # type: ignore[attr-defined]
    fallback.close()  # type: ignore[attr-defined]


def _sim_overrides(base_url: str) -> list[str]:
    return [
        "env.max_agents=3",
        "llm=openai",
        "llm.preset=loopback",
        f"llm.base_url={base_url}",
        "llm.timeout_s=1",
        "llm.backoff_s=0.01",
        "llm.max_retries=1",
        "llm.breaker_failures=4",
        "llm.cache=false",
    ]


def _serve(port: int) -> subprocess.Popen[bytes]:
    """The loopback server in its own process (so that it can be killed like a real server)."""
    cmd = [sys.executable, "-m", "agents.testing.loopback", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    assert proc.stdout is not None
    assert b"serving" in proc.stdout.readline()
    return proc


def test_dead_server_mid_run_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    server = _serve(port)
    sim = Simulation.create(
        tmp_path,
        "dies",
        _sim_overrides(base_url),
        start="2023-02-13 07:00",
        stride=10,
        mind="generative",
        checkpoint_every=0,
    )
    sim.run(3, progress=False)
    server.kill()  # SIGKILL: open connections die with it
    server.wait()
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable, match=rf"127\.0\.0\.1:{port}.*failures in a row.*--resume"):
        sim.run(50, progress=False)
    assert time.monotonic() - t0 < 60
    stopped_at = sim.step_count
    assert 3 < stopped_at < 50
    assert max(s for s, _ in sim.store.checkpoints()) == stopped_at  # checkpointed where it stopped
    records = sim.store.steps()
    assert len(records) == stopped_at
    last = records[-1]["personas"]
    assert any(p["fallback"] and p["fallbacks"] for p in last.values())  # the record says so, and why
    assert any(":connection" in f or ":unavailable" in f for p in last.values() for f in p["fallbacks"])
    from ga_sim.compress import compress

    text = (compress(tmp_path, "dies") / "simulation.md").read_text()
    assert "**rule-based fallback**: on " in text and "persona-steps" in text  # the transcript says so
    sim.society.llm.close()  # type: ignore[union-attr]

    # Refused at the start of a new run: the preflight names the endpoint; nothing is created.
    with pytest.raises(LLMUnavailable, match=r"cannot connect"):
        Simulation.create(
            tmp_path, "never", _sim_overrides(base_url), start="2023-02-13 07:00", stride=10, mind="generative"
        )

    # The server is back: the run continues from its checkpoint and completes.
    server = _serve(port)
    try:
        sim = Simulation.resume(tmp_path, "dies", checkpoint_every=0)
        assert sim.step_count == stopped_at
        sim.run(53 - stopped_at, progress=False)
        assert sim.step_count == 53
        fresh = sim.store.steps()[stopped_at:]
        assert not any(p["fallback"] for r in fresh for p in r["personas"].values())
        sim.society.llm.close()  # type: ignore[union-attr]
    finally:
        server.kill()
        server.wait()


def test_server_gone_silent_mid_run_stops_after_one_step(tmp_path: Path) -> None:
    """SIGSTOP: the kernel still accepts connections, nobody answers (a hung server)."""
    port = _free_port()
    server = _serve(port)
    overrides = [*_sim_overrides(f"http://127.0.0.1:{port}/v1"), "llm.timeout_s=30", "llm.step_deadline_s=3"]
    overrides.remove("llm.breaker_failures=4")  # the default (8): the silent step alone must open it
    try:
        sim = Simulation.create(
            tmp_path, "hangs", overrides, start="2023-02-13 07:00", stride=10, mind="generative", checkpoint_every=0
        )
        sim.run(2, progress=False)
        server.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(LLMUnavailable, match=r"deadline"):
            sim.run(20, progress=False)
        elapsed = time.monotonic() - t0
        # One step cut at its deadline: the run stops in it, or (when that step asks nothing after the breaker
        # opened, as with few requests per step) at the next step's first request; nothing waits past the deadline.
        assert sim.step_count in (3, 4) and elapsed < 3 + 5, (sim.step_count, elapsed)
        assert max(s for s, _ in sim.store.checkpoints()) == sim.step_count
        sim.society.llm.close()  # type: ignore[union-attr]
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
