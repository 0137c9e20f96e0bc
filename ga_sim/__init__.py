"""The simulation library: the town run as the original Generative Agents ran it, made reliable.

* :mod:`ga_sim.society`: the :class:`~ga_sim.society.Society` protocol and the numeric-policy
  driver; :mod:`ga_sim.generative`: the LLM personas behind the same protocol;
* :mod:`ga_sim.simulation`: named runs (create, resume, fork, checkpoints);
* :mod:`ga_sim.runstore`: the run folder (meta, step records, incremental checkpoints);
* :mod:`ga_sim.console`: the interactive console's commands;
* :mod:`ga_sim.compress`: movement and transcript for replay and reading;
* :mod:`ga_sim.replay`: the browser replay server (127.0.0.1 by default);
* :mod:`ga_sim.metrics`: objective metrics of runs and the pairwise LLM judge.

The command-line entry points (``ga-simulate``, ``ga-compress``, ``ga-replay``, ``ga-eval``) are
thin wrappers in ``scripts/``.
"""
