"""``python -m scripts.console NAME`` = ``ga-simulate --name NAME --resume --interactive``.

The console's commands are :class:`ga_sim.console.Console`.
"""

from __future__ import annotations

import sys

from scripts.simulate import main as simulate_main


def main() -> int:
    """Open the console of run ``sys.argv[1]``."""
    if len(sys.argv) < 2:
        print("usage: python -m scripts.console NAME [--results DIR]", file=sys.stderr)
        return 2
    return simulate_main(["--name", sys.argv[1], "--resume", "--interactive", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
