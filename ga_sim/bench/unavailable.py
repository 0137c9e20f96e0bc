"""A dead, silent or misconfigured LLM endpoint, measured (issue 14): how fast a run learns of it.

The command line is ``scripts/bench_unavailable.py`` (prints one JSON line); :func:`run` gives its
report. Every case uses the default settings (``llm.timeout_s=30``, ``llm.step_deadline_s=45``,
``llm.breaker_failures=8``, ``llm.on_unavailable=stop``) against real sockets on 127.0.0.1: the
loopback OpenAI-protocol server (``agents.testing.loopback``) in its own process, killed
(SIGKILL) or frozen (SIGSTOP: the kernel still accepts connections, nobody answers).

* ``preflight``: seconds until a new run fails, for a closed port, a silent server, a refused key
  and a missing model (each must fail within 10 s, naming the endpoint and the fix);
* ``dead_mid_run`` / ``silent_mid_run``: a generative run of ``personas`` personas whose server
  dies (or hangs) after 3 steps: seconds until the run stops, the step it checkpointed, whether
  ``--resume`` completes the run once the server is back.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents.llm import LLMUnavailable, make_backend
from conf.schema import LLMConfig
from ga_sim.simulation import Simulation

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "agents.testing.loopback", "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def _preflight_seconds(base_url: str, **kw: Any) -> dict[str, Any]:
    llm = make_backend(LLMConfig(backend="openai", preset="loopback", base_url=base_url, cache=False, **kw))
    t0 = time.monotonic()
    try:
        llm.preflight()
        out: dict[str, Any] = {"failed": False}
    except LLMUnavailable as e:
        out = {"failed": True, "message": str(e)}
    out["seconds"] = round(time.monotonic() - t0, 2)
    llm.close()
    return out


def _preflight_cases() -> dict[str, Any]:
    import os

    cases: dict[str, Any] = {"closed_port": _preflight_seconds(f"http://127.0.0.1:{_free_port()}/v1")}
    port = _free_port()
    server = _serve(port, "--api-key", "right")
    try:
        os.environ["GA_BENCH_KEY"] = "wrong"
        cases["refused_key"] = _preflight_seconds(f"http://127.0.0.1:{port}/v1", api_key_env="GA_BENCH_KEY")
        server.send_signal(signal.SIGSTOP)
        cases["silent_server"] = _preflight_seconds(f"http://127.0.0.1:{port}/v1")
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
        os.environ.pop("GA_BENCH_KEY", None)
    return cases


def _mid_run(how: str, personas: int, total: int) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    overrides = [f"env.max_agents={personas}", "llm=openai", "llm.preset=loopback", f"llm.base_url={url}"]
    with tempfile.TemporaryDirectory() as tmp:
        server = _serve(port)
        sim = Simulation.create(
            Path(tmp), "r", overrides, start="2023-02-13 07:00", stride=10, mind="generative", checkpoint_every=10
        )
        sim.run(3, progress=False)
        server.send_signal(signal.SIGKILL if how == "dead" else signal.SIGSTOP)
        t0 = time.monotonic()
        out: dict[str, Any] = {"personas": personas}
        try:
            sim.run(total - 3, progress=False)
            out["stopped"] = False
        except LLMUnavailable as e:
            out.update(stopped=True, message=str(e))
        out["seconds_to_stop"] = round(time.monotonic() - t0, 1)
        out["checkpointed_step"] = max(s for s, _ in sim.store.checkpoints())
        out["fallbacks"] = int(sim.society.llm.usage.fallbacks) if sim.society.llm is not None else 0
        if sim.society.llm is not None:
            sim.society.llm.close()
        if how == "silent":
            server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
        server = _serve(port)
        try:
            resumed = Simulation.resume(Path(tmp), "r", checkpoint_every=10)
            resumed.run(total - resumed.step_count, progress=False)
            out["resumed_to"] = resumed.step_count
            if resumed.society.llm is not None:
                resumed.society.llm.close()
        finally:
            server.kill()
            server.wait()
    return out


def run(personas: int = 10, total: int = 12) -> dict[str, Any]:
    """The report (see the module docstring)."""
    return {
        "preflight": _preflight_cases(),
        "dead_mid_run": _mid_run("dead", personas, total),
        "silent_mid_run": _mid_run("silent", personas, total),
    }
