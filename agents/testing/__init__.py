"""Test doubles that are real programs: kept out of the library's import path.

* :mod:`agents.testing.loopback`: an OpenAI-protocol server on 127.0.0.1 with scripted answers,
  latency and fault injection (``python -m agents.testing.loopback --port 8000``), for tests and
  benchmarks. It is not a language model; the ``loopback`` preset of ``llm=openai`` points at it.
"""
