"""Tune the heuristic baseline per experiment on training seeds; writes agents/data/heuristic_params.json.

    python scripts/tune_heuristic.py                       # artists and society, 16 training seeds
    python scripts/tune_heuristic.py --experiments artists --seeds 8

"tuned" is a coordinate grid search (the tuned heuristic of the result tables), "upper" a CEM
search started from it (the upper reference); see trainers/heuristic_search.py. Seeds are
training seeds (0..N-1), never the evaluation seeds (>= trainers.grpo.EVAL_SEED_BASE).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scripts.simulate import compose_config
from trainers.heuristic_search import _as_dict, cem_search, coordinate_search

OUT = Path(__file__).resolve().parents[1] / "agents" / "data" / "heuristic_params.json"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["artists", "society"])
    ap.add_argument("--seeds", type=int, default=16, help="training seeds 0..N-1")
    ap.add_argument("--cem-iterations", type=int, default=8)
    ap.add_argument("--cem-population", type=int, default=24)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    table = json.loads(args.out.read_text()) if args.out.exists() else {}
    seeds = list(range(args.seeds))
    for exp in args.experiments:
        env = compose_config([f"+experiment={exp}"]).env.make()
        t0 = time.perf_counter()
        tuned, tuned_score = coordinate_search(env, seeds, log=lambda s, e=exp: print(f"[{e}] {s}", flush=True))
        t1 = time.perf_counter()
        upper, upper_score = cem_search(
            env,
            seeds,
            tuned,
            iterations=args.cem_iterations,
            population=args.cem_population,
            rng=np.random.default_rng(0),
            log=lambda s, e=exp: print(f"[{e}] {s}", flush=True),
        )
        t2 = time.perf_counter()
        table[exp] = {
            "seeds": seeds,
            "episode_steps": env.max_cycles,
            "tuned": {
                "method": "coordinate grid, 2 sweeps",
                "params": {g: _as_dict(p) for g, p in tuned.items()},
                "train_return": tuned_score,
                "seconds": round(t1 - t0, 1),
            },
            "upper": {
                "method": f"CEM from tuned, {args.cem_iterations} x {args.cem_population}, 6 elites per group",
                "params_by_group": {g: {h: _as_dict(p) for h, p in c.items()} for g, c in upper.items()},
                "train_return": upper_score,
                "seconds": round(t2 - t1, 1),
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"[{exp}] tuned {tuned_score}\n[{exp}] upper {upper_score}")


if __name__ == "__main__":
    main()
