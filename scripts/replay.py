"""Replay runs in the browser: ``ga-replay`` (``python -m scripts.replay``), then open
``http://127.0.0.1:5000/?name=RUN``; ``ga-replay --name RUN --follow`` prints the address of the page
that follows a running ``ga-simulate --name RUN`` (``&follow=1``). The server is :mod:`ga_sim.replay`;
it binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ga_sim.replay import DEFAULT_HOST, DEFAULT_PORT, ReplayServer
from ga_sim.runstore import DEFAULT_RESULTS, RunError, validate_name


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ga-replay``."""
    parser = argparse.ArgumentParser(prog="ga-replay", description="Replay runs in the browser.")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results folder (default ./results)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 5000; 0 = any free port)")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    parser.add_argument("--name", help="the run whose page address to print (it may not exist yet with --follow)")
    parser.add_argument("--follow", action="store_true", help="the page follows the run as ga-simulate writes it")
    args = parser.parse_args(argv)
    if args.follow and not args.name:
        print("error: --follow: needs the run. Fix: add --name NAME (the ga-simulate run to follow)", file=sys.stderr)
        return 2
    if args.name is not None:
        try:
            validate_name(args.name)
        except RunError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if not Path(args.results).is_dir() and not args.follow:  # following: ga-simulate may create it later
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
    page = f"{server.url}/?name={args.name or 'RUN'}&step=0&speed=2&zoom=0.8" + ("&follow=1" if args.follow else "")
    print(f"replay on {page} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
