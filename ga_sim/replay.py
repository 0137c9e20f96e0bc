"""Replay runs in the browser: ``python -m scripts.replay`` then open ``http://127.0.0.1:5000/?name=RUN``.

A small stdlib web server that binds to **127.0.0.1** by default (``--host`` to change it, at
your own risk) and serves exactly three things:

* ``/`` (or ``/index.html``): the self-contained canvas page; ``?name=RUN&step=0&speed=2&zoom=0.8``
  as in the original Generative Agents (plus ``autoplay=0`` to start paused);
* ``/data/RUN/movement.json``: the run's compressed movement (``results/compressed/RUN``, made by
  :mod:`ga_sim.compress`; compressed on the fly from ``results/runs/RUN`` when missing);
* ``/healthz``: ``ok``.

``GET`` and ``HEAD`` (headers only); anything else is a 404 (501 for other methods). Every error
is an HTTP response: 400/403/404 pages for refused requests, a 500 page with a one-line reason for
a run that cannot be read (corrupt ``steps.jsonl``, an old or damaged ``meta.json``...; never a
traceback, which goes to the server's stderr only for unexpected errors).

Security: run names are validated (letters, digits, ``_ - .``; no ``..``, no slashes, after URL
decoding, so ``%2e%2e`` and ``%2f`` are refused too), the resolved file must lie inside the
results folder (a symlink that leads out is refused), absolute paths are never taken from the
request, and there is no directory listing. An unknown run gets a 404 page.

Robustness (slow or idle clients cannot hold the server): the thread of :meth:`serve_forever`
accepts connections and reads request heads itself, without blocking (a ``selectors`` loop), so a
connection that sends nothing, or half a request, costs a socket and a small buffer, not a
thread. A connection whose head is not complete within ``timeout`` seconds (5) gets a 408 and is
closed; a head larger than 64 KiB gets a 431. Only complete requests go to a fixed pool of
``workers`` threads (4), whose socket writes time out too. At most ``max_connections`` (256) are
open at once: beyond that the oldest connection still sending its head is closed (503) to make
room, so a flood of half-open connections cannot keep a real request out. One request per
connection (HTTP/1.0, no keep-alive), which is all the page needs.
"""

from __future__ import annotations

import html
import io
import json
import os
import selectors
import socket
import socketserver
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ga_sim.runstore import DEFAULT_RESULTS, RunError, RunStore, validate_name

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_WORKERS = 4
"""Threads that answer complete requests."""
DEFAULT_MAX_CONNECTIONS = 256
"""Connections open at once (being read, queued or answered)."""
DEFAULT_TIMEOUT = 5.0
"""Seconds a client has to send its request head, and (plus one per MB) to take the response."""
MAX_HEAD_BYTES = 64 * 1024
"""Largest request head (request line and headers) accepted."""
HTML = "text/html; charset=utf-8"


def page_html() -> bytes:
    """The replay page (``ga_sim/replay_static/index.html``)."""
    return (resources.files("ga_sim") / "replay_static" / "index.html").read_bytes()


class Refused(Exception):
    """A request for something outside what the server serves."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside ``root`` (resolved)."""
    try:
        path.resolve(strict=False).relative_to(root.resolve())
    except ValueError:
        return False
    return True


def movement_for(results: Path, raw_name: str) -> bytes:
    """``movement.json`` of a run, from the compressed folder or compressed on the fly.

    Raises:
        Refused: 400 for an invalid name, 403 for a path leading outside the results folder,
            404 for an unknown run.
        RunError: the run's files cannot be read (damaged, or of another version): a 500 page.
    """
    try:
        name = validate_name(raw_name, "name")
    except RunError as e:
        raise Refused(HTTPStatus.BAD_REQUEST, str(e)) from None
    compressed = results / "compressed" / name / "movement.json"
    run_dir = results / "runs" / name
    for candidate in (compressed, run_dir, run_dir / "meta.json", run_dir / "steps.jsonl"):
        if (candidate.exists() or candidate.is_symlink()) and not _inside(candidate, results):
            raise Refused(HTTPStatus.FORBIDDEN, f"run {name!r} leads outside the results folder")
    if compressed.is_file():
        return compressed.read_bytes()
    store = RunStore(results, name)
    if not store.exists():
        raise Refused(HTTPStatus.NOT_FOUND, f"no run named {name!r}")
    from ga_sim.compress import compress_run

    return json.dumps(compress_run(store), ensure_ascii=False, separators=(",", ":")).encode()


