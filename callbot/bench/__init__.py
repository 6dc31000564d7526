"""Offline benchmarks of the whole understanding chain (``scripts/bench-understanding``).

They need the models and ``pico2wave`` but no phone line, server or Redis.
"""
