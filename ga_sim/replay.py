"""Replay runs in the browser: ``python -m scripts.replay`` then open ``http://127.0.0.1:5000/?name=RUN``.

A small stdlib web server (``http.server``, one thread per request) that binds to **127.0.0.1**
by default (``--host`` to change it, at your own risk) and serves exactly three things:

* ``/`` (or ``/index.html``): the self-contained canvas page; ``?name=RUN&step=0&speed=2&zoom=0.8``
  as in the original Generative Agents (plus ``autoplay=0`` to start paused);
* ``/data/RUN/movement.json``: the run's compressed movement (``results/compressed/RUN``, made by
  :mod:`ga_sim.compress`; compressed on the fly from ``results/runs/RUN`` when missing);
* ``/healthz``: ``ok``.

Anything else is a 404. Security: run names are validated (letters, digits, ``_ - .``; no
``..``, no slashes, after URL decoding, so ``%2e%2e`` and ``%2f`` are refused too), the resolved
file must lie inside the results folder (a symlink that leads out is refused), absolute paths are
never taken from the request, and there is no directory listing. An unknown run gets a 404 page.
"""

from __future__ import annotations

import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ga_sim.runstore import DEFAULT_RESULTS, RunError, RunStore, validate_name

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


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


def _error_page(status: HTTPStatus, message: str) -> bytes:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{status.value} {html.escape(status.phrase)}</title></head>"
        f"<body><h1>{status.value} {html.escape(status.phrase)}</h1><p>{html.escape(message)}</p>"
        "<p>Open <code>/?name=RUN</code> with the name of a run in the results folder.</p></body></html>"
    ).encode()


class ReplayHandler(BaseHTTPRequestHandler):
    """Serves the page and run data of one results folder (``server.results``)."""

    server: ReplayServer
    server_version = "ga-replay/1"

    def do_GET(self) -> None:
        try:
            status, ctype, body = self.route()
        except Refused as e:
            status, ctype, body = e.status, "text/html; charset=utf-8", _error_page(e.status, str(e))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.send_header(
            "Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
        )
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def route(self) -> tuple[HTTPStatus, str, bytes]:
        """``(status, content type, body)`` of the request, or :class:`Refused`."""
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            query = parse_qs(url.query)
            if "name" in query:
                name = query["name"][0]
                movement_for(self.server.results, name)  # 400 / 403 / 404 page for a bad or unknown run
            return HTTPStatus.OK, "text/html; charset=utf-8", page_html()
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


class ReplayServer(ThreadingHTTPServer):
    """The replay web server (``port=0`` picks a free port; see :attr:`url`).

    Args:
        results: the results folder.
        host: interface to bind (loopback by default).
        port: TCP port (0 = any free one).
        quiet: no request log on stderr.
    """

    daemon_threads = True

    def __init__(
        self,
        results: str | Path = DEFAULT_RESULTS,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        quiet: bool = False,
    ) -> None:
        self.results = Path(results)
        self.quiet = quiet
        super().__init__((host, port), ReplayHandler)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:5000``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReplayServer:
        """Serve in a background thread (for tests and notebooks); stop with :meth:`stop`."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
