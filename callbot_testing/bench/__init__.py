"""Benchmarks behind ``scripts/bench-*``: one module per benchmark, each runnable with ``python -m``.

``understanding``: spoken intent accuracy, offline (a voice the bot does not use -> µ-law line -> Whisper
-> the flow's first-turn path); ``nlu``: cost of understanding one sentence (latency, memory).
"""
