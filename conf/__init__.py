"""Hydra configuration (``config.yaml`` + groups env/ agent/ llm/ trainer/ experiment/); importable for ``pkg://conf``."""
