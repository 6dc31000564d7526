"""Benchmarks behind ``scripts/bench-*``: one module per benchmark, each runnable with ``python -m``.

``understanding``: spoken intent accuracy, offline (Pico French -> µ-law line -> Whisper -> recogniser).
"""
