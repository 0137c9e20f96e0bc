"""trainers: NumPy GRPO for the town (``python -m trainers.grpo``), maths, lessons."""
