"""Replay runs in the browser: ``ga-replay`` (``python -m scripts.replay``), then open
``http://127.0.0.1:5000/?name=RUN``. The server is :mod:`ga_sim.replay`; it binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ga_sim.replay import DEFAULT_HOST, DEFAULT_PORT, ReplayServer
from ga_sim.runstore import DEFAULT_RESULTS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-replay``."""
    parser = argparse.ArgumentParser(prog="ga-replay", description="Replay runs in the browser.")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 5000; 0 = any free port)")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        print(
            f"error: {args.results}: --results: not a folder. Fix: run ga-simulate first or pass --results",
            file=sys.stderr,
        )
        return 2
    try:
        server = ReplayServer(args.results, args.host, args.port, quiet=args.quiet)
    except OSError as e:
        print(
            f"error: --port: cannot listen on {args.host}:{args.port} ({e.strerror}). Fix: pick another --port",
            file=sys.stderr,
        )
        return 2
    print(f"replay on {server.url}/?name=RUN&step=0&speed=2&zoom=0.8 (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
