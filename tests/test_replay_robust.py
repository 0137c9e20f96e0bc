"""The replay server under damaged runs and hostile clients: every error is an HTTP response,
HEAD has no body, idle and half-sent requests time out, and they hold no thread."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ga_sim.replay import ReplayServer
from ga_sim.simulation import Simulation


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    sim = Simulation.create(root, "good", ["env.max_agents=4"], start="2023-02-13 07:00", stride=10, mind="scripted")
    sim.run(4, progress=False)
    runs = root / "runs"

    def variant(name: str) -> Path:
        shutil.copytree(runs / "good", runs / name)
        return runs / name

    lines = (runs / "good" / "steps.jsonl").read_text().splitlines(keepends=True)
    (variant("badline") / "steps.jsonl").write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + lines[2])
    (variant("binary") / "steps.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    (variant("notrecord") / "steps.jsonl").write_text(lines[0] + "[1, 2, 3]\n")
    (variant("torn") / "steps.jsonl").write_text("".join(lines[:3]) + lines[3][:20])  # a kill mid-line: fine
    meta = json.loads((runs / "good" / "meta.json").read_text())
    (variant("oldmeta") / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    (variant("garbagemeta") / "meta.json").write_bytes(b"\x00\x9f{not json")
    (variant("listmeta") / "meta.json").write_text("[1, 2]")
    (variant("thinmeta") / "meta.json").write_text(json.dumps({"format": meta["format"], "name": "thinmeta"}))
    (variant("badpersonas") / "meta.json").write_text(json.dumps({**meta, "personas": 7}))
    return root


def _request(server: ReplayServer, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def _raw(server: ReplayServer, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


DAMAGED = {
    "badline": ["steps.jsonl", "line 2", "Fix:"],
    "binary": ["steps.jsonl", "line 1", "UTF-8"],
    "notrecord": ["steps.jsonl", "line 2", "not a step record"],
    "oldmeta": ["meta.json", "format", "start a new run"],
    "garbagemeta": ["meta.json", "unreadable"],
    "listmeta": ["meta.json", "not an object"],
    "thinmeta": ["meta.json", "start", "start a new run"],
    "badpersonas": ["meta.json", "malformed"],
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_run_gets_a_500_page_with_the_reason(results: Path, name: str) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        for path in (f"/data/{name}/movement.json", f"/?name={name}"):
            status, headers, body = _request(server, "GET", path)
            text = body.decode()
            assert status == 500 and headers["content-type"].startswith("text/html"), (path, status)
            assert int(headers["content-length"]) == len(body)
            for word in DAMAGED[name]:
                assert word in text, (name, word, text)
            assert "Traceback" not in text and str(results) + "/" not in text  # paths relative to results
        assert _request(server, "GET", "/healthz")[0] == 200  # the server lives on


def test_a_torn_last_line_is_not_an_error(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        status, _, body = _request(server, "GET", "/data/torn/movement.json")
    assert status == 200 and len(json.loads(body)["movement"]) == 3


def test_head_sends_headers_only(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        for path, code in (
            ("/", 200),
            ("/data/good/movement.json", 200),
            ("/nope", 404),
            ("/data/badline/movement.json", 500),
        ):
            reply = _raw(server, f"HEAD {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(f"HTTP/1.0 {code}".encode()), (path, head[:40])
            assert body == b"", path
            length = int(
                next(v for k, v in (h.split(b": ", 1) for h in head.split(b"\r\n")[1:]) if k == b"Content-Length")
            )
            get_status, _, get_body = _request(server, "GET", path)
            assert get_status == code and length == len(get_body) > 0


def test_other_errors_are_http_responses(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True) as server:
        assert _raw(server, b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.0 501")
        assert _raw(server, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.0 400")
        assert _raw(server, b"GET /" + b"a" * 70_000).startswith(b"HTTP/1.0 431")  # head too large


def test_a_half_sent_request_times_out_with_a_408(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True, timeout=0.5) as server:
        t0 = time.monotonic()
        reply = _raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        assert reply.startswith(b"HTTP/1.0 408") and time.monotonic() - t0 < 3
        with socket.create_connection(server.server_address[:2], timeout=10) as idle:  # says nothing at all
            assert idle.recv(100).startswith(b"HTTP/1.0 408")


def test_half_open_connections_hold_no_thread_and_the_page_is_still_served(results: Path) -> None:
    with ReplayServer(results, port=0, quiet=True, timeout=30, workers=2, max_connections=64) as server:
        assert _request(server, "GET", "/healthz")[0] == 200
        threads = threading.active_count()
        socks = []
        try:
            for _ in range(150):  # more than max_connections: the oldest half-open ones make room
                s = socket.create_connection(server.server_address[:2], timeout=10)
                s.sendall(b"GET /?name=good HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            time.sleep(0.3)
            assert threading.active_count() <= threads + 2  # at most the pool's threads, not one per socket
            t0 = time.monotonic()
            status, _, body = _request(server, "GET", "/")
            assert status == 200 and b"<canvas" in body and time.monotonic() - t0 < 2
            # The oldest connections were closed to make room, with a 503.
            assert socks[0].recv(100).startswith(b"HTTP/1.0 503")
        finally:
            for s in socks:
                s.close()


def test_a_connection_evicted_while_it_has_data_waiting_does_not_stop_the_server(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``select`` can report a new connection and, after it, data on the oldest half-open one; accepting
    the new one evicts the oldest (``max_connections``), whose event must then be skipped (it once raised
    KeyError and ended the accepting thread: every later request hung)."""
    import selectors

    class SlowSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
        """Lets events gather before the loop looks, and lists the listening socket's first (the kernel's
        order depends on what it reported before)."""

        listener: object = None

        def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            if self.listener is None:
                self.listener = fileobj
            return super().register(fileobj, events, data)

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            time.sleep(0.3)
            return sorted(super().select(timeout), key=lambda event: event[0].fileobj is not self.listener)

    monkeypatch.setattr("ga_sim.replay.selectors.DefaultSelector", SlowSelector)
    with ReplayServer(results, port=0, quiet=True, timeout=30, workers=2, max_connections=2) as server:
        address = server.server_address[:2]
        oldest = socket.create_connection(address, timeout=10)
        oldest.sendall(b"GET / HTTP/1.1\r\n")
        second = socket.create_connection(address, timeout=10)
        second.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.8)  # both accepted and read
        newcomer = socket.create_connection(address, timeout=10)  # accepted first: evicts `oldest`...
        oldest.sendall(b"Host: x\r\n")  # ...which has data waiting in the same select
        time.sleep(0.8)
        for s in (oldest, second, newcomer):
            s.close()
        assert server._thread is not None and server._thread.is_alive()
        status, _, body = _request(server, "GET", "/")
        assert status == 200 and b"<canvas" in body
