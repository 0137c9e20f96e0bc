"""Benchmarks of the town, the simulation and the LLM backends; each ``scripts/bench_*.py`` runs one.

* :mod:`ga_sim.bench.env`: env throughput (PettingZoo API, array fast path, batched, Town-v0 vs v1, mpe2).
* :mod:`ga_sim.bench.llm`: LLM backends (concurrency, local latency, the shift lessons cause).
* :mod:`ga_sim.bench.checkpoints`: damaged checkpoints and what the loader does.
* :mod:`ga_sim.bench.longrun`: step time and memory over a simulated week.
* :mod:`ga_sim.bench.embeddings`: embedding throughput.

Each module's ``run`` returns the JSON object its script prints.
"""
