"""Replay runs in the browser: ``python -m scripts.replay`` then open ``http://127.0.0.1:5000/?name=RUN``.

A small stdlib web server that binds to **127.0.0.1** by default (``--host`` to change it, at
your own risk) and serves exactly five things:

* ``/`` (or ``/index.html``): the self-contained canvas page; ``?name=RUN&step=0&speed=2&zoom=0.8``
  as in the original Generative Agents (plus ``autoplay=0`` to start paused, ``follow=1`` to follow a
  running simulation: then the run may not exist yet);
* ``/data/RUN/movement.json``: the run's compressed movement (``results/compressed/RUN``, made by
  :mod:`ga_sim.compress`; compressed on the fly from ``results/runs/RUN`` when missing);
* ``/api/steps?name=RUN&after=N``: the steps of a run after its first ``N``, read from
  ``results/runs/RUN/steps.jsonl`` as ``ga-simulate`` appends them (see :func:`live_steps`); the
  page polls it with ``/?name=RUN&follow=1`` to follow a running simulation;
* ``/data/RUN/diffusion/FILE``: the run's diffusion figures (``awareness.png``, ``cascades.png``, ``degree.png``,
  ``diffusion.json``; made by ``ga-compress``, :mod:`ga_sim.diffusion`), shown in the page's Diffusion panel;
* ``/healthz``: ``ok``.

Following a run (``follow=1``): the page asks ``/api/steps`` about once a second for the steps after
the last one it has, so it works the same before the run exists (``exists: false``), while its
``steps.jsonl`` is empty, while it grows, after it has finished, and when a ``--resume`` rewrites
it (a shorter file makes the page drop the steps it no longer has). Only complete lines are
served: a line whose newline is not written yet is not a step. The server keeps the byte offsets of
each followed file's complete lines (:class:`StepIndex`), so a poll reads only the new bytes and the
steps asked for, not the whole file.

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

from ga_sim.compress import FIELDS
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
JSON = "application/json"
LIVE_LIMIT = 500
"""Most steps one ``/api/steps`` answer carries (the page asks again at once for the rest)."""


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


def checked_name(results: Path, raw_name: str) -> str:
    """A run name from a request, validated, whose files (if any) lie inside the results folder.

    Raises:
        Refused: 400 for an invalid name, 403 for a path leading outside the results folder.
    """
    try:
        name = validate_name(raw_name, "name")
    except RunError as e:
        raise Refused(HTTPStatus.BAD_REQUEST, str(e)) from None
    run_dir = results / "runs" / name
    compressed = results / "compressed" / name / "movement.json"
    for candidate in (compressed, run_dir, run_dir / "meta.json", run_dir / "steps.jsonl"):
        if (candidate.exists() or candidate.is_symlink()) and not _inside(candidate, results):
            raise Refused(HTTPStatus.FORBIDDEN, f"run {name!r} leads outside the results folder")
    return name


def movement_for(results: Path, raw_name: str) -> bytes:
    """``movement.json`` of a run, from the compressed folder or compressed on the fly.

    Raises:
        Refused: 400 for an invalid name, 403 for a path leading outside the results folder,
            404 for an unknown run.
        RunError: the run's files cannot be read (damaged, or of another version): a 500 page.
    """
    name = checked_name(results, raw_name)
    compressed = results / "compressed" / name / "movement.json"
    if compressed.is_file():
        return compressed.read_bytes()
    store = RunStore(results, name)
    if not store.exists():
        raise Refused(HTTPStatus.NOT_FOUND, f"no run named {name!r}")
    from ga_sim.compress import compress_run

    return json.dumps(compress_run(store), ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class _Lines:
    """Where the complete lines of one ``steps.jsonl`` (one inode) end."""

    device: int
    inode: int
    ends: list[int] = field(default_factory=list)  # byte offset just past each complete line's newline

    @property
    def end(self) -> int:
        return self.ends[-1] if self.ends else 0


class StepIndex:
    """Byte offsets of the complete lines of the ``steps.jsonl`` files being followed.

    ``ga-simulate`` only appends to ``steps.jsonl`` (fsync after each batch), and rewrites it only
    atomically (a new inode: ``--resume`` keeps the records of its checkpoint). So the index of a
    file grows by scanning the bytes added since the last read, and starts afresh when the file is
    another inode or shorter than what was indexed. A last line without its newline is not
    indexed: it is being written (or was cut by a kill) and is never served.

    Args:
        capacity: files remembered (the least recently read is forgotten first).
    """

    CHUNK = 1 << 20

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._files: dict[str, _Lines] = {}

    def read(self, path: Path, after: int, limit: int) -> tuple[int, list[bytes]]:
        """``(complete lines, lines after+1 .. after+limit)`` of the file (``(0, [])`` if it is missing)."""
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return 0, []
        with f, self._lock:
            st = os.fstat(f.fileno())  # the file opened, even if a rewrite replaces the path meanwhile
            key = str(path)
            lines = self._files.pop(key, None)
            if lines is None or (lines.device, lines.inode) != (st.st_dev, st.st_ino) or st.st_size < lines.end:
                lines = _Lines(st.st_dev, st.st_ino)
            self._files[key] = lines  # now the most recently read
            while len(self._files) > self.capacity:
                del self._files[next(iter(self._files))]
            pos = lines.end  # a partial last line is scanned again, from its start
            f.seek(pos)
            while pos < st.st_size:
                chunk = f.read(min(self.CHUNK, st.st_size - pos))
                if not chunk:
                    break
                k = chunk.find(b"\n")
                while k >= 0:
                    lines.ends.append(pos + k + 1)
                    k = chunk.find(b"\n", k + 1)
                pos += len(chunk)
            total = len(lines.ends)
            stop = min(total, after + limit)
            if after >= stop:
                return total, []
            start = lines.ends[after - 1] if after else 0
            f.seek(start)
            data = f.read(lines.ends[stop - 1] - start)
        return total, data.split(b"\n")[:-1]  # each line ends with its newline


def _step_entry(record: Any, previous: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """A step as in ``movement.json``: the fields that changed since ``previous`` (all if None), and the
    objects in use with their tiles (``objects``, ``object_tiles``; absent when every object is idle)."""
    personas: dict[str, Any] = {}
    for name, p in record["personas"].items():
        now = {f: p.get(f) for f in FIELDS}
        before = previous.get(name, {}) if previous is not None else {}
        changed = {f: v for f, v in now.items() if previous is None or v != before.get(f)}
        if changed:
            personas[name] = changed
    entry = {"step": record["step"], "time": record["time"], "personas": personas}
    if record.get("objects"):  # a policy mind's records have no objects
        entry["objects"] = dict(record["objects"])
        entry["object_tiles"] = dict(record["object_tiles"])
    return entry


def live_head(store: RunStore) -> dict[str, Any]:
    """What the page needs before the first step: ``meta`` (name, start, stride, mind, personas,
    groups), ``map`` and ``initial`` positions, as in ``movement.json``.

    Raises:
        RunError: ``meta.json`` is unreadable, damaged or of another version.
    """
    meta = store.meta()
    try:
        return {
            "meta": {k: meta[k] for k in ("name", "start", "stride", "mind", "personas", "groups")},
            "map": meta["map"],
            "initial": meta["initial"],
        }
    except KeyError as e:
        raise RunError(
            store.meta_path,
            str(e.args[0]),
            "missing: written by another version, or damaged",
            "restore meta.json from a backup, or start a new run",
        ) from None


def live_steps(results: Path, raw_name: str, after: int, index: StepIndex, limit: int = LIVE_LIMIT) -> dict[str, Any]:
    """The answer to ``/api/steps?name=RUN&after=N``: the run's steps after its first ``after``.

    Returns:
        ``{"name", "exists", "after", "total", "age", "steps"}`` and, when ``after`` is 0 and the run
        exists, ``"head"`` (:func:`live_head`). ``exists`` is false until ``ga-simulate`` has
        created the run (then ``total`` is 0). ``total`` counts the complete lines of
        ``steps.jsonl``; if it is below ``after`` the file was rewritten shorter (a ``--resume``)
        and the client should drop its steps beyond ``total``. ``steps`` holds at most ``limit``
        entries in ``movement.json``'s format; the first one has every field of every persona, the
        others only what changed. ``age``: seconds since the run's files were last written.

    Raises:
        Refused: 400 for an invalid name, 403 for a path leading outside the results folder.
        RunError: a complete line of ``steps.jsonl`` that is not a step record, or a damaged
            ``meta.json`` (a 500 answer naming the file, the line and the fix).
    """
    store = RunStore(results, checked_name(results, raw_name))
    answer: dict[str, Any] = {"name": store.name, "exists": store.exists(), "after": after, "total": 0, "steps": []}
    if not answer["exists"]:
        return answer
    if after == 0:
        answer["head"] = live_head(store)
    total, lines = index.read(store.steps_path, after, limit)
    previous: dict[str, dict[str, Any]] | None = None
    for number, line in enumerate(lines, after + 1):
        try:
            record = json.loads(line)
            entry = _step_entry(record, previous)
        except json.JSONDecodeError as e:
            raise store.line_error(number, f"not a JSON record ({e.msg} at character {e.pos + 1})") from None
        except ValueError as e:  # UnicodeDecodeError
            raise store.line_error(number, f"not UTF-8 text ({e})") from None
        except (KeyError, TypeError, AttributeError) as e:
            raise store.line_error(number, f"not a step record of this run ({type(e).__name__}: {e})") from None
        previous = {n: {f: p.get(f) for f in FIELDS} for n, p in record["personas"].items()}
        answer["steps"].append(entry)
    written = [p.stat().st_mtime for p in (store.meta_path, store.steps_path) if p.exists()]
    answer["total"] = total
    answer["age"] = round(max(0.0, time.time() - max(written, default=time.time())), 1)
    return answer


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


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


DIFFUSION_FILES = {
    "awareness.png": "image/png",
    "cascades.png": "image/png",
    "degree.png": "image/png",
    "diffusion.json": JSON,
}
"""The files of ``compressed/RUN/diffusion/`` the page may ask for (nothing else is served from there)."""


def diffusion_file(results: Path, raw_name: str, file: str) -> tuple[HTTPStatus, str, bytes]:
    """One of a run's diffusion figures (:data:`DIFFUSION_FILES`).

    Raises:
        Refused: 400 for an invalid name, 403 for a path leading outside the results folder, 404 for another
            file or a run not compressed (``ga-compress --name RUN`` makes them).
    """
    name = checked_name(results, raw_name)
    if file not in DIFFUSION_FILES:
        raise Refused(HTTPStatus.NOT_FOUND, f"no diffusion file {file[:40]!r}; there are {sorted(DIFFUSION_FILES)}")
    path = results / "compressed" / name / "diffusion" / file
    if (path.exists() or path.is_symlink()) and not _inside(path, results):
        raise Refused(HTTPStatus.FORBIDDEN, f"run {name!r} leads outside the results folder")
    if not path.is_file():
        raise Refused(HTTPStatus.NOT_FOUND, f"run {name!r} has no {file}. Fix: ga-compress --name {name}")
    return HTTPStatus.OK, DIFFUSION_FILES[file], path.read_bytes()


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
        api = urlsplit(self.path).path.startswith("/api/")  # errors as JSON {"error": ...} for the page's polls
        try:
            status, ctype, body = self.route()
        except Refused as e:
            status, ctype, body = e.status, HTML, _error_page(e.status, str(e))
            if api:
                ctype, body = JSON, _json({"error": str(e)})
        except RunError as e:  # a run that cannot be read: its files are damaged or of another version
            self.log_error("cannot serve %s: %s", self.path, e)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            ctype, body = HTML, _error_page(status, self.server.public(str(e)), "The run cannot be replayed as it is.")
            if api:
                ctype, body = JSON, _json({"error": self.server.public(str(e))})
        except Exception as e:  # a bug: the details stay on the server's stderr
            print(f"ga-replay: error serving {self.path!r}:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            message = f"internal error ({type(e).__name__}); the server's log has the details"
            ctype, body = (JSON, _json({"error": message})) if api else (HTML, _error_page(status, message, ""))
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
        query = parse_qs(url.query)
        if path in ("/", "/index.html"):
            if "name" in query:
                name = query["name"][0]
                if query.get("follow") == ["1"]:  # following: the run may not exist yet
                    checked_name(self.server.results, name)  # 400 / 403 page for a bad name
                else:
                    movement_for(self.server.results, name)  # 400 / 403 / 404 / 500 page for a bad or unknown run
            return HTTPStatus.OK, HTML, page_html()
        if path == "/healthz":
            return HTTPStatus.OK, "text/plain; charset=utf-8", b"ok"
        if path == "/api/steps":
            name, after = query.get("name", [""])[0], query.get("after", ["0"])[0]
            if not (after.isascii() and after.isdigit()) or len(after) > 12:  # "²".isdigit() is True
                raise Refused(
                    HTTPStatus.BAD_REQUEST, f"after: {after[:20]!r} is not a step count. Fix: after=0, 1, ..."
                )
            answer = live_steps(self.server.results, name, int(after), self.server.step_index)
            return HTTPStatus.OK, JSON, _json(answer)
        parts = path.split("/")
        # /data/<name>/movement.json: the name is one URL-decoded segment, validated.
        if len(parts) == 4 and parts[0] == "" and parts[1] == "data" and parts[3] == "movement.json":
            return HTTPStatus.OK, "application/json", movement_for(self.server.results, unquote(parts[2]))
        if len(parts) == 5 and parts[0] == "" and parts[1] == "data" and parts[3] == "diffusion":
            return diffusion_file(self.server.results, unquote(parts[2]), unquote(parts[4]))
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
        self.step_index = StepIndex()  # offsets of the complete lines of the steps.jsonl being followed
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
                        elif key.fileobj in pending:  # not evicted by an accept earlier in this batch
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