def _error_page(status: HTTPStatus, message: str, hint: str | None = None) -> bytes:
    if hint is None:
        hint = "Open <code>/?name=RUN</code> with the name of a run in the results folder."
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{status.value} {html.escape(status.phrase)}</title></head>"
        f"<body><h1>{status.value} {html.escape(status.phrase)}</h1><p>{html.escape(message)}</p>"
        f"<p>{hint}</p></body></html>"
    ).encode()


class _SocketWriter(io.BufferedIOBase):
    """``wfile`` of a handler: ``sendall``, whose timeout bounds the whole write."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes


class ReplayHandler(BaseHTTPRequestHandler):
    """Answers one request whose head the server has read (``request = (socket, head bytes)``)."""

    server: ReplayServer
    server_version = "ga-replay/1"
    default_request_version = "HTTP/1.0"  # a malformed request line gets a status line too (not HTTP/0.9)

    def setup(self) -> None:
        self.connection, head = self.request
        self.connection.settimeout(self.server.request_timeout)
        self.rfile = io.BytesIO(head)
        self.wfile = _SocketWriter(self.connection)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        try:
            status, ctype, body = self.route()
        except Refused as e:
            status, ctype, body = e.status, HTML, _error_page(e.status, str(e))
        except RunError as e:  # a run that cannot be read: its files are damaged or of another version
            self.log_error("cannot serve %s: %s", self.path, e)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            ctype, body = HTML, _error_page(status, self.server.public(str(e)), "The run cannot be replayed as it is.")
        except Exception as e:  # a bug: the details stay on the server's stderr
            print(f"ga-replay: error serving {self.path!r}:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            ctype = HTML
            body = _error_page(status, f"internal error ({type(e).__name__}); the server's log has the details", "")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.send_header(
            "Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
        )
        self.end_headers()
        if send_body:
            # A slow reader gets the timeout plus one second per MB, then the connection is closed.
            self.connection.settimeout(self.server.request_timeout + len(body) / 1e6)
            self.wfile.write(body)

    def route(self) -> tuple[HTTPStatus, str, bytes]:
        """``(status, content type, body)`` of the request, or :class:`Refused`."""
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            query = parse_qs(url.query)
            if "name" in query:
                name = query["name"][0]
                movement_for(self.server.results, name)  # 400 / 403 / 404 / 500 page for a bad or unknown run
            return HTTPStatus.OK, HTML, page_html()
        if path == "/healthz":
            return HTTPStatus.OK, "text/plain; charset=utf-8", b"ok"
        parts = path.split("/")
        # /data/<name>/movement.json: the name is one URL-decoded segment, validated.
        if len(parts) == 4 and parts[0] == "" and parts[1] == "data" and parts[3] == "movement.json":
            return HTTPStatus.OK, "application/json", movement_for(self.server.results, unquote(parts[2]))
        raise Refused(HTTPStatus.NOT_FOUND, f"nothing at {unquote(path)!r}")

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


@dataclass
class _Pending:
    """A connection whose request head is still being read."""

    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)


def _head_complete(head: bytearray) -> bool:
    return b"\r\n\r\n" in head or b"\n\n" in head


def _reply_and_close(conn: socket.socket, status: HTTPStatus) -> None:
    """Best-effort short answer from the accepting thread (never blocks), then close."""
    body = f"{status.value} {status.phrase}\n".encode()
    head = (
        f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    try:
        conn.setblocking(False)
        conn.send(head.encode() + body)
    except OSError:
        pass
    conn.close()


class ReplayServer(socketserver.TCPServer):
    """The replay web server (``port=0`` picks a free port; see :attr:`url`).

    Run it with :meth:`serve_forever` (stop with :meth:`shutdown` from another thread, then
    :meth:`server_close`), or in a background thread with :meth:`start` / :meth:`stop` or ``with``.

    Args:
        results: the results folder.
        host: interface to bind (loopback by default).
        port: TCP port (0 = any free one).
        quiet: no request log on stderr.
        workers: threads answering complete requests.
        max_connections: connections open at once; beyond, the oldest one still sending its request
            head is closed (503).
        timeout: seconds a client has to send its request head (408 after), and, plus one per MB,
            to take the response.
    """

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        results: str | Path = DEFAULT_RESULTS,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        quiet: bool = False,
        *,
        workers: int = DEFAULT_WORKERS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.results = Path(results)
        self.quiet = quiet
        self.request_timeout = timeout
        self.max_connections = max(1, max_connections)
        # Before binding: a failed bind calls server_close, which shuts the pool down (no thread yet).
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ga-replay")
        super().__init__((host, port), ReplayHandler)
        self.socket.setblocking(False)
        self._lock = threading.Lock()
        self._in_service = 0  # connections handed to the pool and not finished
        self._stop_request = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:5000``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def public(self, message: str) -> str:
        """An error message for the client: paths relative to the results folder."""
        return message.replace(str(self.results) + os.sep, "")

    # -- the accepting and reading loop ------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.25) -> None:
        """Accept connections, read their request heads, and hand complete requests to the workers,
        until :meth:`shutdown`."""
        self._stopped.clear()
        pending: dict[socket.socket, _Pending] = {}  # oldest first
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.socket, selectors.EVENT_READ)
                while not self._stop_request:
                    for key, _ in sel.select(min(poll_interval, self.request_timeout)):
                        if key.fileobj is self.socket:
                            self._accept(sel, pending)
                        else:
                            self._receive(sel, pending, key.fileobj)  # type: ignore[arg-type]
                    now = time.monotonic()
                    while pending:
                        conn, p = next(iter(pending.items()))
                        if p.deadline > now:
                            break
                        self._drop(sel, pending, conn, HTTPStatus.REQUEST_TIMEOUT)
        finally:
            for conn in list(pending):
                conn.close()
            self._stop_request = False
            self._stopped.set()

    def _drop(
        self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending], conn: socket.socket, status: Any
    ) -> None:
        sel.unregister(conn)
        del pending[conn]
        if status is None:
            conn.close()
        else:
            _reply_and_close(conn, status)

    def _accept(self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending]) -> None:
        while True:
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: make room, retry at the next event
                if pending:
                    self._drop(sel, pending, next(iter(pending)), HTTPStatus.SERVICE_UNAVAILABLE)
                return
            with self._lock:
                busy = self._in_service
            if len(pending) + busy >= self.max_connections:
                if not pending:  # every slot is a complete request being answered
                    _reply_and_close(conn, HTTPStatus.SERVICE_UNAVAILABLE)
                    continue
                self._drop(sel, pending, next(iter(pending)), HTTPStatus.SERVICE_UNAVAILABLE)
            conn.setblocking(False)
            pending[conn] = _Pending(address, time.monotonic() + self.request_timeout)
            sel.register(conn, selectors.EVENT_READ)

    def _receive(
        self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending], conn: socket.socket
    ) -> None:
        p = pending[conn]
        try:
            data = conn.recv(16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or reset) the connection
            self._drop(sel, pending, conn, None)
            return
        p.head += data
        if _head_complete(p.head):
            sel.unregister(conn)
            del pending[conn]
            with self._lock:
                self._in_service += 1
            try:
                self._pool.submit(self._serve, conn, p.address, bytes(p.head))
            except RuntimeError:  # the pool is shut down (server_close)
                with self._lock:
                    self._in_service -= 1
                _reply_and_close(conn, HTTPStatus.SERVICE_UNAVAILABLE)
        elif len(p.head) > MAX_HEAD_BYTES:
            self._drop(sel, pending, conn, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def _serve(self, conn: socket.socket, address: Any, head: bytes) -> None:
        """A worker: answer one complete request, then close the connection."""
        try:
            conn.setblocking(True)
            self.finish_request((conn, head), address)  # type: ignore[arg-type]
        except Exception:
            self.handle_error(conn, address)
        finally:
            self.shutdown_request(conn)
            with self._lock:
                self._in_service -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection failed while being answered (the client left, or was too slow)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # timeout, reset, broken pipe: the client's doing
            if not self.quiet:
                print(f"ga-replay: {client_address[0]}: connection dropped ({type(exc).__name__})", file=sys.stderr)
            return
        print(f"ga-replay: error answering {client_address}:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)

    def handle_request(self) -> None:
        """Refused on purpose: request heads are read by :meth:`serve_forever`'s own loop (no thread per
        connection), which ``socketserver``'s one-request API would bypass."""
        raise RuntimeError("ReplayServer: handle_request: unsupported. Fix: use serve_forever() or start()")

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (called from another thread) and wait until it has returned."""
        self._stop_request = True
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket; requests being answered finish in their threads."""
        super().server_close()
        self._pool.shutdown(wait=False)

    # -- in the background ----------------------------------------------------------------------------
    def start(self) -> ReplayServer:
        """Serve in a background thread (for tests and notebooks); stop with :meth:`stop`."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="ga-replay-accept")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
